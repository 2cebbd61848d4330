"""An alert log drawn with Textual's line API: rows kept as strings, lines made on demand.

A `DataTable` row is some twenty objects the cyclic GC tracks (the row, its key, a
`Text` per cell with its spans, render caches), and an alert log holds hundreds of rows
for the whole session: on the watchlist they were most of what each full collection of
the UI's heap had to walk, and that heap grew with every alert until the log was full.
Here a row is one flat tuple of strings (its key, then each cell's text and style),
which the GC stops tracking at its first pass over it (a tuple nested in a tuple would
take a pass per level), and only the lines on screen are turned into strips.

Columns have a fixed width, or `None` for as wide as their widest text so far; cells
are padded by `padding` spaces each side, as `DataTable`'s `cell_padding`. The newest
row is at the bottom and the log follows it. Texts are drawn as they are, never parsed
as markup; the callers make them printable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from quanttui.app.widgets.watchtable import Cell, fit

DELIVERED_MARK = " ✓ sent"
"""After an alert's text in a log once push notifications delivered it everywhere."""


class LogLines(ScrollView, can_focus=False):
    DEFAULT_CSS = """
    LogLines { height: 1fr; overflow-x: hidden; background: $surface; color: $foreground; }
    """

    def __init__(
        self,
        widths: Sequence[int | None],
        *,
        limit: int,
        padding: int = 0,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.widths = list(widths)
        self.limit = limit
        self.padding = padding
        self.rows: deque[tuple[str, ...]] = deque(maxlen=limit)
        """(key, text, style, text, style, ...) per row, oldest first."""
        self._auto = [0] * len(self.widths)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, cells: Sequence[Cell], key: str = "") -> None:
        """A row at the bottom (the oldest is dropped beyond `limit`), shown at once."""
        self.rows.append(self._row(key, cells))
        self.virtual_size = Size(self._width(), len(self.rows))
        self.scroll_end(animate=False)
        self.refresh()

    def replace(self, key: str, cells: Sequence[Cell]) -> bool:
        """The newest row with `key` gets `cells`; False when there is none."""
        for i in range(len(self.rows) - 1, -1, -1):
            if self.rows[i][0] == key:
                self.rows[i] = self._row(key, cells)
                self.refresh()
                return True
        return False

    def mark(self, key: str, suffix: str) -> bool:
        """The newest row with `key` gets `suffix` after its last cell's text (once);
        False when there is none."""
        for i in range(len(self.rows) - 1, -1, -1):
            row = self.rows[i]
            if row[0] == key:
                if not row[-2].endswith(suffix):
                    self.rows[i] = (*row[:-2], row[-2] + suffix, row[-1])
                    self.refresh()
                return True
        return False

    def clear(self) -> None:
        self.rows.clear()
        self.virtual_size = Size(self._width(), 0)
        self.refresh()

    def keys(self) -> list[str]:
        return [row[0] for row in self.rows]

    def texts(self) -> list[tuple[str, ...]]:
        """Every row's texts, oldest first."""
        return [row[1::2] for row in self.rows]

    def _row(self, key: str, cells: Sequence[Cell]) -> tuple[str, ...]:
        if len(cells) != len(self.widths):
            raise ValueError(f"{len(cells)} cells for {len(self.widths)} columns")
        for i, (text, _style) in enumerate(cells):
            if self.widths[i] is None and len(text) > self._auto[i]:
                self._auto[i] = len(text)
        return (key, *(part for cell in cells for part in cell))

    def _width(self) -> int:
        return sum(self._column(i) + 2 * self.padding for i in range(len(self.widths)))

    def _column(self, i: int) -> int:
        w = self.widths[i]
        return self._auto[i] if w is None else w

    def render_line(self, y: int) -> Strip:
        base = self.rich_style
        width = self.size.width
        index = y + self.scroll_offset.y
        if not 0 <= index < len(self.rows):
            return Strip.blank(width, base)
        pad = " " * self.padding
        row = self.rows[index]
        segs = [
            Segment(
                pad + fit(text, self._column(i)) + pad,
                base + Style.parse(style) if style else base,
            )
            for i, (text, style) in enumerate(zip(row[1::2], row[2::2], strict=True))
        ]
        return Strip(segs).crop_extend(0, width, base)
