"""A correlation heatmap of a universe, drawn line by line so 500 symbols scroll smoothly.

Each cell is two columns wide. Seven bins of the correlation get seven of the 16 ANSI
colours (exact in a 16-colour terminal); under NO_COLOR each bin gets a character instead
(``- · : + * # @``), so the values stay readable in monochrome. Row labels and the column
header stay put while the matrix scrolls; the top-left block (the most liquid symbols,
in universe order) is what shows first.
"""

from __future__ import annotations

import math

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

# (upper bound, ANSI background, character): a value falls in the first bin whose bound
# exceeds it
BINS: tuple[tuple[float, str, str], ...] = (
    (-0.2, "magenta", "-"),
    (0.2, "bright_black", "·"),
    (0.4, "blue", ":"),
    (0.6, "cyan", "+"),
    (0.8, "green", "*"),
    (0.9, "yellow", "#"),
    (math.inf, "red", "@"),
)
LABELS = ("<-.2", "<.2", "<.4", "<.6", "<.8", "<.9", "≥.9")


def short_name(symbol: str) -> str:
    """``BTCUSDT`` -> ``BTC``; other quotes are kept."""
    return symbol[:-4] if symbol.endswith("USDT") and len(symbol) > 4 else symbol


def _column_label(j: int) -> str:
    """Two columns over cell `j`: the number for the first and every fifth, else a dot
    (three-digit numbers show their last two digits)."""
    k = j + 1
    return f"{k % 100:>2}" if k == 1 or k % 5 == 0 else " ·"


def bin_index(values: np.ndarray) -> np.ndarray:
    """Bin of each value (NaN -> -1)."""
    bounds = np.array([b for b, _, _ in BINS[:-1]])
    idx = np.searchsorted(bounds, values, side="right")
    return np.where(np.isfinite(values), idx, -1)


def legend(no_color: bool) -> Text:
    """One line mapping colours (or characters) to correlation ranges."""
    t = Text("corr of returns ")
    for (_, colour, ch), label in zip(BINS, LABELS, strict=True):
        if no_color:
            t.append(f"{ch}{ch}", style="bold")
        else:
            t.append("  ", style=Style(bgcolor=colour))
        t.append(f"{label} ")
    return t


class CorrelationHeatmap(ScrollView, can_focus=True):
    """`set_data(symbols, corr)` draws the matrix; arrows, PgUp/PgDn and the wheel scroll."""

    DEFAULT_CSS = """
    CorrelationHeatmap { scrollbar-size: 1 1; }
    CorrelationHeatmap:focus { background-tint: $foreground 5%; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.symbols: tuple[str, ...] = ()
        self._bins = np.empty((0, 0), dtype=np.int64)
        self._labels: list[str] = []
        self._label_w = 0
        self._styles: list[Style] = []
        self._chars: list[str] = []
        self.marked: tuple[int, int] | None = None
        """(row, column) of the cell drawn as ``[]``: the pair under the table cursor."""

    def set_data(self, symbols: tuple[str, ...], corr: np.ndarray) -> None:
        self.symbols = tuple(symbols)
        n = len(symbols)
        self._bins = bin_index(np.asarray(corr, dtype=float))
        np.fill_diagonal(self._bins, -2)
        width = max((len(short_name(s)) for s in symbols), default=1)
        self._label_w = min(width, 8) + len(str(n)) + 2
        self._labels = [
            f"{k + 1:>{len(str(n))}} {short_name(s)[:8]:<{min(width, 8)}} "
            for k, s in enumerate(symbols)
        ]
        no_color = self.app.no_color
        self._styles = [Style() if no_color else Style(bgcolor=c) for _, c, _ in BINS]
        self._chars = [ch * 2 if no_color else "  " for _, _, ch in BINS]
        self.virtual_size = Size(self._label_w + 2 * n, n + 1)
        self.refresh()

    def mark(self, row: int, col: int, *, scroll: bool = True) -> None:
        """Draw cell (`row`, `col`) as ``[]``, and scroll it into view if asked."""
        self.marked = (row, col)
        if not scroll:
            self.refresh()
            return
        region = self.scrollable_content_region
        w = max(2, region.width - self._label_w)
        h = max(1, region.height - 1)
        sx, sy = (int(v) for v in self.scroll_offset)
        if not sx <= 2 * col <= sx + w - 2:
            sx = max(0, 2 * col - w // 2)
        if not sy <= row < sy + h:
            sy = max(0, row - h // 2)
        self.scroll_to(sx, sy, animate=False)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        n = len(self.symbols)
        base = self.rich_style
        if n == 0:
            return Strip.blank(width, base)
        sx, sy = (int(v) for v in self.scroll_offset)
        lw = self._label_w
        if y == 0:
            head = "".join(_column_label(j) for j in range(n))
            cells = Strip([Segment(head, Style(dim=True))], 2 * n)
            label = Segment(f"{'':<{lw}}")
        else:
            row = sy + y - 1
            if row >= n:
                return Strip.blank(width, base)
            label = Segment(self._labels[row], Style(bold=True))
            segs = []
            for b in self._bins[row].tolist():
                if b == -2:
                    segs.append(Segment("╲╲", Style(dim=True)))
                elif b < 0:
                    segs.append(Segment("  "))
                else:
                    segs.append(Segment(self._chars[b], self._styles[b]))
            if self.marked is not None and self.marked[0] == row:
                b = int(self._bins[row, self.marked[1]])
                style = self._styles[b] if b >= 0 else Style()
                segs[self.marked[1]] = Segment("[]", style + Style(bold=True))
            cells = Strip(segs, 2 * n)
        cells = cells.crop(sx, sx + max(0, width - lw))
        line = Strip([label, *cells], lw + cells.cell_length).adjust_cell_length(width)
        return line.apply_style(base)
