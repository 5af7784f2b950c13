"""Molecular dynamics with a MuSE model through ASE (Langevin or velocity Verlet), with a progress bar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.io import write
from ase.md import MDLogger
from ase.md.velocitydistribution import Stationary, ZeroRotation

try:  # ase >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta as _thermalize
except ImportError:  # older ase
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as _thermalize


@dataclass(frozen=True)
class MDSettings:
    """integrator ``langevin`` or ``verlet``; temperature (K); timestep (fs); friction (1/fs, Langevin);
    steps; interval (steps between trajectory frames and log lines); seed (initial velocities, noise)."""

    integrator: str = "langevin"
    temperature: float = 300.0
    timestep: float = 0.5
    friction: float = 0.01
    steps: int = 1000
    interval: int = 10
    seed: int = 0


def _integrator(atoms: Atoms, s: MDSettings, start_step: int = 0):
    if s.integrator == "langevin":
        from ase.md.langevin import Langevin

        # a continued run (start_step > 0) draws fresh noise: the same seed would repeat the first segment's
        rng = np.random.default_rng(s.seed if start_step == 0 else [s.seed, start_step])
        return Langevin(atoms, s.timestep * units.fs, temperature_K=s.temperature, friction=s.friction / units.fs,
                        fixcm=False, rng=rng)
    if s.integrator == "verlet":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, s.timestep * units.fs)
    raise ValueError(f"unknown integrator {s.integrator!r}; allowed: ['langevin', 'verlet']")


#: per-atom arrays that describe the state of a structure (kept on MD frames); any other array of the start
#: frame (e.g. ``REF_forces``) is a label of the start geometry and would be stale on displaced frames
STATE_ARRAYS = frozenset({"numbers", "positions", "momenta", "masses", "tags", "initial_magmoms",
                          "initial_charges"})

#: ``info`` keys the MD run writes on every frame: the step count and the time (fs) since the run began
STEP_KEY, TIME_KEY = "md_step", "md_time_fs"

#: how ``run_md`` treats existing trajectory and log files
MODES = ("overwrite", "append", "new")


def strip_labels(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` without labels of its geometry: no calculator, only the :data:`STATE_ARRAYS`, and
    of ``info`` only the string-valued entries (names, splits, config types: metadata, not properties of
    the positions). Energies, forces, stresses, dipoles etc. read from a file (``REF_energy``,
    ``REF_forces``, ...) are dropped, so MD frames carry the model's own results only."""
    atoms = atoms.copy()
    atoms.calc = None
    for key in [k for k in atoms.arrays if k not in STATE_ARRAYS]:
        del atoms.arrays[key]
    atoms.info = {k: v for k, v in atoms.info.items()
                  if isinstance(v, str) and k not in (STEP_KEY, TIME_KEY)}
    return atoms


def check_outputs(trajectory: str | Path, log: str | Path, mode: str, structure: str | Path | None = None,
                  inputs=()) -> None:
    """Raise ``ValueError`` (one sentence) if writing ``trajectory`` and ``log`` under ``mode`` would destroy a
    file. ``new`` refuses existing files; ``overwrite`` refuses to replace ``structure`` or any of ``inputs``
    (other files the run reads, e.g. the model); ``append`` lets the trajectory be ``structure`` (continuing
    it) but refuses appending to any other input. The trajectory and the log must be two files."""
    if mode not in MODES:
        raise ValueError(f"unknown output mode {mode!r}; allowed: {list(MODES)}")
    trajectory, log = Path(trajectory), Path(log)
    read = [Path(p) for p in ([structure] if structure is not None else []) + list(inputs)]
    if _same_file(trajectory, log):
        raise ValueError(f"the trajectory and the log are the same file ({trajectory}); give two paths")
    if mode == "new":
        existing = [str(p) for p in (trajectory, log) if p.exists()]
        if existing:
            raise ValueError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; pass "
                             f"--append to continue the run or --overwrite to replace "
                             f"{'it' if len(existing) == 1 else 'them'}")
        return
    if (mode == "append" and structure is not None and trajectory.exists()
            and not _same_file(trajectory, Path(structure))):
        raise ValueError(f"--append continues {trajectory} from its own last frame, but the run starts from "
                         f"{structure}; pass {trajectory} as the structure, or use another --trajectory")
    for out in (trajectory, log):
        for inp in read:
            if not _same_file(out, inp):
                continue
            if mode == "overwrite":
                raise ValueError(f"{out} is an input of this run and --overwrite would destroy it; pass --append to "
                                 f"continue a trajectory, or choose another output path")
            if out is log or structure is None or not _same_file(inp, Path(structure)):
                raise ValueError(f"{out} is an input of this run; appending MD output to it would corrupt it, "
                                 f"choose another output path")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return a.samefile(b)
    return a.resolve() == b.resolve()


def run_md(atoms: Atoms, calculator, settings: MDSettings, trajectory: str | Path, log: str | Path,
           progress: bool = True, mode: str = "overwrite") -> Atoms:
    """Run MD from ``atoms`` (velocities drawn at ``temperature`` unless already set); returns the last frame.

    Every ``interval`` steps a frame (positions, momenta and the model's energy and forces as the calculator
    results, i.e. extxyz ``energy``/``forces``; ``info["md_step"]``, ``info["md_time_fs"]``) is written to
    ``trajectory`` (extended XYZ, or ASE ``.traj``) and a line to ``log`` (time, energies, temperature).
    Labels of the start frame (``REF_energy``, ``REF_forces``, ...) are dropped (:func:`strip_labels`).

    ``mode``: ``overwrite`` replaces existing trajectory and log files; ``new`` refuses them
    (``ValueError``); ``append`` continues a run: the step count and time go on from the start frame's
    ``info["md_step"]`` (0 if absent), the start frame itself is not written again (it is the last frame of
    the run being continued), and frames and log lines are appended.
    """
    check_outputs(trajectory, log, mode)
    start_step = int(atoms.info.get(STEP_KEY, 0)) if mode == "append" else 0
    start_time = float(atoms.info.get(TIME_KEY, start_step * settings.timestep)) if mode == "append" else 0.0
    atoms = strip_labels(atoms)
    atoms.calc = calculator
    if not atoms.get_velocities().any():
        _thermalize(atoms, temperature_K=settings.temperature, rng=np.random.default_rng(settings.seed))
        # removing the centre-of-mass motion (and rotation) rescales what is left to the temperature; a single
        # atom (or two, after the rotation) can be left with none, which ase rescales by inf into NaN momenta
        if len(atoms) > 1:
            Stationary(atoms)
        if len(atoms) > 2:
            ZeroRotation(atoms)
        if not np.isfinite(atoms.get_momenta()).all():
            atoms.set_momenta(np.zeros((len(atoms), 3)))
    dyn = _integrator(atoms, settings, start_step)
    dyn.nsteps = start_step
    trajectory, log = Path(trajectory), Path(log)
    appending = mode == "append"
    if not appending:
        trajectory.unlink(missing_ok=True)
        log.unlink(missing_ok=True)
    log_header = not (appending and log.is_file() and log.stat().st_size > 0)
    if trajectory.suffix == ".traj":
        from ase.io.trajectory import Trajectory

        traj = Trajectory(str(trajectory), "a" if appending else "w", atoms)
        writer = traj.write
    else:
        traj = None

        def writer():
            write(trajectory, atoms, append=True)

    logger = MDLogger(dyn, atoms, str(log), header=log_header, stress=False, peratom=False, mode="a")

    def save():
        if appending and dyn.nsteps == start_step:
            return  # the frame the run continues from is already the last one written
        atoms.info[STEP_KEY] = int(dyn.nsteps)
        atoms.info[TIME_KEY] = start_time + (dyn.nsteps - start_step) * settings.timestep
        writer()
        logger()

    dyn.attach(save, interval=settings.interval)
    try:
        _run_with_progress(dyn, settings.steps, progress)
    finally:
        if traj is not None:
            traj.close()
        logger.close()
    return atoms


def _run_with_progress(dyn, steps: int, progress: bool) -> None:
    first = dyn.nsteps
    if not progress:
        dyn.run(steps)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("MD"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TextColumn("T={task.fields[temp]:.0f} K"), TimeElapsedColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("md", total=steps, temp=dyn.atoms.get_temperature())
        dyn.attach(lambda: bar.update(task, completed=dyn.nsteps - first, temp=dyn.atoms.get_temperature()), interval=1)
        dyn.run(steps)
