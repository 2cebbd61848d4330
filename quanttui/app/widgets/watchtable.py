"""A table of live rows drawn with Textual's line API, for the watchlist.

`DataTable` re-renders every cell of the table (and refreshes all of it) on any
`update_cell`: its caches are keyed on one update counter. With twenty pairs changing
every second that was most of the watchlist's CPU, taken on the UI loop. Here a row is
turned into a `Strip` only when one of its cells changed, and only that row's line is
refreshed, so the terminal gets the changed lines and nothing else. The header stays on
the first line while the rows scroll under it.

A line is made exactly as wide as the widget, with one segment per run of cells of one
style, from styles made once per theme (`rich_style` walks every ancestor's CSS, and it
was a third of a line's cost): the compositor's later passes over a line (filters,
cuts) cost per segment (`benchmarks/bench_redraw.py`).

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
        self._base: Style | None = None
        self._styles: dict[tuple[str, bool], Style] = {}

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
    def notify_style_update(self) -> None:
        """CSS, a pseudo-class or the theme changed: lines drawn in the old style go."""
        super().notify_style_update()
        self._base = None
        self._styles.clear()
        self._strips.clear()
        self._header = None

    def _style(self, style: str, on: bool) -> Style:
        """The widget's style plus a cell's (and the cursor's when `on`), made once: the
        widget's own (`rich_style`) walks every ancestor's CSS."""
        st = self._styles.get((style, on))
        if st is None:
            if self._base is None:
                self._base = self.rich_style
            st = self._base + Style.parse(style) if style else self._base
            if on:
                st = st + Style(reverse=True)
            self._styles[(style, on)] = st
        return st

    def _line(self, cells: Sequence[Cell], on: bool) -> Strip:
        """One line exactly as wide as the widget: neighbouring cells of one style share
        a segment (fewer segments for every later pass of the compositor), the rest is
        blank in the row's style."""
        width = self.size.width
        segs: list[Segment] = []
        parts: list[str] = []
        style: str | None = None
        for col, (text, st) in zip(self.columns, cells, strict=True):
            if st != style and parts:
                segs.append(Segment("".join(parts), self._style(style or "", on)))
                parts = []
            style = st
            parts.append(" " + fit(text, col.width) + " ")
        if parts:
            segs.append(Segment("".join(parts), self._style(style or "", on)))
        used = sum(len(s.text) for s in segs)
        if used < width:
            segs.append(Segment(" " * (width - used), self._style("", on)))
        elif used > width:
            cut, left = [], width
            for seg in segs:
                if left > 0:
                    cut.append(Segment(seg.text[:left], seg.style))
                left -= len(seg.text)
            segs = cut
        return Strip(segs, width)

    def render_line(self, y: int) -> Strip:
        if y == 0:
            if self._header is None or self._header.cell_length != self.size.width:
                self._header = self._line([(c.label, "bold") for c in self.columns], False)
            return self._header
        index = y - 1 + self.scroll_offset.y
        if not 0 <= index < len(self.order):
            return Strip.blank(self.size.width, self._style("", False))
        key = self.order[index]
        on = index == self.cursor and self.has_focus
        cached = self._strips.get((key, on))
        if cached is not None and cached.cell_length == self.size.width:
            return cached
        row = self.cells.get(key, {})
        cells = [row.get(c.key, ("", "")) for c in self.columns]
        strip = self._line(cells, on)
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
