"""Dense and tiny-cell water with trained models: energy per molecule (relative to the free molecule),
largest force, and for clusters the time and peak memory of one energy + forces call.

Models trained on gas-phase dimers must not give absurd energies in a liquid (issue #13 item 11: +6,541 eV
per molecule in a 3.1 Å cell before the coarse density normalisation). Every ``model.pt`` found one folder
below DIR is evaluated (a ``muse demo`` output folder holds PaiNN, MuSE(PaiNN) and PaiNN+LES):

    muse demo --output-dir /tmp/demo_new
    python benchmarks/dense_water.py /tmp/demo_new --clusters 100 300 1700

Clusters are liquid-density grids (0.0334 molecules/Å^3) of randomly rotated, jittered molecules (seed 0),
not relaxed liquid: their energies are for sanity (finite, O(0.1 eV)), not accuracy.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule

from muse_ff import MuSECalculator

DENSITY = 0.0334  # water molecules per Å^3 at 1 g/cm^3


def water_box(side: float) -> Atoms:
    a = molecule("H2O")
    a.cell, a.pbc = np.eye(3) * side, True
    a.center()
    return a


def cluster(n: int, seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    k = int(np.ceil(n ** (1 / 3)))
    grid = (n / DENSITY) ** (1 / 3) / k
    out = Atoms()
    for site in [(i, j, m) for i in range(k) for j in range(k) for m in range(k)][:n]:
        w = molecule("H2O")
        w.rotate(rng.uniform(0, 360), rng.normal(size=3))
        w.translate((np.array(site) + 0.5) * grid + rng.uniform(-0.2, 0.2, 3))
        out += w
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="folder whose subfolders hold model.pt files")
    parser.add_argument("--cells", type=float, nargs="*", default=[3.1, 2.5], help="periodic cube sides (Å)")
    parser.add_argument("--clusters", type=int, nargs="*", default=[100, 300], help="cluster sizes (molecules)")
    args = parser.parse_args()
    for path in sorted(args.dir.glob("*/model.pt")):
        calc = MuSECalculator(str(path))
        free = water_box(40.0)
        free.calc = calc
        e1 = free.get_potential_energy()
        cols = [path.parent.name]
        for side in args.cells:
            a = water_box(side)
            a.calc = calc
            cols.append(f"{side} Å cell {a.get_potential_energy() - e1:+.3f} eV/mol, |F|max "
                        f"{np.abs(a.get_forces()).max():.3g} eV/Å")
        for n in args.clusters:
            a = cluster(n)
            a.calc = calc
            t = time.perf_counter()
            e, f = a.get_potential_energy(), a.get_forces()
            cols.append(f"{n}-molecule cluster {(e - n * e1) / n:+.3f} eV/mol, |F|max {np.abs(f).max():.3g} eV/Å, "
                        f"{time.perf_counter() - t:.1f} s")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(" | ".join(cols) + f" | peak RSS of the process so far {rss:.2f} GB", flush=True)


if __name__ == "__main__":
    main()
