"""``muse eval MODEL DATA.extxyz``: errors of a trained model against labelled frames."""

from __future__ import annotations

import argparse
import sys

HELP = "errors of a model on labelled frames: energy, force (per element) and stress MAE/RMSE, parity plots"

_SKIP = "none"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file written by muse train (model.pt)")
    parser.add_argument("data", help="extended XYZ file with labels")
    parser.add_argument("--index", default=":", help="ASE index of frames to use (default ':' = all)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table "
                        "(strict JSON: a value that is not finite is written as null)")
    parser.add_argument("--plots", default=None, metavar="DIR", help="write parity plots (PNG) into DIR")
    parser.add_argument("--energy-key", default="REF_energy",
                        help="info key of the reference energies (default REF_energy; 'none': not evaluated)")
    parser.add_argument("--forces-key", default="REF_forces",
                        help="per-atom array of the reference forces (default REF_forces; 'none': not evaluated)")
    parser.add_argument("--stress-key", default=None,
                        help="info key of the reference stress; given explicitly, it must be in the file "
                             "(default: REF_stress where present)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")


def _read(path: str, index: str) -> list:
    """Frames ``index`` of ``path``; ``info['_source']`` names each ``path:k`` by its index in the file."""
    from ase.io.formats import string2index

    from muse_ff.io.structures import read_structures

    frames = read_structures(path, ":")
    try:
        picked = range(len(frames))[string2index(index)]
    except (ValueError, IndexError):
        raise ValueError(f"--index {index!r} selects no frames of {path} ({len(frames)} frames)") from None
    picked = [picked] if isinstance(picked, int) else list(picked)
    for k in picked:
        frames[k].info["_source"] = f"{path}:{k}"
    return [frames[k] for k in picked]


def check_asked_labels(frames: list, path: str, energy: str | None, forces: str | None,
                       stress: str | None) -> list[str]:
    """Raise ``LabelError`` when an asked label key is in none of ``frames``; returns warnings for keys only
    some frames carry (those frames are left out of that quantity's errors)."""
    from muse_ff.training.data import LabelError

    asked = [(f"energies {energy!r} (--energy-key)", energy, "info", True),
             (f"forces {forces!r} (--forces-key)", forces, "arrays", True),
             (f"stress {stress!r} (--stress-key)", stress, "info", False)]  # stress: periodic frames only
    missing, notes = [], []
    for what, key, where, everywhere in asked:
        if key is None:
            continue
        have = sum(key in getattr(a, where) for a in frames)
        if have == 0:
            missing.append(what)
        elif have < len(frames) and everywhere:
            notes.append(f"{len(frames) - have} of {len(frames)} frames have no {key!r}: they are left out of "
                         f"its errors")
    if missing:
        info = sorted({k for a in frames for k in a.info} - {"_source"})
        arrays = sorted({k for a in frames for k in a.arrays} - {"numbers", "positions"})
        raise LabelError(f"{path} lacks the asked {' and '.join(missing)} labels in all its {len(frames)} "
                         f"frames, which carry info keys {info} and per-atom arrays {arrays}")
    return notes


def run(args: argparse.Namespace) -> int:
    from muse_ff.analysis.metrics import evaluate_frames, to_json
    from muse_ff.data.atoms import LabelKeys
    from muse_ff.io.serialization import load_model

    model = load_model(args.model, device=args.device)
    frames = _read(args.data, args.index)
    energy = None if args.energy_key.lower() == _SKIP else args.energy_key
    forces = None if args.forces_key.lower() == _SKIP else args.forces_key
    if energy is None and forces is None:
        raise ValueError("--energy-key none and --forces-key none leave nothing to evaluate")
    for note in check_asked_labels(frames, args.data, energy, forces, args.stress_key):
        print(f"muse eval: warning: {note}", file=sys.stderr)
    # a skipped quantity gets a key no frame can carry: its reference is then missing everywhere
    keys = LabelKeys(energy=energy or "", forces=forces or "", stress=args.stress_key or "REF_stress")
    preds = evaluate_frames(model, frames, keys, batch_size=args.batch_size)
    metrics = preds.metrics()
    if args.plots:
        from muse_ff.analysis.plots import parity_plots

        metrics["plots"] = [str(p) for p in parity_plots(preds, args.plots)]
    if args.json:
        print(to_json(metrics, indent=2))
    else:
        from rich.console import Console

        from muse_ff.training.report import metrics_table

        console = Console()
        console.print(metrics_table(metrics, f"{args.data}: {metrics['frames']} frames, {metrics['atoms']} atoms"))
        for path in metrics.get("plots", []):
            console.print(f"plot: {path}")
    return 0
