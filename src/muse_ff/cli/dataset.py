"""``muse dataset build NAME``: generate and label one of MuSE's datasets, with its data card."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HELP = "build a dataset (geometries + teacher labels + data card); see docs/DATASETS.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from muse_ff.datasets import BUILDERS

    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = sub.add_parser("build", help="generate and label a dataset")
    build.add_argument("name", choices=sorted(BUILDERS), help="dataset")
    build.add_argument("--out", type=Path, default=None,
                       help="output directory (default: data/NAME, or the package's resources/demo for demo)")
    build.add_argument("--subset", action="store_true",
                       help="a few frames of every group, identical to the stored ones (a quick check)")
    build.add_argument("--workers", type=int, default=1, help="labelling worker processes (default 1)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("list", help="list the datasets")


def run(args: argparse.Namespace) -> int:
    from muse_ff.datasets import BUILDERS, get_builder

    if args.action == "list":
        for name, builder in BUILDERS.items():
            print(f"{name:20s} {builder.summary}")
        return 0
    builder = get_builder(args.name)
    out = args.out if args.out is not None else builder.default_out
    out.mkdir(parents=True, exist_ok=True)
    command = "muse dataset build " + args.name + (" --subset" if args.subset else "")
    command += f" --workers {args.workers}" if args.workers != 1 else ""
    command += f" --out {shlex.quote(str(args.out))}" if args.out is not None else ""
    result = builder.build(out, subset=args.subset, workers=args.workers, progress=not args.no_progress,
                           command=command)
    print(f"{args.name}: {result.n_frames} frames in {result.seconds / 60:.1f} min -> "
          + ", ".join(str(f) for f in result.files))
    if result.failures:
        print(f"{len(result.failures)} frame(s) failed to label (listed in the data card)", file=sys.stderr)
        return 1
    return 0
