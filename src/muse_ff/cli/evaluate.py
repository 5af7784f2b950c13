"""``muse eval MODEL DATA.extxyz``: errors of a trained model against labelled frames."""

from __future__ import annotations

import argparse
import json

HELP = "errors of a model on labelled frames: energy, force (per element) and stress MAE/RMSE, parity plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file written by muse train (model.pt)")
    parser.add_argument("data", help="extended XYZ file with labels")
    parser.add_argument("--index", default=":", help="ASE index of frames to use (default ':' = all)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    parser.add_argument("--plots", default=None, metavar="DIR", help="write parity plots (PNG) into DIR")
    parser.add_argument("--energy-key", default="REF_energy")
    parser.add_argument("--forces-key", default="REF_forces")
    parser.add_argument("--stress-key", default="REF_stress")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from ase.io import read

    from muse_ff.analysis.metrics import evaluate_frames
    from muse_ff.data.atoms import LabelKeys
    from muse_ff.io.serialization import load_model

    model = load_model(args.model, device=args.device)
    frames = read(args.data, index=args.index)
    frames = frames if isinstance(frames, list) else [frames]
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key, stress=args.stress_key)
    preds = evaluate_frames(model, frames, keys, batch_size=args.batch_size)
    metrics = preds.metrics()
    if args.plots:
        from muse_ff.analysis.plots import parity_plots

        metrics["plots"] = [str(p) for p in parity_plots(preds, args.plots)]
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        from rich.console import Console

        from muse_ff.training.report import metrics_table

        console = Console()
        console.print(metrics_table(metrics, f"{args.data}: {metrics['frames']} frames, {metrics['atoms']} atoms"))
        for path in metrics.get("plots", []):
            console.print(f"plot: {path}")
    return 0
