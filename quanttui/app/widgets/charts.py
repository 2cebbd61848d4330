"""The monitor's three charts: prices (base 100), spread with its mean, and a lower chart
that shows the z-score with its ±entry lines, the rolling correlation or the hedge ratio.

Each chart is a title line (the legend and the span shown, so no legend sits on the
data) over a plotext plot with a time axis. The screen hands every chart the same
`ChartFrame` (which bars, where the cursor is, which alerts to mark); a chart redraws
only when its frame changed.

Axis facts that the tests hold:

* x is the bar's index in `Series`; the tick labels are the UTC times of bars whose time
  is a multiple of a round step (`time_ticks`), in the bar size's format.
* On the z chart the y ticks are exactly −entry, 0 and +entry (and further multiples of
  entry when z goes beyond), each with its guide line; plotext puts a tick label and an
  hline for the same value on the same row. The limits are chosen so that these values
  fall on whole rows an equal number of rows apart (`aligned_limits`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import App, ComposeResult
from textual.color import Color as TextualColor
from textual.containers import Vertical
from textual.widgets import Static

from quanttui.config import TIMEFRAMES
from quanttui.model import Snapshot
from quanttui.report import duration_text

if TYPE_CHECKING:
    from textual_plotext.plot import Plot

LOWER_VIEWS = ("z", "corr", "beta")
"""What the lower chart can show, in the order `v` cycles through."""
LOWER_TITLES = {"z": "z-score", "corr": "correlation", "beta": "hedge b"}

X_COLOR, Y_COLOR = "cyan", "magenta"
GUIDE_COLOR, ZERO_COLOR = "orange", "gray"
ALERT_COLOR, CURSOR_COLOR = "red", "white"
RICH = {"cyan": "cyan", "magenta": "magenta", "orange": "yellow", "gray": "bright_black"}
RICH |= {"red": "red", "white": "bright_white"}
"""plotext's colour names as the ANSI colours they print (its `orange` is ANSI yellow,
its `yellow` ANSI 12), for the legend in the title line."""
ALERT_MARKER = "◆"
TIME_STEPS_S = (
    *(1, 2, 5, 10, 15, 30),
    *(60, 120, 300, 600, 900, 1800),
    *(3600, 7200, 10_800, 21_600, 43_200, 86_400),
)


Legend = tuple[str, str, str, bool]
"""(marker, marker style, label, optional): one entry of a chart's title line."""


@dataclass(eq=False)
class ChartFrame:
    """What the charts show: bars `start` to `stop` (exclusive) of `snap.series`, the
    cursor's bar index (None when live), the lower chart's view, and the times of the
    alerts to mark."""

    snap: Snapshot
    start: int
    stop: int
    cursor: int | None = None
    lower: str = "z"
    entry_z: float = 2.0
    alerts: tuple[int, ...] = ()
    key: tuple = field(init=False)

    def __post_init__(self) -> None:
        self.key = (id(self.snap), self.start, self.stop, self.cursor, self.lower, self.alerts)

    @property
    def bars(self) -> int:
        return self.stop - self.start

    @property
    def span_text(self) -> str:
        """The time the shown bars cover: `6m48s` (408 bars of 1 s)."""
        return duration_text(self.bars * TIMEFRAMES[self.snap.timeframe] / 1000)


def _decimate(start: int, stop: int, limit: int) -> range:
    """At most about `limit` evenly spaced indices of `[start, stop)`, the last one
    included. A braille chart shows two points per column, so drawing more than twice
    its width only costs time in plotext's layout."""
    n = stop - start
    if n <= limit:
        return range(start, stop)
    step = -(-n // limit)
    return range(start + (n - 1) % step, stop, step)


def _finite(xs: Sequence[int], ys: Sequence[float]) -> tuple[list[int], list[float]]:
    pts = [(x, ys[x]) for x in xs if math.isfinite(ys[x])]
    return [p[0] for p in pts], [p[1] for p in pts]


def time_format(timeframe: str, span_ms: int, step_ms: int) -> str:
    """strftime format of the time labels: with seconds for 1 s bars (unless the labels
    fall on whole minutes), hours and minutes otherwise, and the date when the span
    reaches a day."""
    if span_ms >= 86_400_000:
        return "%m-%d %H:%M"
    return "%H:%M:%S" if TIMEFRAMES[timeframe] < 60_000 and step_ms % 60_000 else "%H:%M"


def time_ticks(
    ts_ms: Sequence[int], start: int, stop: int, timeframe: str, width: int
) -> tuple[list[int], list[str]]:
    """Positions (bar indices) and UTC labels of the x axis for bars `start..stop-1` on
    a plot `width` columns wide: bars whose time is a multiple of the smallest round
    step that leaves room for every label, none closer than a label's width."""
    if stop - start < 2:
        return [], []
    span = ts_ms[stop - 1] - ts_ms[start]
    tf = TIMEFRAMES[timeframe]
    fmt = label_w = step_ms = None
    for s in TIME_STEPS_S:
        if s * 1000 < tf:
            continue
        fmt = time_format(timeframe, span, s * 1000)
        label_w = len(datetime.fromtimestamp(0, tz=UTC).strftime(fmt))
        if span / (s * 1000) < max(1, width // (label_w + 2)):
            step_ms = s * 1000
            break
    if step_ms is None or fmt is None or label_w is None:
        return [], []
    pos: list[int] = []
    cols_per_bar = width / max(1, stop - 1 - start)
    last_col = -math.inf
    for i in range(start, stop):
        if ts_ms[i] % step_ms:
            continue
        col = (i - start) * cols_per_bar
        edge = label_w / 2 if col > width - label_w / 2 else 0
        if col - last_col < label_w + 1 + edge:
            continue
        pos.append(i)
        last_col = col
    labels = [datetime.fromtimestamp(ts_ms[i] / 1000, tz=UTC).strftime(fmt) for i in pos]
    return pos, labels


def nice_ticks(lo: float, hi: float, count: int) -> tuple[list[float], list[str]]:
    """About `count` ticks at multiples of 1, 2 or 5 × 10^k inside [lo, hi], with one
    number of decimals for all labels."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [], []
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step)
    ticks = [k * step for k in range(first, math.floor(hi / step) + 1)]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return ticks, [f"{t:.{decimals}f}" for t in ticks]


def aligned_limits(lo: float, hi: float, e: float, rows: int) -> tuple[float, float, int] | None:
    """y limits for a plot of `rows` character rows (rows − 1 intervals, plotext's
    mapping) that hold [lo, hi] and ±e with −e, 0 and +e on whole rows, `k` rows apart:
    returns (ymin, ymax, k) with the largest k that fits, or None when even k = 1 does
    not (z far beyond the entry level on a short chart)."""
    intervals = rows - 1
    for k in range(intervals // 2, 0, -1):
        d = e / k
        up = max(k, math.ceil(max(hi, 0.0) / d - 1e-9))
        down = max(k, math.ceil(max(-lo, 0.0) / d - 1e-9))
        if up + down > intervals:
            continue
        for _ in range(intervals - up - down):
            if up <= down:
                up += 1
            else:
                down += 1
        return -down * d, up * d, k
    return None


def _signed(v: float) -> str:
    return f"{v:+g}" if v else "0"


@dataclass(frozen=True, slots=True)
class ChartImage:
    """A built chart: the plot as text, the legend for its title line, and what it
    shows (`key`: the frame's key and the plot size it was built for)."""

    text: Text
    legend: list[Legend]
    key: tuple
    shown_ms: int


def build_chart(kind: str, frame: ChartFrame, width: int, height: int, theme: str) -> ChartImage:
    """The chart `kind` (`prices`, `spread`, `lower`) of `frame` on a `width` × `height`
    plot, as text. Pure: it reads only its arguments (the snapshot is frozen) and makes
    its own plotext figure, so it runs on the builder thread, off the UI's event loop."""
    from textual_plotext.plot import Plot

    snap, s = frame.snap, frame.snap.series
    p = Plot()
    p.plotsize(width, height)
    p._set_size(width, height)
    p.theme(theme)
    p.frame(False)
    keep = _decimate(frame.start, frame.stop, 2 * width)
    p.xlim(frame.start - 0.5, frame.stop - 0.5)
    ylabel_w = 7
    pos, labels = time_ticks(
        s.ts_ms, frame.start, frame.stop, snap.timeframe, max(10, width - ylabel_w)
    )
    p.xticks(pos, labels)
    rows = height - 1
    if kind == "prices":
        legend = _draw_prices(p, frame, keep, rows)
    elif kind == "spread":
        legend = _draw_spread(p, frame, keep, rows)
    else:
        legend = _draw_lower(p, frame, keep, rows)
    if frame.cursor is not None and frame.start <= frame.cursor < frame.stop:
        p.vline(frame.cursor, CURSOR_COLOR)
        if kind == "lower":
            legend.append(("│", CURSOR_COLOR, "cursor", False))
    text = Text.from_ansi(p.build(), no_wrap=True)
    return ChartImage(text, legend, (*frame.key, width, height), s.ts_ms[frame.stop - 1])


def _yticks(p: Plot, lo: float, hi: float, rows: int) -> None:
    ticks, labels = nice_ticks(lo, hi, max(2, min(5, rows - 1)))
    p.yticks(ticks, labels)


def _draw_prices(p: Plot, frame: ChartFrame, keep: range, rows: int) -> list[Legend]:
    s, snap = frame.snap.series, frame.snap
    bx, by = s.close_x[frame.start], s.close_y[frame.start]
    xs = list(keep)
    nx = [100 * s.close_x[i] / bx for i in xs]
    ny = [100 * s.close_y[i] / by for i in xs]
    p.plot(xs, nx, marker="braille", color=X_COLOR)
    p.plot(xs, ny, marker="braille", color=Y_COLOR)
    lo, hi = min(nx + ny), max(nx + ny)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.01, hi + 0.01
    p.ylim(lo, hi)
    _yticks(p, lo, hi, rows)
    return [
        ("━", X_COLOR, snap.symbol_x, False),
        ("━", Y_COLOR, snap.symbol_y, False),
        ("", "", "(base 100)", True),
    ]


def _draw_spread(p: Plot, frame: ChartFrame, keep: range, rows: int) -> list[Legend]:
    s = frame.snap.series
    x1, y1 = _finite(keep, s.spread)
    x2, y2 = _finite(keep, s.spread_mean)
    if x1:
        p.plot(x1, y1, marker="braille", color=X_COLOR)
    if x2:
        p.plot(x2, y2, marker="braille", color=GUIDE_COLOR)
    vals = y1 + y2
    if vals:
        lo, hi = min(vals), max(vals)
        if hi - lo < 1e-12:
            lo, hi = lo - 1e-6, hi + 1e-6
        p.ylim(lo, hi)
        _yticks(p, lo, hi, rows)
    return [
        ("━", X_COLOR, "spread", False),
        ("━", GUIDE_COLOR, "mean", False),
        ("", "", f"(W={frame.snap.window})", True),
    ]


def _draw_lower(p: Plot, frame: ChartFrame, keep: range, rows: int) -> list[Legend]:
    s = frame.snap.series
    view = frame.lower
    if view == "corr":
        xs, vs = _finite(keep, s.corr)
        for g in (-0.5, 0.5):
            p.hline(g, ZERO_COLOR)
        p.hline(0.0, ZERO_COLOR)
        if xs:
            p.plot(xs, vs, marker="braille", color=X_COLOR)
        p.ylim(-1.0, 1.0)
        p.yticks([-1.0, -0.5, 0.0, 0.5, 1.0], ["-1", "-0.5", "0", "+0.5", "+1"])
        return [
            ("━", X_COLOR, "corr", False),
            ("", "", f"(returns, W={frame.snap.window})", True),
        ]
    if view == "beta":
        xs, vs = _finite(keep, s.beta)
        if xs:
            p.plot(xs, vs, marker="braille", color=X_COLOR)
            lo, hi = min(vs), max(vs)
            if hi - lo < 1e-12:
                lo, hi = lo - 1e-6, hi + 1e-6
            p.ylim(lo, hi)
            _yticks(p, lo, hi, rows)
        return [("━", X_COLOR, "hedge b", False), ("", "", f"({frame.snap.hedge})", True)]
    e = abs(frame.entry_z) or 2.0
    xs, vs = _finite(keep, s.zscore)
    lo = min(vs, default=-e)
    hi = max(vs, default=e)
    lim = aligned_limits(lo, hi, e, rows)
    levels = [-e, 0.0, e]
    if lim is None:
        ymin, ymax = min(lo, -e), max(hi, e)
    else:
        ymin, ymax, k = lim
        if k >= 2:
            top = math.floor(ymax / e + 1e-9)
            bottom = math.ceil(ymin / e - 1e-9)
            levels = [j * e for j in range(bottom, top + 1)]
    for v in levels:
        p.hline(v, ZERO_COLOR if v == 0 else GUIDE_COLOR)
    if xs:
        p.plot(xs, vs, marker="braille", color=X_COLOR)
    shown = [t for t in frame.alerts if s.ts_ms[frame.start] <= t <= s.ts_ms[frame.stop - 1]]
    if shown:
        index = {t: i for i, t in enumerate(s.ts_ms[frame.start : frame.stop], frame.start)}
        ax = [index[t] for t in shown if t in index and math.isfinite(s.zscore[index[t]])]
        if ax:
            p.scatter(ax, [s.zscore[i] for i in ax], marker=ALERT_MARKER, color=ALERT_COLOR)
    p.ylim(ymin, ymax)
    p.yticks(levels, [_signed(v) for v in levels])
    return [
        ("━", X_COLOR, "z", False),
        ("─", GUIDE_COLOR, f"±{e:g} entry", False),
        (ALERT_MARKER, ALERT_COLOR, "alert", True),
    ]


_builder: concurrent.futures.ThreadPoolExecutor | None = None


def builder() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread that builds every chart, in the order asked (a thread per build
    cost a thread's start and end three times a second)."""
    global _builder
    if _builder is None:
        _builder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="quanttui-chart")
    return _builder


_plotext_ready = threading.Event()
_warming = threading.Lock()


def warm_up() -> bool:
    """Whether plotext is imported; if not, import it on a thread. Its import runs about
    0.1 s of module code (it builds its own docs with `inspect`), which on the UI loop
    was a 90-110 ms stall at the first chart; on a thread the loop keeps its turns. Once
    done the heap is frozen (`freeze_heap`: plotext's objects are there for good) and the
    charts, still stale, draw at the screen's next tick."""
    if _plotext_ready.is_set():
        return True
    if not _warming.acquire(blocking=False):
        return False
    loop = asyncio.get_running_loop()

    def work() -> None:
        import plotext._dict  # noqa: F401
        import textual_plotext.plot  # noqa: F401

        from quanttui.app.heap import freeze_heap

        def ready() -> None:
            freeze_heap(at_once=True)
            _plotext_ready.set()

        loop.call_soon_threadsafe(ready)

    threading.Thread(target=work, name="quanttui-plotext-import", daemon=True).start()
    return False


def register_theme(app: App) -> str:
    """The plotext theme matching the app's Textual theme (its surface and foreground,
    as `textual_plotext.PlotextPlot` makes it), registered once; returns its name."""
    from plotext._dict import themes as plotext_themes
    from textual_plotext.plot import _rgbify_theme, _sequence

    name = f"quanttui-{app.theme}"
    if name not in plotext_themes:
        v = app.theme_variables
        surface = TextualColor.parse(v.get("surface", "#1e1e1e")).rgb
        fg = TextualColor.parse(v.get("foreground", "#e0e0e0")).rgb
        plotext_themes[name] = _rgbify_theme(surface, surface, fg, "default", _sequence)
    return name


class Chart(Vertical):
    """One chart: a title line over the plot. `kind` is `prices`, `spread` or `lower`.

    `draw(frame)` queues `build_chart` on the charts' one builder thread (a build still
    queued when a newer frame is asked for is skipped); the finished text is put on
    screen on the UI loop. The plotext build (10-20 ms at 120x40) thus never blocks the loop, which
    keeps frames and keys responsive while the engine thread takes its share."""

    DEFAULT_CSS = """
    Chart { height: 1fr; min-height: 4; }
    Chart > .chart-title { height: 1; width: 1fr; }
    Chart > .chart-plot { height: 1fr; width: 1fr; }
    """

    def __init__(self, kind: str, **kw) -> None:
        super().__init__(**kw)
        self.kind = kind
        self.shown_ms: int | None = None
        """Time of the last bar this chart has drawn."""
        self.frame_key: tuple | None = None
        """What the chart shows: `ChartFrame.key` and the plot size it was built for."""
        self.requested: tuple | None = None
        """What the chart is building (or shows)."""
        self.title_text = ""
        self._frame: ChartFrame | None = None

    def compose(self) -> ComposeResult:
        yield Static(classes="chart-title")
        yield Static(classes="chart-plot")

    @property
    def plot(self) -> Static:
        return self.query_one(".chart-plot", Static)

    def _want(self, frame: ChartFrame) -> tuple:
        size = self.plot.size
        return (*frame.key, max(size.width, 10), max(size.height, 3))

    def stale(self, frame: ChartFrame) -> bool:
        """Neither shown nor being built for `frame` at the plot's current size (limits
        and ticks depend on the rows and columns)."""
        return self.requested != self._want(frame)

    def drawn(self, frame: ChartFrame) -> bool:
        """The chart shows `frame` at its current size."""
        return self.frame_key == self._want(frame)

    def draw(self, frame: ChartFrame) -> None:
        if frame.bars < 1 or not len(frame.snap.series) or not warm_up():
            return
        want = self._want(frame)
        self.requested = want
        self._frame = frame
        width, height = want[-2:]
        theme = register_theme(self.app)

        def build() -> ChartImage | None:
            if self.requested != want:
                return None  # superseded while queued
            return build_chart(self.kind, frame, width, height, theme)

        future = builder().submit(build)
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._built, f))

    def _built(self, future: concurrent.futures.Future) -> None:
        """On the UI loop: show the image if it is still the one asked for (a newer
        frame may have been asked for meanwhile)."""
        if not self.is_mounted:
            return
        error = future.exception()
        if error is not None:
            self.requested = None
            self.plot.update(Text(f"chart failed: {error}", style="red"))
            return
        image = future.result()
        if image is None or image.key != self.requested:
            return
        self.plot.update(image.text)
        self.frame_key = image.key
        self.shown_ms = image.shown_ms
        if self._frame is not None:
            self._title(image.legend, self._frame)

    def _title(self, legend: list[Legend], frame: ChartFrame) -> None:
        """The legend on the left, the span on the right; optional legend entries go
        first when the line is narrow, and the span always shows."""
        right = f"{frame.span_text} · UTC"
        width = max(self.size.width, 20)
        entries = list(legend)

        def build() -> Text:
            t = Text(no_wrap=True)
            for marker, style, label, _optional in entries:
                if t:
                    t.append(" ")
                t.append(marker, style=RICH.get(style, style))
                t.append(label)
            return t

        t = build()
        while t.cell_len + 1 + len(right) > width and any(e[3] for e in entries):
            entries.remove(next(e for e in reversed(entries) if e[3]))
            t = build()
        t.truncate(max(0, width - 1 - len(right)), overflow="ellipsis")
        t.append(" " * max(1, width - t.cell_len - len(right)))
        t.append(right, style="bold")
        self.title_text = t.plain
        self.query_one(".chart-title", Static).update(t)
