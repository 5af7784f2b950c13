"""Cost of one MD step (energy + forces) through the calculators: MuSE(PaiNN) / PaiNN, Python and exported.

Issue #17's small-system ratios: PaiNN 64x3, two coarse levels (default ratio 8, cutoffs 5/10/20 Å),
float32, one torch thread; each call moves every atom by ~0.01 Å (a new structure, as in MD; the bond graph
stays, so the coarse topology is cached as in MD); the fastest of ``--calls`` calls after two warm-up calls.
Contestants, interleaved call by call so that load from other processes hits all alike:

* ``PaiNN``, ``MuSE``: :class:`muse_ff.MuSECalculator` (the Python model, neighbour list and bond-graph check
  included);
* ``PaiNN-mta``, ``MuSE-mta``: the same models exported with ``muse export`` (metatomic), run by
  metatomic-ase's calculator (its own vesin neighbour list; the exported model checks elements and bonds).

    python benchmarks/step_speed.py                       # flake + benzene, water droplet, water box
    python benchmarks/step_speed.py --systems droplet --calls 15
    python benchmarks/step_speed.py --no-export --edges within-component   # MuSE-intra
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

PAINN = {"name": "painn", "features": 64, "layers": 3}


def flake_benzene():
    from ase.build import graphene, molecule

    g = graphene(size=(6, 6, 1), vacuum=0.0)
    g.pbc = False
    g.center(vacuum=5.0)
    b = molecule("C6H6")
    b.translate(g.positions.mean(0) - b.positions.mean(0) + [0.0, 0.0, 3.4])
    return g + b


def _water_box(n_atoms: int):
    import importlib.util

    spec = importlib.util.spec_from_file_location("speed", Path(__file__).with_name("speed.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.water_box(n_atoms)


def droplet(n_atoms: int = 990):
    """The molecules of a periodic water box within a sphere, as a free cluster."""
    box = _water_box(3 * n_atoms)
    centre = box.cell.lengths() / 2
    mol = np.arange(len(box)) // 3
    com = np.array([box.positions[mol == m].mean(0) for m in range(mol.max() + 1)])
    order = np.argsort(np.linalg.norm(com - centre, axis=1))[: n_atoms // 3]
    keep = np.isin(mol, order)
    out = box[keep]
    out.pbc, out.cell = False, np.zeros((3, 3))
    return out


def chignolin():
    """The folded chignolin of ``data/folding`` (138 atoms, one free molecule)."""
    from ase.io import read

    return read(Path(__file__).resolve().parents[1] / "data" / "folding" / "chignolin.pdb")


SYSTEMS = {"flake+benzene": flake_benzene, "chignolin": chignolin, "droplet": droplet,
           "water-box": lambda: _water_box(1000)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", choices=sorted(SYSTEMS), default=list(SYSTEMS))
    p.add_argument("--calls", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-export", action="store_true", help="time the Python calculators only")
    p.add_argument("--coarse-features", type=int, default=None,
                   help="PaiNN width of the coarse levels' backbones (levels[k].backbone; default: the atoms' 64)")
    p.add_argument("--edges", choices=["all", "within-component"], default="all",
                   help="levels[k].edges of MuSE's two levels (within-component: MuSE-intra)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from muse_ff import MuSECalculator, build_model

    level = {"edges": args.edges}
    if args.coarse_features is not None:
        level["backbone"] = {**PAINN, "features": args.coarse_features}
    torch.manual_seed(0)
    models = {"PaiNN": build_model({"backbone": PAINN, "levels": []}).eval(),
              "MuSE": build_model({"backbone": PAINN, "levels": [level, level]}).eval()}
    rng = np.random.default_rng(0)
    print(f"{'system':14s} {'atoms':>6s} " + " ".join(f"{k:>10s}" for k in
          ["PaiNN", "MuSE", "PaiNN-mta", "MuSE-mta"]) + "   MuSE/PaiNN  MuSE-mta/PaiNN-mta  (ms per E+F call)")
    for name in args.systems:
        atoms = SYSTEMS[name]()
        calcs = {k: MuSECalculator(m) for k, m in models.items()}
        if not args.no_export:
            from metatomic_ase import MetatomicCalculator

            from muse_ff.export import export_model

            tmp = Path(tempfile.mkdtemp())
            for k, m in models.items():
                path = export_model(m, tmp / f"{k}.pt", structure=atoms)
                calcs[f"{k}-mta"] = MetatomicCalculator(str(path))
        best = {k: np.inf for k in calcs}
        for call in range(args.calls + 2):
            moved = atoms.copy()
            moved.positions += rng.normal(scale=0.01, size=moved.positions.shape)
            for k, calc in calcs.items():
                a = moved.copy()
                a.calc = calc
                t = time.perf_counter()
                a.get_forces()
                if call >= 2:
                    best[k] = min(best[k], time.perf_counter() - t)
        ms = {k: 1e3 * v for k, v in best.items()}
        row = " ".join(f"{ms.get(k, np.nan):10.1f}" for k in ["PaiNN", "MuSE", "PaiNN-mta", "MuSE-mta"])
        ratio_mta = ms["MuSE-mta"] / ms["PaiNN-mta"] if "MuSE-mta" in ms else np.nan
        print(f"{name:14s} {len(atoms):6d} {row}   {ms['MuSE'] / ms['PaiNN']:10.2f}  {ratio_mta:18.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
