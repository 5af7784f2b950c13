"""How much the energy depends on the atom order, where the coarse graph cannot be exactly invariant.

For structures of every kind (symmetric molecules, a flake with benzene, perfect and rattled periodic crystals,
a water box), an untrained float64 MuSE model gets ``--perms`` random permutations of the same atoms; printed:
the largest relative energy change and the largest force change (eV/Å, forces compared atom by atom), and the
coarse node counts. Exact (~1e-16) wherever the coarse graph takes whole symmetry classes; crystals whose bond
graph is more symmetric than their geometry (rattled) individualise one atom and keep a small dependence.

    python benchmarks/coarse_invariance.py --backbone painn --perms 5
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ase.build import bulk, graphene

from muse_ff import MuSECalculator, build_model
from muse_ff.testing.conformance import symmetric_structure

BACKBONES = {"painn": {"name": "painn", "features": 32, "layers": 2},
             "so3krates": {"name": "so3krates", "features": 32, "layers": 2},
             "mace": {"name": "mace", "channels": 16, "max_ell": 1, "correlation": 2, "layers": 2}}


def structures() -> dict:
    out = {name: symmetric_structure(name) for name in
           ["benzene", "C60", "flake", "flake+benzene", "water-box", "graphene-periodic"]}
    sheet = graphene(size=(6, 6, 1), vacuum=6.0)
    sheet.pbc = True
    sheet.rattle(0.05, seed=1)
    out["graphene-periodic rattled"] = sheet
    si = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    out["Si64 perfect"] = si.copy()
    si.rattle(0.05, seed=0)
    out["Si64 rattled"] = si
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", choices=sorted(BACKBONES), default="painn")
    p.add_argument("--perms", type=int, default=5)
    p.add_argument("--seeds", type=int, default=2, help="model initialisations")
    args = p.parse_args(argv)
    print(f"{'structure':<28}{'atoms':>6}{'coarse nodes':>14}{'max |dE|/|E|':>15}{'max |dF| eV/Å':>15}")
    for name, atoms in structures().items():
        de, df = [], []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = build_model({"backbone": BACKBONES[args.backbone], "levels": [{}, {}],
                                 "dtype": "float64"}).eval()
            calc = MuSECalculator(model)
            e0, f0 = calc.get_potential_energy(atoms), calc.get_forces(atoms)
            nodes = [t.num_nodes for t in calc.graph(atoms).coarse]
            rng = np.random.default_rng(seed)
            for _ in range(args.perms):
                perm = rng.permutation(len(atoms))
                c = MuSECalculator(model)
                de.append(abs(c.get_potential_energy(atoms[perm]) - e0) / abs(e0))
                df.append(np.abs(c.get_forces(atoms[perm]) - f0[perm]).max())
        print(f"{name:<28}{len(atoms):>6}{str(nodes):>14}{max(de):>15.1e}{max(df):>15.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
