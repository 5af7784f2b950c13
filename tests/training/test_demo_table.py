"""The demo's comparison table: every number whole, in an 80-column terminal when it fits, wider when not."""

from __future__ import annotations

import pytest
from rich.console import Console

from muse_ff.io.console import print_whole
from muse_ff.training.demo import comparison_table


def _print(results: dict, width: int = 80) -> str:
    console = Console(width=width, record=True)
    print_whole(console, comparison_table(results))  # as run_demo prints it
    return console.export_text()


@pytest.mark.parametrize("big", [False, True])
def test_demo_table_shows_every_number_whole(big):
    bins = {"< 5 Å": 1234.5 if big else 57.1, "5-10 Å": 3.8, "> 10 Å": 123.4 if big else 0.8}
    result = {"metrics": {"energy_mae": 12.34 if big else 0.57, "forces_mae": 120.5 if big else 20.5},
              "params": 1523210 if big else 152321, "train_time_s": 12345.0 if big else 1234.0,
              "interaction_mae_meV": bins}
    text = _print({"MuSE-intra(PaiNN)+phys": result, "PaiNN": result})
    if not big:
        assert all(len(line) <= 80 for line in text.splitlines())
    cells = [str(result["params"]), f"{result['train_time_s']:.0f}", f"{result['metrics']['energy_mae']:.2f}",
             f"{result['metrics']['forces_mae']:.1f}", *[f"{v:.1f}" for v in bins.values()]]
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("MuSE-intra", "PaiNN"))]
    assert rows == [[name, *cells] for name in ("MuSE-intra(PaiNN)+phys", "PaiNN")]
    assert "params" in text and "…" not in text
