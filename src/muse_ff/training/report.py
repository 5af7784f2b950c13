"""Human-readable summaries of training and evaluation results (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

_ROWS = (("energy", "energy (meV/atom)"), ("forces", "forces (meV/Å)"), ("stress", "stress (meV/Å³)"))


def metrics_table(metrics: dict, title: str = "errors") -> Table:
    """MAE/RMSE table of :meth:`muse_ff.analysis.Predictions.metrics` (with per-element force rows)."""
    table = Table(title=title)
    for col in ("quantity", "MAE", "RMSE", "count"):
        table.add_column(col, justify="left" if col == "quantity" else "right")
    for key, label in _ROWS:
        if f"{key}_mae" in metrics:
            table.add_row(label, f"{metrics[f'{key}_mae']:.3f}", f"{metrics[f'{key}_rmse']:.3f}",
                          str(metrics.get(f"{key}_count", "")))
    for element, errs in metrics.get("forces_per_element", {}).items():
        table.add_row(f"  forces {element} (meV/Å)", f"{errs['forces_mae']:.3f}", f"{errs['forces_rmse']:.3f}",
                      str(errs["forces_count"]))
    return table


def reference_line(ref: dict) -> str:
    """One line on the reference energies of ``summary.json``'s ``reference``: where each element's E0 comes
    from (``e0_source``: isolated atoms, ``data.E0s``, the finetune_from model, the fit), their values, shift
    and scale. Summaries written before ``e0_source`` existed give the fit's rank only."""
    from muse_ff.training.reference import SOURCES

    by_element, sources = ref.get("e0_by_element") or {}, ref.get("e0_source") or {}
    fit = f"rank {ref['rank']} for {len(ref['species'])} species" if "rank" in ref else ""
    if ref.get("rank_deficient"):
        fit += " (rank-deficient: minimum-norm split)"
    groups = []
    for src, words in SOURCES.items():
        elements = [el for el, s in sources.items() if s == src]
        if not elements:
            continue
        shown = ", ".join(f"{el} {by_element[el]:.4f}" if el in by_element else el for el in elements)
        groups.append(f"{words}{f', {fit}' if src == 'fit' and fit else ''}: {shown}")
    if not groups:  # an older summary: no per-element sources
        groups.append(f"source {ref.get('source', 'fit')}" + (f", {fit}" if fit else ""))
    kept = lambda what: " (kept)" if ref.get(what) == "finetune_from" else ""
    return (f"reference energies E0 (eV) {'; '.join(groups)}; shift {ref['shift']:.4f} eV/atom"
            f"{kept('shift_source')}, scale {ref['scale']:.4g}{kept('scale_source')}")


def print_train_summary(summary: dict, output_dir, console: Console | None = None) -> None:
    """Final summary of :func:`muse_ff.training.train`: epochs, time, where the reference energies come from,
    validation (last epoch) and test errors with counts, files."""
    console = console or Console()
    say = lambda text: console.print(text, soft_wrap=True, markup=False)  # a log file keeps whole lines
    frames = ", ".join(f"{n} {name}" for name, n in summary["frames"].items())
    best = summary.get("best_epoch")
    console.print("[bold]trained[/bold] " + escape(
        f"{summary['epochs']} epochs in {summary['train_time_s']:.1f} s on {summary['world_size']} "
        f"process{'es' if summary['world_size'] > 1 else ''}; frames: {frames}"
        + (f"; best epoch {best}" if best is not None else "")), soft_wrap=True)
    stopped = summary.get("stopped_early")
    if stopped:
        say(f"stopped early after epoch {stopped['epoch']}: {stopped['monitor']} did not improve for "
            f"{stopped['patience']} epoch{'s' if stopped['patience'] != 1 else ''}")
    say(reference_line(summary["reference"]))
    val = summary.get("valid")
    if val is None:  # summaries written before "valid" existed: no counts
        last = summary.get("last_metrics", {})
        val = {k.removeprefix("val_"): v for k, v in last.items() if k.startswith("val_") and k != "val_loss"}
    if val:
        console.print(metrics_table(val, "validation (last epoch)"))
    if "test" in summary:
        console.print(metrics_table(summary["test"], "test (best model)"))
    say(f"model: {output_dir}/model.pt   logs: {output_dir}/logs/metrics.csv")
