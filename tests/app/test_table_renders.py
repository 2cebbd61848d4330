"""The monitor's tables keep no stale renders (issue "An always-on monitor holds flat
memory"): a metrics table whose cells change every bar holds one render's worth of cached
cells and lines, not the 10,000 cells and 1,000 lines `DataTable` keeps by default."""

from __future__ import annotations

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widgets import DataTable

from quanttui.app.screens.monitor import COLUMNS
from quanttui.app.widgets.table import Table

ROWS = 15
UPDATES = 400


class Host(App):
    def compose(self) -> ComposeResult:
        yield Table(show_header=False, cursor_type="none", cell_padding=0)


async def test_a_table_updated_every_bar_keeps_only_its_current_render() -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one(Table)
        for key, width in COLUMNS:
            table.add_column(key, key=key, width=width)
        for i in range(ROWS):
            table.add_row(*(Text(f"m{i}") for _ in COLUMNS), key=f"r{i}")
        await pilot.pause()
        region = Region(0, 0, sum(w for _, w in COLUMNS), ROWS)
        for k in range(UPDATES):
            table.update_cell(f"r{k % ROWS}", "v1", Text(f"{k * 0.37:.4f}"))
            lines = table.render_lines(region)
        assert f"{(UPDATES - 1) * 0.37:.4f}" in "".join(seg.text for line in lines for seg in line)
        assert len(table._cell_render_cache) <= ROWS * len(COLUMNS)
        assert len(table._line_cache) <= ROWS
        assert len(table._row_render_cache) <= ROWS
        assert len(table._row_renderable_cache) <= ROWS


@pytest.mark.parametrize("kind", [DataTable, Table], ids=["DataTable", "Table"])
async def test_an_alert_log_that_drops_its_oldest_row_keeps_only_its_current_render(
    kind: type[DataTable],
) -> None:
    """The watchlist's log (a `Table`): a row added and the oldest removed per alert.
    A plain `DataTable`, which the log was, kept 2,400 cells per 3,000 alerts and
    counting (Textual keeps up to 10,000): the watchlist's RSS and its full collections
    grew over a 10-minute run."""

    class Log(App):
        def compose(self) -> ComposeResult:
            yield kind(show_header=False, cursor_type="none")

    app = Log()
    keep, alerts = 20, 3_000
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one(kind)
        table.add_column("time", key="time", width=9)
        table.add_column("alert", key="alert", width=30)
        for n in range(alerts):
            table.add_row(Text(f"{n:>8}"), Text(f"|z| > 2 ({n * 0.01:+.2f})"), key=f"a{n}")
            while table.row_count > keep:
                table.remove_row(next(iter(table.rows)))
            if n % 100 == 0:
                await pilot.pause()
        await pilot.pause()
        assert table.row_count == keep
        if kind is Table:
            assert len(table._cell_render_cache) <= 2 * keep
        else:
            assert len(table._cell_render_cache) > 50 * keep
