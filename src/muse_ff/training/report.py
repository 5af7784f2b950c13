"""Human-readable summaries of training and evaluation results (rich tables)."""

from __future__ import annotations

from rich.console import Console
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


def print_train_summary(summary: dict, output_dir, console: Console | None = None) -> None:
    """Final summary of :func:`muse_ff.training.train`: epochs, time, validation and test errors, files."""
    console = console or Console()
    ref = summary["reference"]
    console.print(f"[bold]trained[/bold] {summary['epochs']} epochs in {summary['train_time_s']:.1f} s on "
                  f"{summary['world_size']} process(es); frames {summary['frames']}; best epoch "
                  f"{summary['best_epoch']}")
    console.print(f"reference energies: rank {ref['rank']} for {len(ref['species'])} species"
                  + (" (rank-deficient: minimum-norm split)" if ref["rank_deficient"] else "")
                  + f", scale {ref['scale']:.4g}, shift {ref['shift']:.4g} eV/atom")
    last = summary.get("last_metrics", {})
    val = {k.removeprefix("val_"): v for k, v in last.items() if k.startswith("val_") and k != "val_loss"}
    if val:
        console.print(metrics_table(val, "validation (last epoch)"))
    if "test" in summary:
        console.print(metrics_table(summary["test"], "test (best model)"))
    console.print(f"model: {output_dir}/model.pt   logs: {output_dir}/logs/metrics.csv")
