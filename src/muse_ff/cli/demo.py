"""``muse demo``: train MuSE(PaiNN) and plain PaiNN on the shipped dataset and compare them."""

from __future__ import annotations

import argparse

HELP = "train MuSE(PaiNN) and PaiNN on the shipped demo dataset and compare them on held-out frames"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default="demo_out", help="where models, table and plot go (demo_out)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per model (default: the demo's)")
    parser.add_argument("--data", default=None, help="another extxyz with a 'split' info key (default: shipped)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fastest for "
                        "the demo's tiny graphs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from muse_ff.training.demo import run_demo

    run_demo(args.output_dir, epochs=args.epochs, data=args.data, progress=not args.no_progress,
             threads=args.threads)
    return 0
