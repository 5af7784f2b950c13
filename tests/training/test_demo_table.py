"""The demo's comparison table: every number whole in an 80-column terminal."""

from __future__ import annotations

from rich.console import Console

from muse_ff.training.demo import comparison_table


def test_demo_table_shows_every_number_whole_in_80_columns():
    bins = {"< 5 Å": 57.1, "5-10 Å": 3.8, "> 10 Å": 0.8}
    result = {"metrics": {"energy_mae": 0.57, "forces_mae": 20.5}, "params": 152321, "train_time_s": 1234.0,
              "interaction_mae_meV": bins}
    console = Console(width=80, record=True)
    console.print(comparison_table({"MuSE-intra(PaiNN)+phys": result, "PaiNN": result}))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("MuSE-intra", "PaiNN"))]
    assert rows == [[name, "152321", "1234", "0.57", "20.5", "57.1", "3.8", "0.8"]
                    for name in ("MuSE-intra(PaiNN)+phys", "PaiNN")]
    assert "params" in text and "…" not in text
