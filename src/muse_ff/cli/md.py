"""``muse md MODEL STRUCTURE``: molecular dynamics with a trained model (ASE Langevin or velocity Verlet)."""

from __future__ import annotations

import argparse

HELP = "molecular dynamics with a model: Langevin (NVT) or velocity Verlet (NVE); trajectory and log files"

EPILOG = """\
Existing output files are never replaced silently: if --trajectory or --log exists the command stops,
unless --append (continue the run: new frames and log lines are added after the existing ones) or
--overwrite (replace both files) is given. The input structure is never truncated: to continue a run
from its last frame, run `muse md MODEL md.extxyz --append` (steps and time go on from that frame's
md_step/md_time_fs and it is not written twice; its momenta are reused).

Frames hold the model's own results only (extxyz energy, forces, per-atom energies; stress for periodic
cells) and info md_step, md_time_fs. Labels read with the start structure (REF_energy, REF_forces, any
other per-atom array or numeric info entry) are dropped: they belong to the start geometry, not to the
displaced frames. String-valued info (names, config types) is kept."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
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
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--append", action="store_true",
                          help="continue the run: append to an existing --trajectory and --log")
    existing.add_argument("--overwrite", action="store_true",
                          help="replace an existing --trajectory and --log (never the input structure)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                        help="dtype the model is evaluated in (default: the model's own); float64 evaluates a "
                             "float32 model without float32 rounding (same weights): forces that are the exact "
                             "gradient of the energy to float64 precision")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from muse_ff.analysis.dynamics import MDSettings, check_outputs, run_md
    from muse_ff.calculator import MuSECalculator
    from muse_ff.devices import check_device
    from muse_ff.io.structures import read_structures

    check_device(args.device)  # a GPU that is not there: one sentence, before any work
    if args.steps < 0 or args.interval < 1 or args.timestep <= 0:
        raise ValueError("need --steps >= 0, --interval >= 1 and --timestep > 0")
    settings = MDSettings(integrator=args.integrator, temperature=args.temperature, timestep=args.timestep,
                          friction=args.friction, steps=args.steps, interval=args.interval, seed=args.seed)
    mode = "append" if args.append else "overwrite" if args.overwrite else "new"
    check_outputs(args.trajectory, args.log, mode, structure=args.structure, inputs=[args.model])  # before any work
    atoms = read_structures(args.structure, -1)
    calc = MuSECalculator(args.model, device=args.device, dtype=args.dtype)
    final = run_md(atoms, calc, settings, args.trajectory, args.log, progress=not args.no_progress, mode=mode)
    print(f"{args.steps} steps of {args.timestep} fs: final T = {final.get_temperature():.1f} K, "
          f"E_pot = {final.get_potential_energy():.4f} eV; trajectory {args.trajectory}, log {args.log}")
    return 0
