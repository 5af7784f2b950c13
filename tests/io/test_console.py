"""Benchmark tables print whole: every cell intact in a narrow terminal (wider print, never an ellipsis)."""

from __future__ import annotations

from rich.console import Console

from muse_ff.bench.common import rich_table
from muse_ff.io.console import print_whole


def test_a_wide_benchmark_table_keeps_every_cell_whole_in_80_columns():
    columns = ["model", "folded frac.", "JSD RMSD", "JSD Rg", "JSD e2e", "stable replicas (blow-up at, ps)", "ns/day"]
    rows = [["MuSE-intra(PaiNN)+phys", "1.00", "0.88 ± 0.06", "0.21 ± 0.09", "0.68 ± 0.07", "0/2 (0.20, 0.70)", 2.65],
            ["teacher (noise floor)", "0.72", "0.08 ± 0.07", "0.04 ± 0.03", "0.05 ± 0.04", "2/2", 6.43]]
    console = Console(width=80, record=True)
    print_whole(console, rich_table("chignolin", columns, rows))
    text = console.export_text()
    assert "…" not in text
    for row in rows:
        assert all(str(cell) in text for cell in row)
