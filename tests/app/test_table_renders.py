"""The monitor's tables keep no stale renders (issue "An always-on monitor holds flat
memory"): a metrics table whose cells change every bar holds one render's worth of cached
cells and lines, not the 10,000 cells and 1,000 lines `DataTable` keeps by default."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region

from quanttui.app.screens.monitor import COLUMNS, Table

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
