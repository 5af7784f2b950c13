"""``muse bench``: the MuSE benchmarks (PaiNN, MuSE(PaiNN), PaiNN+LES vs the teacher; backbones), one command each."""

from __future__ import annotations

import argparse
import importlib
import inspect
from pathlib import Path

HELP = ("run a benchmark (graphene, folding, hessian, speed, backbones, nonlocal or all): train, compare with the "
        "teacher, report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from muse_ff.bench import BENCHMARKS

    parser.add_argument("benchmark", choices=[*BENCHMARKS, "all"], help="which benchmark")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="mode", const="quick",
                      help="tiny training on a few frames (~1 min): a smoke test, not a result")
    size.add_argument("--full", action="store_const", dest="mode", const="full",
                      help="larger models, longer training and MD (for a GPU machine)")
    parser.set_defaults(mode="default")
    parser.add_argument("--output-dir", default="bench_out", help="results go to OUTPUT_DIR/<benchmark>")
    parser.add_argument("--data-dir", default="data", help="the datasets' folder (default: ./data)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fastest for "
                        "these graphs on a busy CPU)")
    parser.add_argument("--retrain", action="store_true", help="train again even if OUTPUT_DIR holds models "
                        "trained with the same configuration")
    parser.add_argument("--progress", action="store_true", help="show training progress bars")
    parser.add_argument("--seeds", type=int, default=None, help="training seeds per contestant, for the "
                        "benchmarks that take them (nonlocal, graphene, hessian; default: the mode's, 3, or 1 with --quick)")
    parser.add_argument("--contestants", default=None, help="comma-separated contestants to train, by name or "
                        "folder name (e.g. 'PaiNN,MuSE(PaiNN)' or painn,muse_painn), for the benchmarks that take "
                        "it (graphene, hessian, folding, nonlocal); default: all")


def run(args: argparse.Namespace) -> int:
    from muse_ff.bench import BENCHMARKS
    from muse_ff.bench.common import torch_threads

    names = list(BENCHMARKS) if args.benchmark == "all" else [args.benchmark]
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder not found: {data_dir} (run from the repository root or give "
                                "--data-dir)")
    with torch_threads(args.threads):
        for name in names:
            module = importlib.import_module(BENCHMARKS[name])
            extra = {}
            if getattr(args, "seeds", None) is not None and "seeds" in inspect.signature(module.run).parameters:
                extra["seeds"] = args.seeds
            if getattr(args, "contestants", None) and "contestants_filter" in inspect.signature(module.run).parameters:
                extra["contestants_filter"] = args.contestants
            module.run(Path(args.output_dir) / name, mode=args.mode, data_dir=data_dir, progress=args.progress,
                       retrain=args.retrain, **extra)
    return 0
