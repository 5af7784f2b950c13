"""Speed and memory of energy + forces: plain backbone vs MuSE(backbone) with two coarse levels.

Each (model, size) runs in a fresh subprocess so its peak memory is its own. Printed per row: atoms, edges,
coarse nodes, one-off set-up times (neighbour list + validation, anchor choice) and the median wall time of
energy + forces (fastest of --repeats calls in each of --rounds fresh processes, the two models
alternating; the level-0 graph given, coarse neighbour lists included, as in an MD step), and the
peak resident memory added by one energy + forces evaluation. At the end: the MuSE/plain time ratio per
size and the scaling exponents fitted to log(time) vs log(N).

    python benchmarks/speed.py                       # periodic water, 1k .. 50k atoms (2-core machine)
    python benchmarks/speed.py --system graphite --sizes 1000 8000
    python benchmarks/speed.py --backbone mace        # MACE (mace-torch) instead of PaiNN
    python benchmarks/speed.py --backbone painn mace so3krates --sizes 1000 3000   # the three side by side
    python benchmarks/speed.py --json out.json
    python benchmarks/speed.py --physical --sizes 1000 10000   # also PaiNN+phys and MuSE(PaiNN)+phys (#15)
    python benchmarks/speed.py --system water-cluster --physical   # the same water, free (no cell)
    python benchmarks/speed.py --physical --edges within-component   # MuSE-intra: no coarse edges between molecules
    python benchmarks/speed.py --system butane --edges within-component   # MuSE-intra, two coarse nodes per molecule
    python benchmarks/speed.py --device cuda --sizes 1000 10000 100000     # on a GPU (synchronised timing, GPU memory)

``--physical`` adds the physical long-range terms (``model.physical`` with ``model.charges``: charges conserved
per molecule, Coulomb and BJ-damped C6 dispersion with no cutoff; torch-pme Ewald/PME in a periodic cell,
the direct all-pairs sum in blocks for a free one) to both models and prints each model's time relative to
the plain backbone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

SIZES = [1000, 3000, 10000, 30000, 50000]
BACKBONE = {"name": "painn", "features": 32, "layers": 2, "num_basis": 8}
#: --backbone choices: display name and ``model.backbone`` config, all about 32 wide with 2 message-passing
#: layers and 8 radial functions (MACE: mace-torch defaults otherwise; SO3krates: degrees 1-3 as published,
#: width 36 because it must divide by the heads (4) and the number of degrees (3))
BACKBONE_CHOICES = {
    "painn": ("PaiNN", BACKBONE),
    "mace": ("MACE", {"name": "mace", "num_channels": 32, "max_L": 1, "max_ell": 3, "correlation": 3,
                      "num_interactions": 2, "num_radial_basis": 8}),
    "so3krates": ("SO3krates", {"name": "so3krates", "features": 36, "heads": 4, "degrees": [1, 2, 3],
                                "layers": 2, "num_basis": 8}),
}


def water_box(n_atoms: int, seed: int = 0):
    """Periodic liquid-density water (0.0334 molecules/Å^3), molecules on a jittered grid, random orientation."""
    from ase import Atoms
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    n_mol = max(1, n_atoms // 3)
    side = (n_mol / 0.0334) ** (1 / 3)
    per = int(np.ceil(n_mol ** (1 / 3)))
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(per)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_mol]
    centres = (grid + 0.5 + rng.uniform(-0.1, 0.1, grid.shape)) * side / per
    w = molecule("H2O")
    w.positions -= w.get_center_of_mass()
    rots = Rotation.random(n_mol, random_state=seed).as_matrix()
    pos = np.einsum("mij,aj->mai", rots, w.positions) + centres[:, None]
    return Atoms("OH2" * n_mol, positions=pos.reshape(-1, 3), cell=[side] * 3, pbc=True)


def graphite(n_atoms: int):
    """AB-stacked graphite supercell with about ``n_atoms`` atoms (covalent sheets, 4 atoms per cell)."""
    from ase.lattice.hexagonal import Graphite

    base = Graphite("C", latticeconstant={"a": 2.46, "c": 6.70}, size=(1, 1, 1))
    nz = max(1, round((n_atoms / len(base)) ** (1 / 3) * 2.46 / 6.70 * 1.5))
    nxy = max(1, round(np.sqrt(n_atoms / (len(base) * nz))))
    return base * (nxy, nxy, nz)


def water_cluster(n_atoms: int, seed: int = 0):
    """:func:`water_box`'s molecules without the cell: a free cube of liquid-density water."""
    atoms = water_box(n_atoms, seed)
    atoms.pbc, atoms.cell = False, None
    return atoms


def butane_box(n_atoms: int, seed: int = 0):
    """Periodic liquid-density n-butane (0.0062 molecules/Å^3, 0.60 g/cm^3): 14-atom molecules, so the first
    coarse level (ratio 8) has two nodes per molecule. Molecules along x on a 7.0 x 4.8 x 4.8 Å grid, each
    turned by up to 15° about a random axis (no intermolecular bond: closest atoms of two molecules > 1.4 Å)."""
    from ase import Atoms
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    m = molecule("trans-butane")
    m.positions -= m.get_center_of_mass()
    axis = np.linalg.svd(m.positions - m.positions.mean(0))[2][0]  # the long axis onto x
    rot = Rotation.align_vectors([[1.0, 0.0, 0.0]], [axis])[0]
    m.positions = rot.apply(m.positions)
    n_mol = max(1, round(n_atoms / len(m)))
    spacing = np.array([7.0, 4.8, 4.8])
    side = (n_mol * np.prod(spacing)) ** (1 / 3)  # a near-cubic box
    per = np.maximum(1, np.round(side / spacing)).astype(int)
    per[2] = int(np.ceil(n_mol / (per[0] * per[1])))
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(k) for k in per], indexing="ij"), -1).reshape(-1, 3)[:n_mol]
    centres = (grid + 0.5) * spacing
    turn = Rotation.from_rotvec(rng.normal(size=(n_mol, 3)) / np.sqrt(3) * np.deg2rad(15.0) / 2).as_matrix()
    pos = np.einsum("mij,aj->mai", turn, m.positions) + centres[:, None]
    return Atoms(m.get_chemical_symbols() * n_mol, positions=pos.reshape(-1, 3), cell=per * spacing, pbc=True)


SYSTEMS = {"water": water_box, "water-cluster": water_cluster, "graphite": graphite, "butane": butane_box}


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: resident now, VmHWM: peak resident) in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_hwm() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def run_one(system: str, n: int, levels: int, repeats: int, threads: int, anchors: str,
            backbone: str = "painn", physical: bool = False, edges: str = "all", features: int = 0,
            device: str = "cpu") -> dict:
    """One measurement in this process (called in a subprocess). On a GPU (``device`` cuda) each call is
    synchronised before the clock stops, and the peak memory is the device's (``torch.cuda.max_memory_allocated``
    above what the model and graph hold)."""
    import torch

    from muse_ff import build_model
    from muse_ff.data.atoms import frame_graph
    from muse_ff.devices import check_device
    from muse_ff.physics import energy_and_derivatives

    check_device(device)
    cuda = torch.device(device).type == "cuda"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    atoms = SYSTEMS[system](n)
    level_cfg = [{"edges": edges}] * levels
    extra = {"physical": {}, "charges": True} if physical else {}
    bb = dict(BACKBONE_CHOICES[backbone][1])
    if features:
        if backbone != "painn":
            raise SystemExit("--features sets the PaiNN width only")
        bb["features"] = features
    model = build_model({"backbone": bb, "levels": level_cfg, **extra}).eval()
    t0 = time.perf_counter()
    graph = frame_graph(atoms, model.cutoff, keys=None)
    t_nl = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = model.prepare(graph)
    t_anchor = time.perf_counter() - t0
    model, graph = model.to(device), graph.to(device=device, dtype=torch.float32)
    energy_and_derivatives(model, graph)  # warm-up
    times = []
    base = _status_mb("VmRSS")
    _reset_hwm()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        held = torch.cuda.memory_allocated(device)
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = energy_and_derivatives(model, graph)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        del out
    peak = (torch.cuda.max_memory_allocated(device) - held) / 2**20 if cuda else _status_mb("VmHWM") - base
    coarse = [t.num_nodes for t in graph.coarse]
    return {"system": system, "backbone": backbone, "physical": physical, "atoms": len(atoms), "levels": levels,
            "coarse_edges": edges,
            "edges": int(graph.edge_index.shape[1]), "coarse_nodes": coarse, "t_neighbors_s": t_nl,
            "t_anchors_s": t_anchor,
            "t_energy_forces_s": float(np.min(times)), "peak_extra_mb": peak, "device": device}


def _spawn(args, n: int, levels: int, backbone: str, physical: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--one", args.system, str(n), str(levels), str(args.repeats),
           str(args.threads), args.anchors, backbone, str(int(physical)), args.edges, str(args.features or 0),
           args.device]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _name(backbone: str, levels: int, physical: bool = False, edges: str = "all") -> str:
    label = BACKBONE_CHOICES[backbone][0]
    muse = "MuSE" if edges == "all" else "MuSE-intra"
    return (label if levels == 0 else f"{muse}({label})") + ("+phys" if physical else "")


def _fit(ns, ts) -> float:
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--system", choices=sorted(SYSTEMS), default="water")
    p.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2, help="fresh processes per model and size (fastest kept)")
    p.add_argument("--anchors", choices=["topology"], default="topology",
                   help="coarse-graining kind (only 'topology': see muse_ff.nn.coarsening)")
    p.add_argument("--features", type=int, default=None,
                   help="PaiNN width (default 32; e.g. 8 for 100k atoms within 24 GB)")
    p.add_argument("--backbone", choices=sorted(BACKBONE_CHOICES), default=["painn"], nargs="+",
                   help="backbone(s) of both models; several are measured side by side, interleaved "
                        "(mace needs mace-torch: pip install 'muse-ff[mace]')")
    p.add_argument("--levels", type=int, nargs="+", choices=[0, 2], default=[0, 2],
                   help="coarse levels of the models measured: 0 (plain backbone) and/or 2 (MuSE; default both)")
    p.add_argument("--physical", action="store_true",
                   help="also measure both models with the physical long-range terms (model.physical)")
    p.add_argument("--edges", choices=["all", "within-component"], default="all",
                   help="levels[k].edges of the MuSE models: every coarse pair within the cutoff (default), or only "
                        "pairs inside one covalent component (MuSE-intra: no coarse edges between molecules)")
    p.add_argument("--json", help="write all rows to this file")
    p.add_argument("--device", default="cpu", help="torch device of the models and graphs (e.g. cuda)")
    p.add_argument("--one", nargs=11, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        system, n, levels, repeats, threads, anchors, backbone, physical, edges, features, device = args.one
        print(json.dumps(run_one(system, int(n), int(levels), int(repeats), int(threads), anchors, backbone,
                                 bool(int(physical)), edges, int(features), device)))
        return 0
    from muse_ff.devices import DeviceError, check_device

    try:
        check_device(args.device)  # a GPU that is not there: one sentence, before any process starts
    except DeviceError as err:
        print(err, file=sys.stderr)
        return 2
    rows = []
    physical_flags = (False, True) if args.physical else (False,)
    print(f"{'model':<21}{'atoms':>8}{'edges':>10}{'coarse':>14}{'t_nl s':>9}{'t_anch s':>10}"
          f"{'E+F s':>9}{'peak MB':>9}")
    for n in args.sizes:
        # alternate all models over --rounds fresh processes and keep the fastest of each: on a shared
        # machine, load from other processes then hits all alike
        runs = {(bb, levels, phys): [] for bb in args.backbone for phys in physical_flags for levels in args.levels}
        for _ in range(args.rounds):
            for key in runs:
                runs[key].append(_spawn(args, n, key[1], key[0], key[2]))
        for (bb, levels, phys), results in runs.items():
            r = min(results, key=lambda x: x["t_energy_forces_s"])
            r["peak_extra_mb"] = min(x["peak_extra_mb"] for x in results)
            rows.append(r)
            print(f"{_name(bb, levels, phys, args.edges):<21}{r['atoms']:>8}{r['edges']:>10}"
                  f"{str(r['coarse_nodes']):>14}"
                  f"{r['t_neighbors_s']:>9.2f}{r['t_anchors_s']:>10.2f}{r['t_energy_forces_s']:>9.3f}"
                  f"{r['peak_extra_mb']:>9.0f}", flush=True)
    for bb in args.backbone:
        if 0 not in args.levels:
            continue
        plain = [r for r in rows if r["levels"] == 0 and r["backbone"] == bb and not r["physical"]]
        muse = [r for r in rows if r["levels"] == 2 and r["backbone"] == bb and not r["physical"]]
        if muse:
            print(f"\n{_name(bb, 2, edges=args.edges)} / {_name(bb, 0)}\n"
                  "atoms    MuSE/plain time    MuSE/plain peak memory")
        for a, b in zip(plain, muse):
            print(f"{a['atoms']:>6}    {b['t_energy_forces_s'] / a['t_energy_forces_s']:>14.2f}    "
                  f"{b['peak_extra_mb'] / max(a['peak_extra_mb'], 1e-9):>10.2f}")
        ns = [r["atoms"] for r in plain]
        if len(ns) >= 2 and muse:
            print(f"scaling exponent (time ~ N^x): plain {_fit(ns, [r['t_energy_forces_s'] for r in plain]):.3f}, "
                  f"MuSE {_fit(ns, [r['t_energy_forces_s'] for r in muse]):.3f}")
            print(f"memory exponent (peak ~ N^x): plain {_fit(ns, [max(r['peak_extra_mb'], 1) for r in plain]):.3f}"
                  f", MuSE {_fit(ns, [max(r['peak_extra_mb'], 1) for r in muse]):.3f}")
        if args.physical:
            print(f"\ntime and peak memory relative to {_name(bb, 0)} (same size)")
            names = [_name(bb, lv, ph, args.edges) for ph in (False, True) for lv in args.levels][1:]
            print(f"{'atoms':>6}" + "".join(f"{n:>26}" for n in names))
            for a in plain:
                same = {(r["levels"], r["physical"]): r for r in rows
                        if r["backbone"] == bb and r["atoms"] == a["atoms"]}
                cells = [same[lv, ph] for ph in (False, True) for lv in args.levels][1:]
                t0, m0 = a["t_energy_forces_s"], max(a["peak_extra_mb"], 1e-9)
                print(f"{a['atoms']:>6}" + "".join(
                    f"{c['t_energy_forces_s'] / t0:>15.2f} t {c['peak_extra_mb'] / m0:>6.2f} m" for c in cells))
    if len(args.backbone) > 1 and args.levels == [0, 2]:
        first = args.backbone[0]
        print(f"\ntime per energy + forces relative to {BACKBONE_CHOICES[first][0]} (same levels, same size)")
        print(f"{'atoms':>6}" + "".join(f"{_name(bb, lv, edges=args.edges):>18}" for lv in (0, 2)
                                        for bb in args.backbone))
        for n_atoms in sorted({r["atoms"] for r in rows}):
            t = {(r["backbone"], r["levels"]): r["t_energy_forces_s"] for r in rows
                 if r["atoms"] == n_atoms and not r["physical"]}
            print(f"{n_atoms:>6}" + "".join(f"{t[bb, lv] / t[first, lv]:>18.2f}" for lv in (0, 2)
                                            for bb in args.backbone))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
