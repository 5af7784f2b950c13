"""``muse eval MODEL DATA.extxyz``: errors of a trained model against labelled frames, and its predictions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = ("errors of a model on labelled frames (per element and config type), its predictions (--output), "
        "parity plots")

EPILOG = """\
Labels are read from --energy-key (info), --forces-key (per-atom array) and --stress-key (info); a key
asked for that no frame carries is an error. Keys ASE keeps in a calculator (energy=, forces, stress
columns written by ASE) can be named too: --energy-key energy --forces-key forces.

Errors are printed for all frames, per element (forces) and per config type (info 'config_type', frames
without one are 'Default'), with an 'overall' row; --json prints the same numbers (the overall ones at
the top level, the per-config-type ones under 'config_types').

--output FILE.extxyz writes every evaluated frame with the model's predictions next to the labels it had:
info MUSE_energy (eV), per-atom array MUSE_forces (eV/Å) and, for frames periodic in all three
directions, info MUSE_stress (9 numbers, 3x3 row by row, eV/Å³, ASE's sign convention). An existing file
is only replaced with --overwrite, the input file never. To predict without labels:
  muse eval model.pt new.extxyz --energy-key none --forces-key none --output predictions.extxyz

--dtype float64 evaluates a float32 model in float64 (its weights cast exactly; default: the model's own
dtype).

--plots DIR writes parity plots (PNG) of (E - sum E0)/atoms in meV/atom (E0: the model's own reference
energies per element), force and stress components, each with its MAE and RMSE."""

_SKIP = "none"

#: ASE calculator results usable as labels: where they go (Atoms.info or Atoms.arrays)
_CALC_LABELS = {"energy": "info", "free_energy": "info", "stress": "info", "forces": "arrays"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("model", help="model file written by muse train (model.pt)")
    parser.add_argument("data", help="extended XYZ file (or any file ASE reads) with the frames to evaluate")
    parser.add_argument("--index", default=":", help="ASE index of frames to use (default ':' = all)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of tables "
                        "(strict JSON: a value that is not finite is written as null)")
    parser.add_argument("--plots", default=None, metavar="DIR", help="write parity plots (PNG) into DIR")
    parser.add_argument("--output", "-o", default=None, metavar="FILE",
                        help="write the frames with the predictions (MUSE_energy, MUSE_forces, MUSE_stress) "
                             "next to their labels to this extended XYZ file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file "
                        "(never the input file)")
    parser.add_argument("--output-prefix", default="MUSE_", metavar="PREFIX",
                        help="prefix of the predicted keys in --output (default MUSE_: MUSE_energy, ...)")
    parser.add_argument("--energy-key", default="REF_energy",
                        help="info key of the reference energies (default REF_energy; 'none': not evaluated)")
    parser.add_argument("--forces-key", default="REF_forces",
                        help="per-atom array of the reference forces (default REF_forces; 'none': not evaluated)")
    parser.add_argument("--stress-key", default=None,
                        help="info key of the reference stress; given explicitly, it must be in the file "
                             "(default: REF_stress where present)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                        help="dtype the model is evaluated in (default: the model's own); float64 evaluates a "
                             "float32 model without float32 rounding (same weights)")


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


def _with_calculator_labels(frames: list) -> list:
    """Copies of ``frames`` (no calculator) whose info/arrays also hold the results ASE put into a
    calculator on reading (``energy``, ``free_energy``, ``stress``, ``forces``), unless already there."""
    out = []
    for a in frames:
        b = a.copy()  # info and arrays copied, the calculator dropped
        results = getattr(a.calc, "results", None) or {}
        for key, where in _CALC_LABELS.items():
            if key in results and key not in getattr(b, where):
                if where == "info":
                    b.info[key] = results[key]
                else:
                    b.arrays[key] = results[key]
        out.append(b)
    return out


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
                         f"frames, which carry info keys {info} and per-atom arrays {arrays} (to only predict, "
                         f"pass --energy-key none --forces-key none --output FILE)")
    return notes


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return a.samefile(b)
    return a.resolve() == b.resolve()


def check_output(output: str, overwrite: bool, inputs: list[str]) -> None:
    """Raise ``ValueError`` (one sentence) unless predictions may be written to ``output``: an extended XYZ
    name, not one of ``inputs`` (even with ``overwrite``), not an existing file unless ``overwrite``."""
    path = Path(output)
    for inp in inputs:
        if _same_file(path, Path(inp)):
            raise ValueError(f"--output {output} is an input of this command ({inp}) and would be destroyed; "
                             f"choose another output path")
    if not (path.name.endswith(".extxyz") or path.name.endswith(".xyz")):
        raise ValueError(f"--output {output}: predictions are written as extended XYZ; give a file name ending "
                         f"in .extxyz or .xyz")
    if path.is_dir():
        raise ValueError(f"--output {output} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise ValueError(f"--output {output} already exists; pass --overwrite to replace it or choose another path")


def write_predictions(path: str, frames: list, preds, prefix: str = "MUSE_") -> None:
    """Write ``frames`` (as read, labels kept) with ``{prefix}energy`` (info, eV), ``{prefix}forces``
    (arrays, eV/Å) and, for frames periodic in 3D, ``{prefix}stress`` (info, 9 numbers, eV/Å³) to the
    extended XYZ file ``path``, atomically (a failure leaves no partial file)."""
    import ase.io
    import numpy as np

    from muse_ff.io.serialization import atomic_write

    out = []
    for a, energy, forces, stress in zip(frames, preds.energy_pred, preds.frame_forces(), preds.stress_pred):
        b = a.copy()
        b.calc = a.calc  # the labels ASE read into a calculator (energy=, forces) are written back as read
        b.info.pop("_source", None)
        b.info[f"{prefix}energy"] = float(energy)
        b.arrays[f"{prefix}forces"] = np.asarray(forces, dtype=np.float64)
        if np.all(a.pbc):
            b.info[f"{prefix}stress"] = np.asarray(stress, dtype=np.float64).reshape(9)
        else:
            b.info.pop(f"{prefix}stress", None)  # from an earlier evaluation of another geometry's file
        out.append(b)
    atomic_write(path, lambda tmp: ase.io.write(tmp, out, format="extxyz"))


def _fmt(errs: dict, key: str, stat: str) -> str:
    """An error in the table: 3 significant decimals for small values, fewer for large (column width)."""
    value = errs.get(f"{key}_{stat}")
    if value is None:
        return "-"
    digits = 3 if abs(value) < 10 else 2 if abs(value) < 100 else 1 if abs(value) < 1000 else 0
    return f"{value:.{digits}f}"


#: (metrics key, column label, unit) of the quantities in :func:`config_type_table`
_QUANTITIES = (("energy", "E", "meV/atom"), ("forces", "F", "meV/Å"), ("stress", "S", "meV/Å³"))


def config_type_table(by_type: dict[str, dict], overall: dict, title: str):
    """Rich table, one row per config type then 'overall': frames, atoms and energy (E), forces (F), stress
    (S) MAE/RMSE, units in the title (quantities no frame has labels for are left out)."""
    from rich import box
    from rich.table import Table

    quantities = [q for q in _QUANTITIES if f"{q[0]}_mae" in overall]
    units = ", ".join(f"{label} {unit}" for _, label, unit in quantities)
    table = Table(title=f"{title} ({units})", box=box.HORIZONTALS, pad_edge=False, collapse_padding=True)
    table.add_column("config_type", justify="left", no_wrap=True)
    table.add_column("frames", justify="right", no_wrap=True)
    table.add_column("atoms", justify="right", no_wrap=True)
    for _, label, _ in quantities:
        table.add_column(f"{label} MAE", justify="right", no_wrap=True)
        table.add_column(f"{label} RMSE", justify="right", no_wrap=True)
    rows = list(by_type.items())
    for k, (name, errs) in enumerate(rows):
        table.add_row(name, str(errs["frames"]), str(errs["atoms"]),
                      *[_fmt(errs, key, stat) for key, _, _ in quantities for stat in ("mae", "rmse")],
                      end_section=k == len(rows) - 1)
    table.add_row("overall", str(overall["frames"]), str(overall["atoms"]),
                  *[_fmt(overall, key, stat) for key, _, _ in quantities for stat in ("mae", "rmse")])
    return table


def run(args: argparse.Namespace) -> int:
    from muse_ff.analysis.metrics import evaluate_frames, to_json
    from muse_ff.calculator import evaluation_model
    from muse_ff.data.atoms import LabelKeys
    from muse_ff.devices import check_device
    from muse_ff.io.serialization import load_model

    check_device(args.device)  # a GPU that is not there: one sentence, before any work
    energy = None if args.energy_key.lower() == _SKIP else args.energy_key
    forces = None if args.forces_key.lower() == _SKIP else args.forces_key
    evaluate = energy is not None or forces is not None or args.stress_key is not None
    if not evaluate and args.output is None:
        raise ValueError("--energy-key none and --forces-key none leave nothing to evaluate; add --output FILE "
                         "to write the model's predictions")
    if not evaluate and args.plots:
        raise ValueError("--plots needs labels to plot against, but --energy-key none and --forces-key none "
                         "evaluate none")
    if args.output is not None:
        check_output(args.output, args.overwrite, [args.data, args.model])  # before any work
    model = evaluation_model(load_model(args.model), args.device, args.dtype, copy_model=False)
    read = _read(args.data, args.index)
    frames = _with_calculator_labels(read)
    if evaluate:
        for note in check_asked_labels(frames, args.data, energy, forces, args.stress_key):
            print(f"muse eval: warning: {note}", file=sys.stderr)
    # a skipped quantity gets a key no frame can carry: its reference is then missing everywhere
    keys = LabelKeys(energy=energy or "", forces=forces or "",
                     stress=args.stress_key or ("REF_stress" if evaluate else ""))
    preds = evaluate_frames(model, frames, keys, batch_size=args.batch_size,
                            predict_stress=args.output is not None)
    metrics = preds.metrics()
    if evaluate:
        metrics["config_types"] = preds.metrics_by_config_type()
    if args.output is not None:
        write_predictions(args.output, read, preds, prefix=args.output_prefix)
        metrics["output"] = str(args.output)
    if args.plots:
        from muse_ff.analysis.plots import parity_plots

        metrics["plots"] = [str(p) for p in parity_plots(preds, args.plots)]
    if args.json:
        print(to_json(metrics, indent=2))
        return 0
    from rich.console import Console
    from rich.markup import escape

    from muse_ff.training.report import metrics_table

    console = Console()
    title = f"{args.data}: {metrics['frames']} frames, {metrics['atoms']} atoms"
    if evaluate:
        console.print(metrics_table(metrics, title))
        console.print(config_type_table(metrics["config_types"], metrics, f"{args.data}: errors per config type"))
    if args.output is not None:
        written = ["energy", "forces"] + (["stress"] if any(all(a.pbc) for a in read) else [])
        labels = ", ".join(args.output_prefix + w for w in written)
        console.print(f"predictions of {metrics['frames']} frames ({labels}): {escape(str(args.output))}",
                      soft_wrap=True)
    for path in metrics.get("plots", []):
        console.print(f"plot: {escape(path)}", soft_wrap=True)
    return 0
