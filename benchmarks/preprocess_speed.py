"""Time of the coarse topology preprocessing (``add_topology``, what ``MuSEModel.prepare`` runs once per bond
topology) at 1k .. 100k atoms, split into its stages, for a 2-level model with the default level settings
(``levels: [{}, {}]``: ratios 8 and 8, hops 4 and 8; see ``ModelConfig``).

Stages (one frame, as :func:`muse_ff.nn.coarsening.frame_topology` runs them):

* ``nl``: the bond neighbour list (vesin, cutoff 2.4 x the largest covalent radius), part of ``bonds``;
* ``bonds``: :func:`bond_graph` (neighbour list, bond filter, components, periodic unwrapping);
* ``colours``: :func:`refine_colours` of the bond graph;
* ``select``: :func:`select_groups` of every level (farthest-class selection, crystal individualisation);
* ``pairs``: :func:`assignment_pairs` of every level;
* ``total``: ``add_topology`` on the frame's graph, timed on its own (the sum of the above plus conversions).

Systems: ``water`` (periodic liquid water box), ``graphite`` (periodic AB graphite), ``cluster`` (a free,
non-periodic cluster of mixed small molecules: water, methane, ethanol, benzene) and ``chain`` (a free,
non-periodic folded CH2 chain capped by CH3: one molecule of n atoms, the worst case for molecules, with about
n / 6 symmetry classes of two members). Each (system, size) runs in a fresh process, single-threaded
(``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``); the fastest of ``--repeats`` runs is printed, then the
time ratio between successive sizes and the scaling exponent of each stage.

    python benchmarks/preprocess_speed.py                                  # all systems, 1k 10k 100k atoms
    python benchmarks/preprocess_speed.py --systems water graphite --sizes 1000 10000
    python benchmarks/preprocess_speed.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import graphite, water_box  # noqa: E402  (the same systems as benchmarks/speed.py)

SIZES = [1000, 10000, 100000]
STAGES = ["nl", "bonds", "colours", "select", "pairs", "total"]
LEVELS = [{}, {}]  # a 2-level model, every level default


def cluster(n_atoms: int, seed: int = 0):
    """A free cluster of small molecules (H2O, CH4, ethanol, benzene in turn) on a jittered grid, randomly
    oriented, 5 Å apart (no intermolecular bonds), no periodicity."""
    from ase import Atoms
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    kinds = [molecule(k) for k in ("H2O", "CH4", "CH3CH2OH", "C6H6")]
    for m in kinds:
        m.positions -= m.positions.mean(axis=0)
    per_cycle = sum(len(m) for m in kinds)
    n_mol = max(1, round(n_atoms / per_cycle * len(kinds)))
    per = int(np.ceil(n_mol ** (1 / 3)))
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(per)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_mol]
    centres = (grid + rng.uniform(-0.05, 0.05, grid.shape)) * 7.0
    rots = Rotation.random(n_mol, random_state=seed).as_matrix()
    symbols, pos = [], []
    for k in range(n_mol):
        m = kinds[k % len(kinds)]
        symbols.extend(m.get_chemical_symbols())
        pos.append(m.positions @ rots[k].T + centres[k])
    return Atoms(symbols, positions=np.concatenate(pos), pbc=False)


def chain(n_atoms: int):
    """A free folded CH2 chain (about n_atoms / 3 carbons 1.54 Å apart): straight rows of 100 carbons along x,
    rows 4 Å apart in y joined by two turn carbons, planes 5 Å apart in z joined the same way; each carbon has
    two H 1.09 Å away along +-z, except where an H would come within 1.5 Å of another atom (at the turns)."""
    from ase import Atoms
    from scipy.spatial import cKDTree

    n_c = max(4, n_atoms // 3)
    row = 100  # carbons per straight row
    rows_per_plane = max(1, int(np.ceil(np.sqrt(n_c / row))))
    carbons, p, direction, plane_dir, rows_in_plane = [], np.zeros(3), 1.0, 1.0, 0
    while len(carbons) < n_c:
        for _ in range(row):
            carbons.append(p.copy())
            p[0] += 1.54 * direction
        p[0] -= 1.54 * direction
        rows_in_plane += 1
        axis, step = (2, 5.0 / 3) if rows_in_plane == rows_per_plane else (1, 4.0 / 3 * plane_dir)
        if axis == 2:
            rows_in_plane, plane_dir = 0, -plane_dir
        for _ in range(2):  # two turn carbons, then the next row starts one more step on
            p[axis] += step
            carbons.append(p.copy())
        p[axis] += step
        direction = -direction
    c = np.array(carbons[:n_c])
    h = np.concatenate([c + [0.0, 0.0, 1.09], c - [0.0, 0.0, 1.09]])
    parent = np.tile(np.arange(n_c), 2)
    tree = cKDTree(np.concatenate([c, h]))
    near = tree.query_ball_point(h, 1.5)
    keep = np.array([all(j == parent[k] or j == n_c + k for j in js) for k, js in enumerate(near)])
    h = h[keep]
    return Atoms(["C"] * n_c + ["H"] * len(h), positions=np.concatenate([c, h]), pbc=False)


SYSTEMS = {"water": water_box, "graphite": graphite, "cluster": cluster, "chain": chain}


def run_one(system: str, n: int, repeats: int) -> dict:
    """Stage times of one (system, size) in this process (called in a subprocess)."""
    import torch

    from muse_ff import build_model
    from muse_ff.config import ModelConfig
    from muse_ff.data.atoms import frame_graph
    from muse_ff.data.neighbors import neighbor_list
    from muse_ff.nn import coarsening as co

    torch.set_num_threads(1)
    atoms = SYSTEMS[system](n)
    cfg = ModelConfig(levels=LEVELS)
    ratios, hops = [lev.ratio for lev in cfg.levels], cfg.level_hops()
    min_nodes = [lev.min_nodes for lev in cfg.levels]
    pos, num, cell, pbc = atoms.positions, atoms.numbers, np.asarray(atoms.cell[:]), atoms.pbc
    best = {k: np.inf for k in STAGES}
    nodes = None
    model = build_model({"backbone": {"name": "painn", "features": 8, "layers": 1, "num_basis": 4},
                         "levels": LEVELS})
    graph = frame_graph(atoms, model.cutoff, keys=None)
    for _ in range(repeats):
        t = {}
        t0 = time.perf_counter()
        rcov = co.covalent_radii[num]
        neighbor_list(pos, cell, pbc, float(2 * co.BOND_SCALE * rcov.max()) + 1e-6)
        t["nl"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        bg = co.bond_graph(pos, num, cell, pbc)
        t["bonds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        colours = co.refine_colours(bg.src, bg.dst, num)
        t["colours"] = time.perf_counter() - t0
        fine, acc, t["select"], t["pairs"], nodes = co.singletons(bg.n, bg.component), 1.0, 0.0, 0.0, []
        for k, (ratio, h) in enumerate(zip(ratios, hops)):
            acc *= ratio
            t0 = time.perf_counter()
            coarse = co.select_groups(bg, colours, acc, h, finer=None if k == 0 else fine)
            t["select"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            co.assignment_pairs(bg, fine, coarse, h)
            t["pairs"] += time.perf_counter() - t0
            nodes.append(len(coarse.ref_atom))
            fine = coarse
        t0 = time.perf_counter()
        co.add_topology(graph, ratios, hops, min_nodes)
        t["total"] = time.perf_counter() - t0
        best = {k: min(best[k], t[k]) for k in STAGES}
    return {"system": system, "atoms": len(atoms), "bonds": int(len(bg.src) // 2), "coarse_nodes": nodes,
            **{f"t_{k}_s": best[k] for k in STAGES}}


def _spawn(system: str, n: int, repeats: int, timeout: float) -> dict | None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--one", system, str(n), str(repeats)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fit(ns, ts) -> float:
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", nargs="+", choices=sorted(SYSTEMS), default=list(SYSTEMS))
    p.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    p.add_argument("--repeats", type=int, default=2, help="runs per process (fastest kept)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per (system, size); longer is cut")
    p.add_argument("--json", help="write all rows to this file")
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        system, n, repeats = args.one
        print(json.dumps(run_one(system, int(n), int(repeats))))
        return 0
    rows = []
    head = "".join(f"{k + ' s':>10}" for k in STAGES)
    print(f"{'system':<10}{'atoms':>8}{'bonds':>8}{'coarse':>14}{head}", flush=True)
    for system in args.systems:
        mine = []
        for n in args.sizes:
            r = _spawn(system, n, args.repeats, args.timeout)
            if r is None:
                print(f"{system:<10}{n:>8}  timed out after {args.timeout:.0f} s", flush=True)
                break
            mine.append(r)
            print(f"{system:<10}{r['atoms']:>8}{r['bonds']:>8}{str(r['coarse_nodes']):>14}"
                  + "".join(f"{r[f't_{k}_s']:>10.3f}" for k in STAGES), flush=True)
        for a, b in zip(mine, mine[1:]):
            ratio = b["atoms"] / a["atoms"]
            grow = {k: b[f"t_{k}_s"] / max(a[f"t_{k}_s"], 1e-9) for k in STAGES}
            print(f"{'':<10}x{ratio:>6.1f} atoms: time x" + "  ".join(
                f"{k} {g:.1f} (N^{np.log(g) / np.log(ratio):.2f})" for k, g in grow.items()), flush=True)
        if len(mine) >= 2:
            ns = [r["atoms"] for r in mine]
            print(f"{'':<10}scaling exponent (time ~ N^x, fit): " + "  ".join(
                f"{k} {_fit(ns, [max(r[f't_{k}_s'], 1e-6) for r in mine]):.2f}" for k in STAGES), flush=True)
        rows.extend(mine)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
