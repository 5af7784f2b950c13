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


def _integrator(atoms: Atoms, s: MDSettings):
    if s.integrator == "langevin":
        from ase.md.langevin import Langevin

        return Langevin(atoms, s.timestep * units.fs, temperature_K=s.temperature, friction=s.friction / units.fs,
                        fixcm=False, rng=np.random.default_rng(s.seed))
    if s.integrator == "verlet":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, s.timestep * units.fs)
    raise ValueError(f"unknown integrator {s.integrator!r}; allowed: ['langevin', 'verlet']")


def run_md(atoms: Atoms, calculator, settings: MDSettings, trajectory: str | Path, log: str | Path,
           progress: bool = True) -> Atoms:
    """Run MD from ``atoms`` (velocities drawn at ``temperature`` unless already set); returns the last frame.

    Every ``interval`` steps a frame (positions, energy, forces) is appended to ``trajectory`` (extended XYZ,
    or ASE ``.traj``) and a line to ``log`` (time, energies, temperature).
    """
    atoms = atoms.copy()
    atoms.calc = calculator
    if not atoms.get_velocities().any():
        _thermalize(atoms, temperature_K=settings.temperature, rng=np.random.default_rng(settings.seed))
        Stationary(atoms)
        ZeroRotation(atoms)
    dyn = _integrator(atoms, settings)
    trajectory = Path(trajectory)
    trajectory.unlink(missing_ok=True)
    if trajectory.suffix == ".traj":
        from ase.io.trajectory import Trajectory

        dyn.attach(Trajectory(str(trajectory), "w", atoms).write, interval=settings.interval)
    else:
        dyn.attach(lambda: write(trajectory, atoms, append=True), interval=settings.interval)
    dyn.attach(MDLogger(dyn, atoms, str(log), header=True, stress=False, peratom=False), interval=settings.interval)
    _run_with_progress(dyn, settings.steps, progress)
    return atoms


def _run_with_progress(dyn, steps: int, progress: bool) -> None:
    if not progress:
        dyn.run(steps)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("MD"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TextColumn("T={task.fields[temp]:.0f} K"), TimeElapsedColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("md", total=steps, temp=dyn.atoms.get_temperature())
        dyn.attach(lambda: bar.update(task, completed=dyn.nsteps, temp=dyn.atoms.get_temperature()), interval=1)
        dyn.run(steps)
