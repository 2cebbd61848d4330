"""Three plotext line charts: normalised prices, spread with its mean, z with entry lines."""

from __future__ import annotations

import dataclasses
import math

from textual_plotext import PlotextPlot

from quanttui.model import Snapshot


def _decimate(n: int, limit: int) -> list[int] | None:
    """Indices of at most about `limit` evenly spaced points, the last one included, or
    None when all `n` fit. A braille chart shows two points per column, so drawing more
    than twice its width only costs time in plotext's layout."""
    if n <= limit:
        return None
    step = -(-n // limit)
    return list(range((n - 1) % step, n, step))


def _finite(xs: list[float], ys: tuple[float, ...]) -> tuple[list[float], list[float]]:
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y)]
    return [p[0] for p in pts], [p[1] for p in pts]


class Chart(PlotextPlot):
    DEFAULT_CSS = """
    Chart { height: 1fr; min-height: 5; }
    """

    def __init__(self, title: str, **kw) -> None:
        super().__init__(**kw)
        self.title = title
        self.shown_ms: int | None = None
        """Time of the last bar this chart has drawn."""

    def on_mount(self) -> None:
        super().on_mount()
        self._setup()
        self.plt.title(self.title)

    def _setup(self) -> None:
        p = self.plt
        p.clear_figure()
        p.title(self.title)
        p.xticks([])
        p.frame(False)

    def draw(self, snap: Snapshot, entry_z: float) -> None:
        s = snap.series
        if not s.ts_ms:
            return
        n = len(s.ts_ms)
        xs = list(range(-n + 1, 1))
        keep = _decimate(n, 2 * max(self.size.width, 10))
        if keep is not None:
            s = dataclasses.replace(
                s,
                **{
                    f.name: tuple(getattr(s, f.name)[i] for i in keep)
                    for f in dataclasses.fields(s)
                },
            )
            xs = [xs[i] for i in keep]
        self._setup()
        p = self.plt
        kind = self.id
        if kind == "chart-prices":
            bx, by = s.close_x[0], s.close_y[0]
            p.plot(xs, [100 * v / bx for v in s.close_x], label=snap.symbol_x, marker="braille")
            p.plot(xs, [100 * v / by for v in s.close_y], label=snap.symbol_y, marker="braille")
        elif kind == "chart-spread":
            x1, y1 = _finite(xs, s.spread)
            x2, y2 = _finite(xs, s.spread_mean)
            if x1:
                p.plot(x1, y1, label="spread", marker="braille")
            if x2:
                p.plot(x2, y2, label="mean", marker="braille")
        else:
            x1, y1 = _finite(xs, s.zscore)
            if x1:
                p.plot(x1, y1, label="z", marker="braille")
                p.hline(entry_z)
                p.hline(-entry_z)
        self.shown_ms = snap.series.ts_ms[-1]
        self.refresh()
