"""``muse label IN OUT --teacher NAME``: label structures with a reference method (resumable, parallel)."""

from __future__ import annotations

import argparse
import sys

from muse_ff.data.atoms import LabelKeys

HELP = "label structures with a teacher (GFN1/GFN2-xTB, amber14+GBn2): parallel, resumable"

#: the command's teacher choices (the library map lives in muse_ff.teachers.TEACHERS)
TEACHER_NAMES = ("gfn1-xtb", "gfn2-xtb", "amber14-gbn2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="structures to label (extxyz or any format ASE reads)")
    parser.add_argument("output", help="labelled extxyz to write (.gz/.xz compress); resumed if interrupted")
    parser.add_argument("--teacher", required=True, choices=TEACHER_NAMES, help="reference method")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (default 1)")
    parser.add_argument("--pdb", help="PDB topology file (required by amber14-gbn2)")
    parser.add_argument("--charge", type=int, default=None,
                        help="total charge for xTB (default: each frame's info 'charge', else 0)")
    parser.add_argument("--accuracy", type=float, default=None, help="xTB SCC accuracy (default 1.0)")
    parser.add_argument("--energy-key", default=LabelKeys.energy, help="info key for energies (eV)")
    parser.add_argument("--forces-key", default=LabelKeys.forces, help="array key for forces (eV/Å)")
    parser.add_argument("--stress-key", default=LabelKeys.stress, help="info key for stress (eV/Å^3)")
    parser.add_argument("--allow-failures", action="store_true",
                        help="exit 0 even if some frames could not be labelled (they are still reported)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUTPUT that holds other labels (another teacher, other settings "
                             "or other structures); without it such a file is refused. An OUTPUT of the same "
                             "teacher and input is always completed, its labels reused")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def teacher_settings(args: argparse.Namespace) -> dict:
    """Teacher settings from the command-line options that apply to ``args.teacher``."""
    settings: dict = {"threads": args.threads}
    if args.teacher == "amber14-gbn2":
        if not args.pdb:
            raise ValueError("--teacher amber14-gbn2 needs a topology: give --pdb FILE")
        settings["pdb"] = args.pdb
    else:
        if args.pdb:
            raise ValueError(f"--pdb is only used by amber14-gbn2, not by {args.teacher}")
        for key in ("charge", "accuracy"):
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
    return settings


def run(args: argparse.Namespace) -> int:
    from muse_ff.teachers import label_file

    # a bad input file (StructureReadError), a teacher that cannot start or a locked journal
    # (TeacherError) are MuseErrors: reported by muse_ff.cli.main as one sentence
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key, stress=args.stress_key)
    report = label_file(args.input, args.output, args.teacher, teacher_settings(args),
                        workers=args.workers, keys=keys, progress=not args.no_progress, overwrite=args.overwrite)
    print(f"labelled {report.labelled}/{report.total} frames with {args.teacher} -> {report.out_path} "
          f"({report.computed} computed, {report.reused} reused from an earlier run, {report.seconds:.1f} s)")
    if report.failures:
        print(f"{len(report.failures)} frame(s) FAILED and are not in the output; see {report.failures_path}:",
              file=sys.stderr)
        for index, message in report.failures[:10]:
            print(f"  frame {index}: {message}", file=sys.stderr)
        if len(report.failures) > 10:
            print(f"  ... and {len(report.failures) - 10} more", file=sys.stderr)
        return 0 if args.allow_failures else 1
    return 0
