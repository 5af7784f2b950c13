"""``muse hessian MODEL STRUCTURE``: autograd Hessian, harmonic frequencies (cm^-1) and normal modes."""

from __future__ import annotations

import argparse
import json

import numpy as np

HELP = "harmonic frequencies (cm^-1, translations/rotations projected out) and normal modes from the autograd Hessian"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (model.pt)")
    parser.add_argument("structure", help="structure file (any ASE-readable file; last frame is used)")
    parser.add_argument("--optimize", action="store_true", help="relax with BFGS before the Hessian")
    parser.add_argument("--fmax", type=float, default=1e-3, help="BFGS force threshold, eV/Å (1e-3)")
    parser.add_argument("--steps", type=int, default=1000, help="maximum BFGS steps")
    parser.add_argument("--modes", default="modes.extxyz", help="normal modes output (modes.extxyz)")
    parser.add_argument("--hessian-out", default=None, help="also save the Hessian (eV/Å^2) as .npy")
    parser.add_argument("--json", action="store_true", help="print frequencies as JSON")
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from ase.io import read

    from muse_ff.analysis.vibrations import model_vibrations, write_modes
    from muse_ff.calculator import MuSECalculator

    calc = MuSECalculator(args.model, device=args.device)
    atoms, result = model_vibrations(read(args.structure, index=-1), calc, args.optimize, args.fmax, args.steps)
    write_modes(args.modes, atoms, result)
    if args.hessian_out:
        np.save(args.hessian_out, calc.get_hessian(atoms))
    if args.json:
        print(json.dumps({"frequencies_cm1": result.frequencies_cm1.tolist(),
                          "rigid_cm1": result.rigid_cm1.tolist(), "modes": args.modes}, indent=2))
        return 0
    fmax = float(np.abs(atoms.get_forces()).max())
    print(f"{len(atoms)} atoms, max |F| = {fmax:.2e} eV/Å; {len(result.frequencies_cm1)} vibrational modes "
          f"({len(result.rigid_cm1)} rigid-body motions projected out, their residual frequencies "
          f"{np.round(result.rigid_cm1, 2).tolist()} cm^-1)")
    for k, f in enumerate(result.frequencies_cm1):
        print(f"{k:4d} {f:12.2f} cm^-1" + ("  (imaginary)" if f < 0 else ""))
    print(f"modes written to {args.modes}")
    return 0
