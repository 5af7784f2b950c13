"""``muse md MODEL STRUCTURE``: molecular dynamics with a trained model (ASE Langevin or velocity Verlet)."""

from __future__ import annotations

import argparse

HELP = "molecular dynamics with a model: Langevin (NVT) or velocity Verlet (NVE); trajectory and log files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (model.pt)")
    parser.add_argument("structure", help="starting structure (any ASE-readable file; last frame is used)")
    parser.add_argument("--integrator", choices=["langevin", "verlet"], default="langevin")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs (default 0.5)")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (default 0.01)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=10, help="steps between saved frames and log lines")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trajectory", default="md.extxyz", help="extxyz (or .traj) output (md.extxyz)")
    parser.add_argument("--log", default="md.log", help="energy/temperature log (md.log)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ase.io import read

    from muse_ff.analysis.dynamics import MDSettings, run_md
    from muse_ff.calculator import MuSECalculator

    if args.steps < 0 or args.interval < 1 or args.timestep <= 0:
        raise ValueError("need --steps >= 0, --interval >= 1 and --timestep > 0")
    settings = MDSettings(integrator=args.integrator, temperature=args.temperature, timestep=args.timestep,
                          friction=args.friction, steps=args.steps, interval=args.interval, seed=args.seed)
    atoms = read(args.structure, index=-1)
    final = run_md(atoms, MuSECalculator(args.model, device=args.device), settings, args.trajectory, args.log,
                   progress=not args.no_progress)
    print(f"{args.steps} steps of {args.timestep} fs: final T = {final.get_temperature():.1f} K, "
          f"E_pot = {final.get_potential_energy():.4f} eV; trajectory {args.trajectory}, log {args.log}")
    return 0
