"""Printing tables whole: a terminal narrower than a table's numbers gets a wider print, never cut cells."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_whole(console: Console, table: Table) -> None:
    """Print ``table`` at the console's width, or wider (not cropped) when its columns' ``min_width`` (set to
    their longest cell) would not fit: a number is never cut to an ellipsis."""
    natural = console.measure(table, options=console.options.update_width(10_000)).minimum
    console.print(table, width=max(console.width, natural), crop=False)
