"""A table of live rows drawn with Textual's line API, for the watchlist.

`DataTable` re-renders every cell of the table (and refreshes all of it) on any
`update_cell`: its caches are keyed on one update counter. With twenty pairs changing
every second that was most of the watchlist's CPU, taken on the UI loop. Here a row is
turned into a `Strip` only when one of its cells changed, and only that row's line is
refreshed, so the terminal gets the changed lines and nothing else. The header stays on
the first line while the rows scroll under it.

Cells are (text, style) pairs the screen has formatted; columns are (key, label, width)
with one space of padding each side, as `DataTable` draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = tuple[str, str]
"""(text, Rich style)."""


@dataclass(frozen=True, slots=True)
class TableColumn:
    key: str
    label: str
    width: int


def fit(text: str, width: int) -> str:
    """`text` padded or cut to `width` cells (one cell per character: the table shows
    formatted numbers, short names and block characters)."""
    return text[:width].ljust(width)


class WatchTable(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]
    DEFAULT_CSS = """
    WatchTable { height: 1fr; overflow-x: hidden; }
    """

    cursor: reactive[int] = reactive(0, init=False)
    """The highlighted row, an index into `order`."""

    class Selected(Message):
        """A row was clicked while highlighted (Enter is the screen's binding)."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class HeaderClicked(Message):
        def __init__(self, column: str) -> None:
            super().__init__()
            self.column = column

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns: list[TableColumn] = []
        self.order: list[str] = []
        self.cells: dict[str, dict[str, Cell]] = {}
        self._strips: dict[tuple[str, bool], Strip] = {}
        self._header: Strip | None = None

    # ----------------------------------------------------------------- content
    def set_columns(self, columns: Sequence[TableColumn]) -> None:
        self.columns = list(columns)
        self._strips.clear()
        self._header = None
        self._resize()
        self.refresh()

    def set_label(self, key: str, label: str) -> None:
        self.columns = [
            TableColumn(c.key, label, c.width) if c.key == key else c for c in self.columns
        ]
        self._header = None
        self.refresh_lines(0)

    def set_order(self, keys: Sequence[str]) -> None:
        """The rows, top first (rows not in `keys` are dropped). The cursor stays on
        its row's key when that row is still there."""
        keys = list(keys)
        if keys == self.order:
            return
        current = self.cursor_key
        self.order = keys
        for k in [k for k in self.cells if k not in keys]:
            del self.cells[k]
        self._strips = {k: s for k, s in self._strips.items() if k[0] in self.cells}
        self._resize()
        if current in keys:
            self.set_reactive(WatchTable.cursor, keys.index(current))
        else:
            self.set_reactive(WatchTable.cursor, max(0, min(self.cursor, len(keys) - 1)))
        self.refresh()

    def set_cells(self, key: str, cells: dict[str, Cell]) -> None:
        """A row's cells; its line is redrawn only when one of them changed."""
        old = self.cells.get(key)
        if old == cells:
            return
        self.cells[key] = dict(cells)
        self._strips.pop((key, False), None)
        self._strips.pop((key, True), None)
        if key in self.order:
            self.refresh_lines(1 + self.order.index(key) - self.scroll_offset.y)

    def cell(self, key: str, column: str) -> str:
        """The text shown in a cell."""
        return self.cells.get(key, {}).get(column, ("", ""))[0]

    @property
    def cursor_key(self) -> str | None:
        return self.order[self.cursor] if 0 <= self.cursor < len(self.order) else None

    def _resize(self) -> None:
        width = sum(c.width + 2 for c in self.columns)
        self.virtual_size = Size(width, len(self.order) + 1)

    # ----------------------------------------------------------------- drawing
    def _line(self, cells: Sequence[Cell], base: Style, extra: Style | None) -> Strip:
        segs = []
        for col, (text, style) in zip(self.columns, cells, strict=True):
            st = base + Style.parse(style) if style else base
            if extra is not None:
                st = st + extra
            segs.append(Segment(" " + fit(text, col.width) + " ", st))
        width = self.size.width
        strip = Strip(segs)
        return strip.crop_extend(0, width, base + extra if extra is not None else base)

    def render_line(self, y: int) -> Strip:
        base = self.rich_style
        if y == 0:
            if self._header is None or self._header.cell_length != self.size.width:
                header = [(c.label, "bold") for c in self.columns]
                self._header = self._line(header, base, None)
            return self._header
        index = y - 1 + self.scroll_offset.y
        if not 0 <= index < len(self.order):
            return Strip.blank(self.size.width, base)
        key = self.order[index]
        on = index == self.cursor and self.has_focus
        cached = self._strips.get((key, on))
        if cached is not None and cached.cell_length == self.size.width:
            return cached
        row = self.cells.get(key, {})
        cells = [row.get(c.key, ("", "")) for c in self.columns]
        strip = self._line(cells, base, Style(reverse=True) if on else None)
        self._strips[(key, on)] = strip
        return strip

    def watch_cursor(self, old: int, new: int) -> None:
        top = self.scroll_offset.y
        for i in (old, new):
            self.refresh_lines(1 + i - top)
        self._scroll_to_cursor()

    def on_focus(self) -> None:
        self.refresh_lines(1 + self.cursor - self.scroll_offset.y)

    def on_blur(self) -> None:
        self.refresh_lines(1 + self.cursor - self.scroll_offset.y)

    def _scroll_to_cursor(self) -> None:
        rows = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + rows:
            self.scroll_to(y=self.cursor - rows + 1, animate=False)

    # ----------------------------------------------------------------- input
    def move_cursor(self, row: int) -> None:
        if self.order:
            self.cursor = max(0, min(row, len(self.order) - 1))

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor + step)

    def action_page(self, step: int) -> None:
        self.move_cursor(self.cursor + step * max(1, self.size.height - 2))

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self.order) - 1)

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            x = event.x + self.scroll_offset.x
            for col in self.columns:
                if x < col.width + 2:
                    self.post_message(self.HeaderClicked(col.key))
                    return
                x -= col.width + 2
            return
        index = event.y - 1 + self.scroll_offset.y
        if 0 <= index < len(self.order):
            if index == self.cursor:
                self.post_message(self.Selected(self.order[index]))
            else:
                self.cursor = index
