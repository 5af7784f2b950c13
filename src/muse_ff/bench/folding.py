"""``muse bench folding``: chignolin MD with each trained model against the Amber14 + GBn2 teacher.

Bonds to hydrogen are constrained in every run, as in the teacher's own MD (whose frames are the training
data: they never sample X-H stretches, so no model has learned them).

Both models train on the teacher's labelled MD frames (300/400/500 K, train/valid splits). Then every
model, and the teacher itself through the same ASE protocol, runs Langevin MD at 300 K (the teacher's
folding temperature) from the same folded (the minimised model hairpin) and unfolded (the dataset frame
farthest from it, CA RMSD ~5 Å) starting structures. Observables (end-to-end CA1-CA10 distance,
heavy-atom radius of gyration, CA RMSD to the folded reference, folded = RMSD < 3 Å) are compared with
the teacher's 100 ps reference run at 300 K (``folding-observables.csv``) and with the teacher's own
run under the same short protocol, by Jensen-Shannon divergence of histograms (base 2: 0 = identical,
1 = disjoint). Stability: max |F| and max relative bond-length deviation along each run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from rich.console import Console

from muse_ff.bench.common import Budget, Report, fmt, pyplot, save_figure, train_pair, trained_rows

FOLDER = "folding"
TEMPERATURE = 300.0
RMSD_FOLDED = 3.0
BOND_TOLERANCE = 0.3  # a bond stretched or squeezed by more than this fraction counts as a blow-up
#: histogram ranges (Å) and bin count per observable, for the Jensen-Shannon divergences and plots
RANGES = {"end_to_end": (0.0, 30.0), "rg": (4.5, 10.5), "rmsd_ca": (0.0, 8.0)}
BINS = 24


@dataclass(frozen=True)
class MDBudget:
    """steps per run, frames every ``interval`` steps, timestep (fs; hydrogens at 3 amu), friction (1/fs)."""

    steps: int
    interval: int
    timestep: float = 1.0
    friction: float = 0.01


BUDGETS = {
    "quick": (Budget(features=8, layers=1, num_basis=6, epochs=2, batch_size=4, max_train=12, max_valid=4),
              MDBudget(steps=20, interval=5)),
    "default": (Budget(features=32, layers=2, num_basis=12, epochs=20, batch_size=4, train_stride=2),
                MDBudget(1000, 10)),
    "full": (Budget(features=64, layers=3, num_basis=16, epochs=300, batch_size=4), MDBudget(100_000, 300)),
}


@dataclass
class Topology:
    """CA and heavy-atom indices of chignolin and the folded reference positions [N, 3] (Å)."""

    ca: np.ndarray
    heavy: np.ndarray
    reference: Atoms
    pdb: Path


def topology(folder: Path) -> Topology:
    from ase.io import read

    names, elements = [], []
    for line in (folder / "chignolin.pdb").read_text().splitlines():
        if line.startswith(("ATOM", "HETATM")):
            names.append(line[12:16].strip())
            elements.append(line[76:78].strip())
    ref = read(folder / "folding-reference.extxyz")
    return Topology(np.array([k for k, n in enumerate(names) if n == "CA"]),
                    np.array([k for k, e in enumerate(elements) if e != "H"]), ref, folder / "chignolin.pdb")


def teacher_reference(folder: Path, temperature: float = TEMPERATURE) -> dict[str, np.ndarray]:
    """The teacher's 100 ps reference observables at ``temperature`` (Å)."""
    data = np.genfromtxt(folder / "folding-observables.csv", delimiter=",", names=True)
    sel = data["temperature_K"] == temperature
    return {"end_to_end": data["end_to_end_A"][sel], "rg": data["rg_A"][sel], "rmsd_ca": data["rmsd_ca_A"][sel]}


def starts(frames: list[Atoms], top: Topology) -> dict[str, Atoms]:
    """Folded (the reference hairpin) and unfolded (the frame with the largest CA RMSD) starting structures.

    Bonds to hydrogen are constrained (``FixBondLengths``), as in the teacher's MD (OpenMM ``HBonds``): the
    training frames come from that MD, so they never sample X-H stretches and no model learns them.
    """
    from ase.constraints import FixBondLengths

    unfolded = max(frames, key=lambda a: a.info["rmsd_ca"])
    out = {"folded": top.reference.copy(), "unfolded": unfolded.copy()}
    pairs = [tuple(b) for b in bonds(top.reference) if (top.reference.numbers[b] == 1).any()]
    for a in out.values():
        a.info, a.calc = {}, None
        a.set_constraint(FixBondLengths(pairs))
        a.set_masses(np.where(a.numbers == 1, 3.0, a.get_masses()))  # heavier hydrogens, as the teacher's MD
        a.set_velocities(np.zeros((len(a), 3)))
    return out


def jensen_shannon(x: np.ndarray, y: np.ndarray, lo: float, hi: float, bins: int = BINS) -> float:
    """Jensen-Shannon divergence (bits, 0..1) between histograms of samples ``x`` and ``y``."""
    if len(x) == 0 or len(y) == 0:
        return float("nan")
    edges = np.linspace(lo, hi, bins + 1)
    p = np.histogram(np.clip(x, lo, hi), edges)[0].astype(float)
    q = np.histogram(np.clip(y, lo, hi), edges)[0].astype(float)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    kl = lambda a: float(np.sum(a[a > 0] * np.log2(a[a > 0] / m[a > 0])))  # noqa: E731
    return 0.5 * kl(p) + 0.5 * kl(q)


def bonds(atoms: Atoms) -> np.ndarray:
    """[B, 2] covalent bonds of ``atoms`` (ASE natural cutoffs)."""
    from ase.neighborlist import natural_cutoffs, neighbor_list

    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms))
    return np.stack([i[i < j], j[i < j]], axis=1)


def run_one(start: Atoms, calculator, md: MDBudget, folder: Path, seed: int = 0) -> dict:
    """Langevin MD at 300 K from ``start``; frames, observables, wall time per step and whether it blew up."""
    import time

    from ase.io import read

    from muse_ff.analysis.dynamics import MDSettings, run_md

    folder.mkdir(parents=True, exist_ok=True)
    settings = MDSettings("langevin", TEMPERATURE, md.timestep, md.friction, md.steps, md.interval, seed)
    t0, error = time.perf_counter(), None
    try:
        run_md(start, calculator, settings, folder / "md.extxyz", folder / "md.log", progress=False)
    except Exception as err:  # a blow-up (atoms overlapping, NaN) is a result, not a crash of the benchmark
        error = f"{type(err).__name__}: {err}"
    wall = time.perf_counter() - t0
    path = folder / "md.extxyz"
    frames = read(str(path), index=":") if path.is_file() and path.stat().st_size else []
    steps_done = md.steps if error is None else max(1, len(frames) * md.interval)  # a blow-up ends the run
    return {"frames": frames, "error": error, "ms_per_step": 1000 * wall / steps_done}


def analyse(run: dict, top: Topology, bond_list: np.ndarray, md: MDBudget) -> dict:
    """Observables along a run (frames before any blow-up only) and its stability: max |F| (eV/Å), max
    relative bond-length deviation, and the time (ps) of the first frame with a bond stretched or squeezed
    by more than 30 % (None: stable)."""
    from muse_ff.datasets.folding import observables

    ref = top.reference.positions
    d0 = np.linalg.norm(ref[bond_list[:, 0]] - ref[bond_list[:, 1]], axis=1)
    obs = {k: [] for k in RANGES}
    fmax, dev, fail = 0.0, 0.0, None
    for k, a in enumerate(run["frames"]):
        forces = a.calc.results.get("forces") if a.calc is not None else a.arrays.get("forces")
        if forces is not None:
            fmax = max(fmax, float(np.abs(forces).max()))
        d = np.linalg.norm(a.positions[bond_list[:, 0]] - a.positions[bond_list[:, 1]], axis=1)
        dev = max(dev, float(np.abs(d / d0 - 1).max()))
        if fail is None and not dev < BOND_TOLERANCE:
            fail = (k + 1) * md.interval * md.timestep / 1000
        if fail is None:
            for name, v in observables(a.positions, top.ca, top.heavy, ref).items():
                obs[name].append(v)
    if fail is None and run["error"] is not None:
        fail = len(run["frames"]) * md.interval * md.timestep / 1000
    return {"obs": {k: np.array(v) for k, v in obs.items()}, "max_force": fmax, "max_bond_dev": dev,
            "stable": fail is None and len(run["frames"]) > 0, "failed_at_ps": fail, "error": run["error"],
            "ms_per_step": run["ms_per_step"], "frames": len(run["frames"])}


def compare(res: dict, reference: dict[str, np.ndarray], same: dict | None) -> dict:
    """JSD of each observable against the 100 ps reference and against the teacher's same-protocol run."""
    out = {}
    for k, (lo, hi) in RANGES.items():
        out[f"jsd_{k}"] = jensen_shannon(res["obs"][k], reference[k], lo, hi)
        if same is not None:
            out[f"jsd_same_{k}"] = jensen_shannon(res["obs"][k], same["obs"][k], lo, hi)
    r = res["obs"]["rmsd_ca"]
    out["folded_fraction"] = float((r < RMSD_FOLDED).mean()) if len(r) else float("nan")
    out.update({f"mean_{k}": float(np.mean(v)) if len(v) else float("nan") for k, v in res["obs"].items()})
    return out


def teacher_calculator(top: Topology):
    from muse_ff.teachers import get_teacher
    from muse_ff.teachers.calculator import TeacherCalculator

    return TeacherCalculator(get_teacher("amber14-gbn2", pdb=str(top.pdb), platform="CPU"))


def simulate_all(calculators: dict, start_structures: dict[str, Atoms], md: MDBudget, out: Path,
                 top: Topology, console: Console) -> dict[str, dict[str, dict]]:
    """{model: {start: analysed run}} for every calculator (teacher included) from every start."""
    from muse_ff.contestants import slug

    bond_list = bonds(top.reference)
    runs: dict[str, dict[str, dict]] = {}
    for name, make in calculators.items():
        runs[name] = {}
        for start, atoms in start_structures.items():
            console.print(f"MD {name} from the {start} start: {md.steps} steps")
            run = run_one(atoms, make(), md, out / "md" / slug(name) / start)
            runs[name][start] = analyse(run, top, bond_list, md)
    return runs


def result_rows(runs: dict, reference: dict[str, np.ndarray]) -> tuple[list[list], dict]:
    rows, comparisons = [], {}
    ref_row = compare({"obs": reference}, reference, None)
    rows.append(["teacher 100 ps reference", "folded", fmt(ref_row["folded_fraction"], 2),
                 *[fmt(ref_row[f"mean_{k}"], 2) for k in RANGES], "-", "-", "-", "-", "-", "-"])
    for name, by_start in runs.items():
        for start, res in by_start.items():
            same = runs["teacher"][start] if "teacher" in runs and name != "teacher" else None
            c = compare(res, reference, same)
            comparisons[f"{name}/{start}"] = c
            jsd_same = [fmt(c.get(f"jsd_same_{k}"), 2) for k in RANGES]
            rows.append([name, start, fmt(c["folded_fraction"], 2), *[fmt(c[f"mean_{k}"], 2) for k in RANGES],
                         *[fmt(c[f"jsd_{k}"], 2) for k in RANGES], " / ".join(jsd_same),
                         "yes" if res["stable"] else f"NO, at {res['failed_at_ps']:.2f} ps",
                         f"{res['max_force']:.1f} / {res['max_bond_dev']:.2f}"])
    return rows, comparisons


#: observables (and JSDs) use only the frames before a blow-up
COLUMNS = ["model", "start", "folded frac.", "<e2e> Å", "<Rg> Å", "<RMSD> Å", "JSD e2e", "JSD Rg", "JSD RMSD",
           "JSD vs teacher same run (e2e/Rg/RMSD)", "stable (no bond > 30 % off)", "max|F| eV/Å / max bond dev."]


def plot(runs: dict, reference: dict[str, np.ndarray], path: Path) -> Path:
    """Histograms of the three observables (rows: starts) for the teacher and each model."""
    plt = pyplot()
    starts_ = list(next(iter(runs.values())))
    fig, axes = plt.subplots(len(starts_), len(RANGES), figsize=(10, 2.8 * len(starts_)), squeeze=False)
    labels = {"end_to_end": "end-to-end CA1-CA10 (Å)", "rg": "radius of gyration (Å)", "rmsd_ca": "CA RMSD (Å)"}
    for i, start in enumerate(starts_):
        for j, (k, (lo, hi)) in enumerate(RANGES.items()):
            ax = axes[i, j]
            edges = np.linspace(lo, hi, BINS + 1)
            ax.hist(reference[k], edges, density=True, color="lightgrey", label="teacher, 100 ps reference")
            for name, by_start in runs.items():
                ax.hist(by_start[start]["obs"][k], edges, density=True, histtype="step", lw=1.5,
                        label=f"{name}, same protocol" if name == "teacher" else name)
            ax.set_xlabel(labels[k])
            if j == 0:
                ax.set_ylabel(f"{start} start: density")
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, path)


def _md_device(mode: str) -> str:
    """``cuda`` for ``--full`` runs on a GPU machine, else ``cpu``."""
    import torch

    return "cuda" if mode == "full" and torch.cuda.is_available() else "cpu"


def run(out: Path, mode: str = "default", data_dir: Path = Path("data"), progress: bool = False,
        retrain: bool = False, console: Console | None = None) -> dict:
    """Train the models on the teacher's MD frames, run MD from both starts, compare observables."""
    from muse_ff.calculator import MuSECalculator
    from muse_ff.teachers.labelling import read_frames

    console = console or Console()
    report = Report("folding", mode)
    budget, md = BUDGETS[mode]
    folder = Path(data_dir) / FOLDER
    frames, top = read_frames(folder / "folding.extxyz.xz"), topology(folder)
    split = {s: [a for a in frames if a.info["split"] == s] for s in ("train", "valid")}
    trained = train_pair(split["train"], split["valid"], out, budget, progress, retrain, console)
    calculators = {"teacher": lambda: teacher_calculator(top)}
    device = _md_device(mode)
    calculators.update({name: (lambda p=t.path: MuSECalculator(p, device=device)) for name, t in trained.items()})
    runs = simulate_all(calculators, starts(frames, top), md, out, top, console)
    reference = teacher_reference(folder)
    rows, comparisons = result_rows(runs, reference)
    report.add_table("training (validation frames): E meV/atom, F meV/Å",
                     ["model", "params", "train s", "val E MAE", "val F MAE"], trained_rows(trained))
    report.add_table(f"chignolin Langevin MD at {TEMPERATURE:g} K, {md.steps} steps of {md.timestep:g} fs "
                     f"(H 3 amu, X-H bonds constrained); JSD in bits vs the teacher's 100 ps reference; "
                     "observables from the frames before a blow-up", COLUMNS, rows)
    report.add_table("MD cost", ["model", "ms per step"],
                     [[n, fmt(float(np.mean([r["ms_per_step"] for r in b.values()])), 1)] for n, b in runs.items()])
    report.plots.append(str(plot(runs, reference, out / "folding_observables.png")))
    report.results = {"comparisons": comparisons, "md": md,
                      "runs": {n: {s: {k: v for k, v in r.items()} for s, r in b.items()} for n, b in runs.items()},
                      "training": {k: t.summary for k, t in trained.items()}, "budget": budget}
    return report.write(out, console)
