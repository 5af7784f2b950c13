"""``muse demo``: train MuSE(PaiNN), plain PaiNN, PaiNN+LES and PaiNN+phys on the shipped dataset; compare on
held-out frames.

All models go through the same :func:`muse_ff.training.train` path with the same data, seed, epochs and
backbone; MuSE(PaiNN) adds one coarse level (``levels: [{cutoff: ...}]``), PaiNN+LES the latent-Ewald
long-range baseline (``long_range: {}``, Cheng 2025) instead, and PaiNN+phys the physical long-range terms
(``physical: {}``, ``charges: true``: charges conserved per molecule, Coulomb and C6 dispersion with no
cutoff), trained also on the frames' interaction energies and dipole moments. The comparison reports
energy and force errors on the test frames and, where frames carry ``separation`` (Å) and
``interaction_energy`` (eV) with ``n_first`` atoms in the first molecule, the error of the interaction
energy ``E(AB) - E(A) - E(B)`` inside and beyond the 5 Å backbone cutoff: that is where a plain 5 Å model
is blind.

The demo can be re-run into the same folder: each model's earlier outputs are moved to
``OUTPUT_DIR/<model>/previous_runs/N/`` (``train(..., force=True)``), never mixed with the new run's.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np
from ase import Atoms
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from muse_ff.analysis.metrics import to_json
from muse_ff.contestants import DEMO_BACKBONE, TRAINING, contestants, slug, with_training
from muse_ff.io.console import print_whole
from muse_ff.io.serialization import atomic_write, load_model
from muse_ff.training.data import read_frames
from muse_ff.training.run import train

BACKBONE = DEMO_BACKBONE
#: the contestants (the registry's ``demo`` suite, :mod:`muse_ff.contestants`): the same backbone, plain,
#: with one coarse level, with the latent-Ewald baseline, or with the physical long-range terms
DEMO_MODELS: dict[str, dict] = contestants("demo", BACKBONE)
#: per-model additions to the training settings (the registry's ``demo`` training overrides): the physical
#: model also fits interaction energies and dipoles
DEMO_EXTRA: dict[str, dict] = TRAINING["demo"]
DEMO_TRAINING = {"epochs": 150, "batch_size": 16, "lr": 3e-3, "schedule": "cosine", "min_lr": 1e-5,
                 "loss": {"energy": 100.0, "forces": 1.0}, "ema_decay": 0.98, "patience": None,
                 "checkpoint_every": 25, "seed": 0}


def demo_data() -> Path:
    """The shipped demo dataset (``muse_ff/resources/demo/*.extxyz``)."""
    folder = resources.files("muse_ff") / "resources" / "demo"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".extxyz")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no demo dataset (*.extxyz) in {folder}")
    return Path(str(files[0]))


def demo_config(model: dict, data: Path, output_dir: Path, epochs: int | None = None,
                extra: dict | None = None) -> dict:
    """The demo's training file for ``model``; ``extra`` adds ``data`` keys and ``loss`` weights."""
    training = dict(DEMO_TRAINING, output_dir=str(output_dir))
    if epochs is not None:
        training["epochs"] = epochs
    return with_training({"model": model, "data": {"train": str(data), "split_key": "split"},
                          "training": training}, extra)


def interaction_errors(model, frames: list[Atoms]) -> dict[str, np.ndarray] | None:
    """Model and reference interaction energies (eV) of dimer frames, with their separations (Å); the model's
    from :func:`muse_ff.analysis.quantities.interaction_energies` (monomers rigid, each evaluated by the model)."""
    if not frames or not all(k in frames[0].info for k in ("n_first", "interaction_energy", "separation")):
        return None
    from muse_ff.analysis.quantities import interaction_energies

    return {"separation": np.array([a.info["separation"] for a in frames]),
            "ref": np.array([a.info["interaction_energy"] for a in frames]),
            "pred": interaction_energies(model, frames)}


#: separation bins (Å) for interaction-energy errors: inside, around and beyond the 5 Å backbone cutoff
BINS = ((0.0, 5.0), (5.0, 10.0), (10.0, np.inf))


def _bin_label(lo: float, hi: float) -> str:
    return f"<{hi:g} Å" if lo == 0 else (f">{lo:g} Å" if np.isinf(hi) else f"{lo:g}-{hi:g} Å")


def evaluate_demo_model(path: Path, test: list[Atoms]) -> dict:
    """Test errors of one trained model: energies, forces and interaction energies by separation."""
    from muse_ff.analysis.metrics import evaluate_frames

    model = load_model(path)
    preds = evaluate_frames(model, test)
    result = {"metrics": preds.metrics(), "params": sum(p.numel() for p in model.parameters()),
              "energy_per_atom": [a.tolist() for a in preds.energy_per_atom],
              "energy_minus_e0_per_atom": [a.tolist() for a in preds.energy_minus_e0_per_atom]}
    ie = interaction_errors(model, test)
    if ie is not None:
        err = np.abs(ie["pred"] - ie["ref"]) * 1000.0
        result["interaction_mae_meV"] = {_bin_label(lo, hi): float(err[(ie["separation"] >= lo)
                                                                         & (ie["separation"] < hi)].mean())
                                         for lo, hi in BINS if ((ie["separation"] >= lo)
                                                                & (ie["separation"] < hi)).any()}
        result["interaction"] = {k: v.tolist() for k, v in ie.items()}
    return result


def comparison_table(results: dict[str, dict]) -> Table:
    """One row per model: size, time, test energy/force MAE and interaction-energy MAE per separation bin."""
    table = Table(title="MAE on held-out test frames: E (meV/atom), F (meV/Å), Eint = interaction energy (meV) "
                        "by separation", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    bins = list(next(iter(results.values())).get("interaction_mae_meV", {}))
    rows = [[name, str(r["params"]), f"{r['train_time_s']:.0f}", f"{r['metrics']['energy_mae']:.2f}",
             f"{r['metrics']['forces_mae']:.1f}", *[f"{r['interaction_mae_meV'][b]:.1f}" for b in bins]]
            for name, r in results.items()]
    for k, col in enumerate(["model", "params", "train\ns", "E", "F"] + [f"Eint\n{b}" for b in bins]):
        # every number and header word whole: the table fits 80 columns
        table.add_column(col, justify="left" if k == 0 else "right",
                         min_width=max(max(len(row[k]) for row in rows), *map(len, col.split("\n"))))
    for row in rows:
        table.add_row(*row)
    return table


def run_demo(output_dir: str | Path = "demo_out", epochs: int | None = None, data: Path | None = None,
             progress: bool = True, console: Console | None = None, threads: int = 1) -> dict:
    """Train the demo models, evaluate them on the test split, print the table and write the plot.

    ``threads``: torch intra-op threads during the demo. The demo's graphs are tiny (~10 atoms x 16 frames),
    where one thread is fastest; several threads on a busy 2-core machine were measured 50x slower.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_demo(Path(output_dir), epochs, data, progress, console or Console())
    finally:
        torch.set_num_threads(previous)


def _run_demo(out: Path, epochs: int | None, data: Path | None, progress: bool, console: Console) -> dict:
    data = demo_data() if data is None else Path(data)
    test = [a for a in read_frames([str(data)]) if a.info.get("split") == "test"]
    console.print(f"[bold]MuSE demo[/bold]: {escape(data.name)}, {len(test)} test frames -> {escape(str(out))}",
                  soft_wrap=True)
    results = {}
    start = time.perf_counter()
    for name, model in DEMO_MODELS.items():
        console.rule(name)
        folder = out / slug(name)
        result = train(demo_config(model, data, folder, epochs, DEMO_EXTRA.get(name)), force=True,
                       progress=progress)
        results[name] = evaluate_demo_model(result.model_path, test)
        results[name]["train_time_s"] = result.summary["train_time_s"]
        results[name]["model_path"] = str(result.model_path)
    console.rule("comparison")
    print_whole(console, comparison_table(results))
    from muse_ff.analysis.plots import demo_figure

    figure = demo_figure(results, out / "demo.png")
    total = time.perf_counter() - start
    summary = {"data": str(data), "total_time_s": round(total, 1), "figure": str(figure), "models": results}
    text = to_json(summary, indent=1)  # strict JSON: NaN or inf become null
    atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(text))
    console.print(f"plot: {escape(str(figure))}   results: {escape(str(out / 'results.json'))}   "
                  f"total {total:.0f} s", soft_wrap=True)
    return summary
