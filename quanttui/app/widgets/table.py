"""A `DataTable` that keeps no stale renders and never takes focus."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import RowKey


class Table(DataTable, can_focus=False):
    """A table that never takes focus: the screen's keys (arrows, Home, PgUp) move the
    chart cursor, not a table's.

    It also keeps no stale renders. `DataTable` keys its render caches (10,000 cells,
    1,000 rows, lines and row renderables) by an update count that every `update_cell`
    and `add_row` bumps, so older entries are never read again, yet they stay until
    the caches are full: the metrics table, updated every bar, grew the app's RSS for
    the first ten minutes (`benchmarks/bench_memory.py`). They are dropped at once.
    (The alert logs are `LogLines`.)"""

    def update_cell(self, *args: Any, **kwargs: Any) -> None:
        super().update_cell(*args, **kwargs)
        self._clear_caches()

    def add_row(self, *args: Any, **kwargs: Any) -> RowKey:
        key = super().add_row(*args, **kwargs)
        self._clear_caches()
        return key
