"""``muse bench speed``: milliseconds per MD step of each model next to the teacher, on the benchmark systems.

Systems: benzene 3.4 Å over the C96H24 flake (126 atoms; teacher GFN1-xTB) and chignolin (138 atoms; teacher
Amber14 + GBn2, OpenMM CPU platform). Models: the registry's ``bench`` suite (PaiNN, MuSE(PaiNN),
PaiNN+LES, PaiNN+phys, MuSE-intra(PaiNN)+phys) with the benchmarks' default size
(speed does not depend on the weights, so they are not trained here). A step is one energy + forces call
through the ASE calculator at a new geometry (neighbour lists, and for MuSE the coarse levels, rebuilt;
coarse topology reused while the bonds stay), as in MD; after a few warm-up steps the wall time of ``steps`` steps is measured.
Scaling to large systems and the hierarchy's overhead are in docs/SPEED.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from ase import Atoms
from rich.console import Console

from muse_ff.bench.common import MODELS, Report, contestant_config, fmt, pyplot, save_figure
from muse_ff.bench.graphene import BUDGETS as GRAPHENE_BUDGETS

#: mode -> (model steps, teacher steps, warm-up steps); quick mode does not time the teacher (xTB: seconds)
STEPS = {"quick": (3, 0, 1), "default": (30, 5, 3), "full": (200, 20, 10)}


def systems(data_dir: Path) -> dict[str, tuple[Atoms, str, dict]]:
    """{name: (atoms, teacher name, teacher settings)}."""
    from ase.io import read

    from muse_ff.teachers.labelling import read_frames

    frames = read_frames(data_dir / "molecule-graphene" / "molecule-graphene.extxyz.xz")
    complex_ = next(a for a in frames if a.info["role"] == "curve" and a.info["molecule"] == "benzene"
                    and a.info["substrate"] == "flake" and abs(a.info["height"] - 3.4) < 1e-6)
    chignolin = read(data_dir / "folding" / "folding-reference.extxyz")
    pdb = str(data_dir / "folding" / "chignolin.pdb")
    return {"benzene over flake": (complex_, "gfn1-xtb", {}),
            "chignolin": (chignolin, "amber14-gbn2", {"pdb": pdb, "platform": "CPU"})}


def time_md(atoms: Atoms, calculator, steps: int, warmup: int) -> float:
    """Wall seconds per MD step: one energy + forces call at a new geometry (positions displaced by 0.01 Å
    Gaussian noise each step; neighbour lists and coarse levels rebuilt, coarse topology reused), after ``warmup``.

    Not a real trajectory: untrained models (speed does not depend on the weights) would blow one up; the
    integrator's own cost is negligible next to the force call."""
    atoms = atoms.copy()
    atoms.info, atoms.calc = {}, calculator
    start_positions = atoms.positions.copy()
    rng = np.random.default_rng(0)
    for _ in range(warmup):
        atoms.positions = start_positions + rng.normal(0.0, 0.01, start_positions.shape)
        atoms.get_forces()
    start = time.perf_counter()
    for _ in range(steps):
        atoms.positions = start_positions + rng.normal(0.0, 0.01, start_positions.shape)
        atoms.get_forces()
    return (time.perf_counter() - start) / steps


def calculators(teacher: str, settings: dict, mode: str) -> dict:
    """{name: factory} for the teacher and every model of :data:`~muse_ff.bench.common.MODELS` (the
    registry's ``bench`` suite, :mod:`muse_ff.contestants`)."""
    from muse_ff import build_model
    from muse_ff.calculator import MuSECalculator
    from muse_ff.teachers import get_teacher
    from muse_ff.teachers.calculator import TeacherCalculator

    budget = GRAPHENE_BUDGETS["full" if mode == "full" else "default"]
    out = {f"teacher ({teacher})": lambda: TeacherCalculator(get_teacher(teacher, **settings))}
    for name, spec in MODELS.items():
        out[name] = lambda sp=spec: MuSECalculator(build_model(contestant_config(budget, sp)))
    return out


def plot(results: dict, path: Path) -> Path:
    """Bar chart of ms per MD step (log scale), one group per system."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = sorted({n for r in results.values() for n in r["seconds_per_step"]}, key=lambda n: n[:7] != "teacher")
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        x = [j + k * width for j, r in enumerate(results.values()) if name in r["seconds_per_step"]]
        y = [1000 * r["seconds_per_step"][name] for r in results.values() if name in r["seconds_per_step"]]
        ax.bar(x, y, width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(results))], list(results))
    ax.set_yscale("log")
    ax.set_ylabel("ms per MD step")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def run(out: Path, mode: str = "default", data_dir: Path = Path("data"), progress: bool = False,
        retrain: bool = False, console: Console | None = None) -> dict:
    """Time each model and the teacher per MD step on each system; write the table."""
    console = console or Console()
    report = Report("speed", mode)
    steps, teacher_steps, warmup = STEPS[mode]
    rows, results = [], {}
    for system, (atoms, teacher, settings) in systems(Path(data_dir)).items():
        per = {}
        for name, make in calculators(teacher, settings, mode).items():
            n = teacher_steps if name.startswith("teacher") else steps
            if n:
                console.print(f"{system}: {name}, {n} steps")
                per[name] = time_md(atoms, make(), n, warmup)
        t_teacher = next((v for k, v in per.items() if k.startswith("teacher")), None)
        for name, sec in per.items():
            rows.append([system, len(atoms), name, fmt(1000 * sec, 1), fmt(len(atoms) / sec, 0),
                         fmt(t_teacher / sec, 2) if t_teacher else "-"])
        results[system] = {"atoms": len(atoms), "seconds_per_step": per}
    import torch

    report.add_table(f"MD step cost (energy + forces at a new geometry; torch threads {torch.get_num_threads()})",
                     ["system", "atoms", "model", "ms / step", "atom-steps / s", "speed-up vs teacher"], rows)
    report.plots.append(str(plot(results, out / "speed.png")))
    report.results = {"systems": results, "steps": {"model": steps, "teacher": teacher_steps, "warmup": warmup}}
    return report.write(out, console)
