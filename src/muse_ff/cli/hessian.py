"""``muse hessian MODEL STRUCTURE``: autograd Hessian, harmonic frequencies (cm^-1) and normal modes.

The rigid-body motions projected out follow the structure's periodicity: translations and rotations for a
free molecule, translations and the rotation about the axis for a structure periodic in one direction,
translations only for two or three periodic directions. The Hessian's rows are computed in chunks sized so
that its memory stays within ``--max-memory`` (GB). ``--json`` prints strict JSON: a non-finite number
is written as ``null``. ``--dtype float64`` evaluates a float32 model in float64 (same weights) for the
optimisation and the Hessian.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

HELP = ("harmonic frequencies (cm^-1, rigid-body motions projected out: translations, and rotations where the "
        "structure is not periodic) and normal modes from the autograd Hessian")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from muse_ff.physics.derivatives import DEFAULT_MAX_MEMORY

    parser.add_argument("model", help="model file (model.pt)")
    parser.add_argument("structure", help="structure file (any ASE-readable file; last frame is used)")
    parser.add_argument("--optimize", action="store_true", help="relax with BFGS before the Hessian")
    parser.add_argument("--fmax", type=_positive_float, default=1e-3, help="BFGS force threshold, eV/Å (1e-3)")
    parser.add_argument("--steps", type=_positive_int, default=1000, help="maximum BFGS steps")
    parser.add_argument("--modes", default="modes.extxyz", help="normal modes output (modes.extxyz)")
    parser.add_argument("--hessian-out", default=None, help="also save the Hessian (eV/Å^2) as .npy")
    parser.add_argument("--json", action="store_true", help="print frequencies as JSON")
    parser.add_argument("--max-memory", type=_positive_float, default=DEFAULT_MAX_MEMORY / 1024**3,
                        metavar="GB", help="bound on the memory the Hessian takes, in GiB; its rows are "
                        f"computed in chunks that fit ({DEFAULT_MAX_MEMORY / 1024**3:g})")
    parser.add_argument("--chunk", type=_positive_int, default=None, metavar="ROWS",
                        help="Hessian rows per vectorised product instead of the chunk --max-memory gives")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                        help="dtype the model is evaluated in (default: the model's own); float64 evaluates a "
                             "float32 model without float32 rounding (same weights), for the optimisation and "
                             "the Hessian")


def _check_output(path: str, what: str) -> None:
    """Refuse an output path that cannot be written before the (long) computation, not after it."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"the {what} output {path} is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"the folder of the {what} output {path} does not exist")


def _json_number(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def json_report(result, modes: str) -> str:
    """The ``--json`` text: strict JSON (``allow_nan=False``), non-finite frequencies as ``null``."""
    return json.dumps({"frequencies_cm1": [_json_number(f) for f in result.frequencies_cm1],
                       "rigid_cm1": [_json_number(f) for f in result.rigid_cm1], "modes": modes},
                      indent=2, allow_nan=False)


def run(args: argparse.Namespace) -> int:
    from muse_ff.analysis.vibrations import relaxed_copy, structure_analysis, write_modes
    from muse_ff.calculator import MuSECalculator
    from muse_ff.devices import check_device
    from muse_ff.io.structures import read_structures

    check_device(args.device)  # a GPU that is not there: one sentence, before any work
    _check_output(args.modes, "modes")
    if args.hessian_out:
        _check_output(args.hessian_out, "Hessian")
    atoms = read_structures(args.structure, -1)
    calc = MuSECalculator(args.model, device=args.device, dtype=args.dtype)
    atoms = relaxed_copy(atoms, calc, args.optimize, args.fmax, args.steps)
    hess = calc.get_hessian(atoms, max_memory=args.max_memory * 1024**3, chunk=args.chunk)
    result = structure_analysis(hess, atoms)
    write_modes(args.modes, atoms, result)
    if args.hessian_out:
        np.save(args.hessian_out, hess)
    if args.json:
        print(json_report(result, args.modes))
        return 0
    fmax = float(np.abs(atoms.get_forces()).max())
    periodic = int(np.count_nonzero(atoms.pbc))
    kind = ("translations and rotations" if periodic == 0 else
            "translations and the rotation about the periodic axis" if periodic == 1 else
            "translations; rotations are vibrations in a cell periodic in 2 or 3 directions")
    print(f"{len(atoms)} atoms, max |F| = {fmax:.2e} eV/Å; {len(result.frequencies_cm1)} vibrational modes "
          f"({len(result.rigid_cm1)} rigid-body motions projected out ({kind}), their residual frequencies "
          f"{np.round(result.rigid_cm1, 2).tolist()} cm^-1)")
    for k, f in enumerate(result.frequencies_cm1):
        print(f"{k:4d} {f:12.2f} cm^-1" + ("  (imaginary)" if f < 0 else ""))
    print(f"modes written to {args.modes}")
    return 0
