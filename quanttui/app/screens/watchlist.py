"""The watchlist: every pair and basket the engine runs, one row each, live; one alert
log for all.

A view like the monitor: `QuantApp` routes the engine's events to it by key (`set_pairs`,
`set_info`, `show_snapshot`, `show_alert`, `show_status`) and it turns keys into engine
commands (add and remove a pair or a basket, export, rules for every row). Enter opens
the pair's full monitor, or the basket's screen, on the same engine; Esc there comes
back. A basket row (key ``A+B+C``) shows what a basket has: z, its sparkline, fill,
half-life, the Johansen rank in the corr column and the r = 0 trace statistic in the
ADF p column; the cells of metrics a basket has not (hedge b, coint p, carry) are blank.

Why it is drawn the way it is:

* **On a timer, by row.** Snapshots only mark a row dirty; every `DRAW_TICK_S` the rows
  dirty longest have their cells recomputed, and `WatchTable` (line API) redraws only
  the rows whose cells changed, so the terminal gets those lines, not a repaint
  (`DataTable` re-renders every cell of the table on any update).
* **In slices.** Every pair's bar closes at the same second, so every row turns dirty at
  once. One tick draws at most `ROWS_PER_DRAW` of them (more when that would leave a row
  waiting past `DRAW_S`): twenty rows cost three short bursts of the UI loop 0.1 s apart,
  not one three times as long, which on a busy machine a preemption stretches into a
  stall the keyboard feels.
* **Columns by priority.** Pair, z, the z sparkline and the last alert always show; the
  other columns are added in priority order while they fit the width (the sparkline takes
  what is left), so 80 columns never scroll sideways.
* **Sorted in place.** A new order only reorders the rows' cached lines; the cursor
  stays on its pair.
* **A log the GC need not walk.** The alert log (`LogLines`) keeps its rows as strings.
* **The status with the rows.** Each compositor pass re-renders every widget on the
  screen (the screen's children all clip to the whole screen), about 1.5 ms at 120x40
  however little changed; a status every 0.25 s drawn on its own cost more passes than
  the rows. A status is drawn in a tick that draws rows anyway, or `STATUS_TICKS` after
  the last; a change of what it warns of (the feed's state or detail, a database error,
  legs without recent trades, the width) is drawn at the next tick.
* **No relayout.** The title and status lines are one row tall and as wide as the screen,
  so their updates skip Textual's layout pass (`update(layout=False)`); with it, the
  status arriving once a second reflowed the whole screen each time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, Label, Static

from quanttui.app.screens.confirm import ConfirmScreen
from quanttui.app.widgets.loglines import DELIVERED_MARK, LogLines
from quanttui.app.widgets.watchtable import TableColumn, WatchTable
from quanttui.config import entry_key, parse_watchlist_entry
from quanttui.engine.events import BasketInfo, describes
from quanttui.model import Alert, BasketSnapshot, Snapshot, iso_utc
from quanttui.textsafe import printable

if TYPE_CHECKING:
    from quanttui.engine.events import AlertEvent, AlertWithdrawn, PairInfo, Status

W = TypeVar("W", bound=Widget)

DRAW_S = 0.5
"""A row is redrawn at most this long after its snapshot arrived (snapshots in between
only mark it dirty)."""
DRAW_TICK_S = 0.1
DRAW_TICKS = round(DRAW_S / DRAW_TICK_S)
ROWS_PER_DRAW = 8
"""Rows drawn per tick, unless more are needed to keep within `DRAW_S`."""
STATUS_TICKS = round(1.0 / DRAW_TICK_S)
"""Draw ticks a status may wait for rows to be drawn with it: the figures it shows
(ticks/s, the database size) are at most a second old."""
ALERT_LOG_ROWS = 500
PAIR_ALERTS = 50
"""Standing alerts kept per pair, so that a withdrawn last alert shows the one before."""
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_MIN, SPARK_MAX = 8, 30
SCROLLBAR = 2
BEYOND_STYLE = "bold red"


@dataclass(frozen=True, slots=True)
class PlannedPair:
    """A pair as the command line gave it, shown until the engine reports it (the engine
    is imported and started after the first frame; see `QuantApp`)."""

    key: str
    symbol_x: str
    symbol_y: str
    timeframe: str
    window: int
    hedge: str


def short_name(symbol: str) -> str:
    """``BTCUSDT`` -> ``BTC``; other quotes are kept."""
    return symbol[:-4] if symbol.endswith("USDT") and len(symbol) > 4 else symbol


def fmt(v: float | None, spec: str) -> str:
    return "—" if v is None or not math.isfinite(v) else format(v, spec)


def fmt_p(v: float | None) -> str:
    """p-values: fixed point down to 1e-4, then scientific."""
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.4f}" if v >= 1e-4 else f"{v:.0e}"


def sparkline(values: Sequence[float], width: int, limit: float) -> str:
    """The last `width` values as block characters on the fixed scale ``-limit..+limit``
    (clamped), so the middle of the range is z = 0; a NaN is a blank. Right-aligned."""
    tail = list(values)[-width:] if width > 0 else []
    n = len(SPARK_BLOCKS)
    out = []
    for v in tail:
        if v is None or not math.isfinite(v):
            out.append(" ")
            continue
        u = (min(max(v, -limit), limit) + limit) / (2 * limit)
        out.append(SPARK_BLOCKS[min(n - 1, int(u * n))])
    return "".join(out).rjust(width)


def pair_label(x: str, y: str) -> str:
    """The monitor's leg order, X -> Y (Y regressed on X), quote asset USDT left out."""
    return f"{short_name(x)}->{short_name(y)}"


def is_basket(info: object) -> bool:
    return isinstance(info, BasketInfo)


def row_label(info: PairInfo | BasketInfo) -> str:
    """A pair's `pair_label` (``BTC->ETH``), a basket's legs ``BTC+ETH+SOL``."""
    if isinstance(info, BasketInfo):
        return "+".join(short_name(s) for s in info.symbols)
    return pair_label(info.symbol_x, info.symbol_y)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


@dataclass
class Row:
    """What the watchlist knows of one pair or basket: from the engine's events only."""

    info: PairInfo | BasketInfo
    snapshot: Snapshot | BasketSnapshot | None = None
    bars: int | None = None
    alerts: deque[Alert] = field(default_factory=lambda: deque(maxlen=PAIR_ALERTS))

    @property
    def zscore(self) -> float | None:
        return self.snapshot.zscore if self.snapshot is not None else None

    @property
    def fill(self) -> float | None:
        bars = self.snapshot.bars if self.snapshot is not None else self.bars
        if bars is None:
            return None
        return min(bars, self.info.window) / self.info.window

    @property
    def carry(self) -> float | None:
        s = self.snapshot
        f = getattr(s, "funding", None)
        return f.carry_bps_day if f is not None else None

    @property
    def zseries(self) -> Sequence[float]:
        s = self.snapshot
        if s is None:
            return ()
        return s.series_zscore if isinstance(s, BasketSnapshot) else s.series.zscore


def _abs(v: float | None) -> float | None:
    return abs(v) if v is not None else None


def _snap(name: str) -> Callable[[Row], float | None]:
    """A pair's metric; None on a basket row (sorted last)."""
    return lambda r: getattr(r.snapshot, name, None) if r.snapshot is not None else None


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int
    keep: int
    """0: always shown; else columns are added in increasing `keep` while they fit."""
    sort: Callable[[Row], object] | None
    descending: bool = False
    """The first press sorts this way (largest |z| first, for instance)."""


COLUMNS: tuple[Column, ...] = (
    Column("mark", " ", 1, 0, None),
    Column("pair", "X->Y", 0, 0, lambda r: row_label(r.info)),
    Column("fill", "fill", 4, 1, lambda r: r.fill),
    Column("z", "z", 6, 0, lambda r: _abs(r.zscore), True),
    Column("spark", "z recent", 0, 0, None),
    Column("beta", "hedge b", 8, 2, _snap("beta")),
    Column("corr", "corr", 5, 3, _snap("corr"), True),
    Column("adf_p", "ADF p", 6, 4, _snap("adf_p")),
    Column("coint_p", "coint p", 7, 5, _snap("coint_p")),
    Column("half_life", "half-life", 9, 6, _snap("half_life_s")),
    Column("carry", "carry bp/d", 10, 7, lambda r: r.carry, True),
    Column("alert", "last alert", 15, 0, lambda r: r.alerts[-1].ts_ms if r.alerts else None, True),
)
BY_KEY = {c.key: c for c in COLUMNS}
SORT_KEYS = ("pair", "fill", "z", "beta", "corr", "adf_p", "coint_p", "half_life", "carry", "alert")
"""What the keys 1-9 and 0 sort by, in that order."""


def plan_columns(width: int, pair_width: int) -> tuple[list[Column], int]:
    """The columns that fit `width` cells (each takes its width plus 2 of padding) and
    the sparkline's width: the always-shown ones with a `SPARK_MIN` sparkline first, then
    the others by `keep` while they fit; the sparkline gets the rest up to `SPARK_MAX`."""
    avail = width - SCROLLBAR

    def cost(c: Column) -> int:
        w = pair_width if c.key == "pair" else SPARK_MIN if c.key == "spark" else c.width
        return w + 2

    chosen = {c.key for c in COLUMNS if c.keep == 0}
    used = sum(cost(BY_KEY[k]) for k in chosen)
    for c in sorted((c for c in COLUMNS if c.keep), key=lambda c: c.keep):
        if used + cost(c) > avail:
            break
        chosen.add(c.key)
        used += cost(c)
    spark = SPARK_MIN + max(0, min(SPARK_MAX - SPARK_MIN, avail - used))
    return [c for c in COLUMNS if c.key in chosen], spark


class WatchlistScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "open", "Monitor", priority=True),
        Binding("a", "add_pair", "Add pair"),
        Binding("d", "remove_pair", "Remove"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "reverse", "Reverse", show=False),
        Binding("e", "export", "Export"),
        Binding("r", "edit_rules", "Rules"),
        *(
            Binding(str((k + 1) % 10), f"sort('{key}')", f"Sort by {BY_KEY[key].label}", show=False)
            for k, key in enumerate(SORT_KEYS)
        ),
    ]
    ACTION_HELP = {
        "open": "Open the pair's full monitor (Esc comes back)",
        "add_pair": "Watch another pair X/Y (checked against the exchange)",
        "remove_pair": "Stop watching the selected pair (asks first)",
        "sort_next": "Sort by the next column (1-9, 0 pick one; S reverses)",
        "export": "Write every pair's CSVs and a summary into one folder",
        "edit_rules": "Add or remove alert rules for every pair",
    }
    DEFAULT_CSS = """
    WatchlistScreen { layout: vertical; }
    WatchlistScreen #wl-title { height: 1; background: $primary; color: $text; }
    WatchlistScreen #wl-status { height: 1; background: $panel; }
    WatchlistScreen #wl-log { height: 5; min-height: 3; border-top: solid $primary; }
    """

    def __init__(
        self,
        infos: Sequence[PairInfo],
        mode_label: str,
        entry_z: float,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.mode_label = mode_label
        self.entry_z = entry_z
        self.list_name = name
        self.rows: dict[str, Row] = {i.key: Row(i) for i in infos}
        self.shown: dict[str, Snapshot | None] = {}
        """The snapshot each row's cells show (the last one drawn)."""
        self._tick = 0
        """Draw ticks so far."""
        self._dirty: dict[str, int] = dict.fromkeys(self.rows, 0)
        """Rows whose cells are out of date, the longest-waiting first, with the tick
        count when they turned so."""
        self._ordered_tick = 0
        """The tick at which the rows were last put in order."""
        self.status: Status | None = None
        self.sort_key: str | None = None
        self.descending = False
        self._columns: list[Column] = []
        self._spark = SPARK_MIN
        self._pair_width = 0
        self._layout_dirty = True
        self._title_dirty = True
        self._status_due: int | None = None
        """The tick by which the last status must be drawn, None when it is."""
        self._status_key: tuple | None = None
        """What the status on screen warns of (`_warns`)."""

    def compose(self) -> ComposeResult:
        yield Static(id="wl-title")
        yield Static(id="wl-status")
        yield WatchTable(id="wl-table")
        yield LogLines([8, None, None], limit=ALERT_LOG_ROWS, padding=1, id="wl-log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#wl-table", WatchTable).focus()
        self._draw()
        self.draw_timer = self.set_interval(DRAW_TICK_S, self._draw)

    def on_resize(self, _event: events.Resize) -> None:
        self._layout_dirty = True
        self._draw()

    # ----------------------------------------------------------------- events in
    def set_pairs(self, infos: Sequence[PairInfo | BasketInfo]) -> None:
        """The engine's pairs and baskets changed (`PairsChanged`): rows added and
        removed."""
        keys = {i.key for i in infos}
        for key in [k for k in self.rows if k not in keys]:
            del self.rows[key]
            self.shown.pop(key, None)
            self._dirty.pop(key, None)
        for info in infos:
            if info.key not in self.rows:
                self.rows[info.key] = Row(info)
                self._dirty[info.key] = self._tick
            elif self.rows[info.key].info != info:
                # a row made from the command line before the engine (or a server with
                # other parameters) reported it
                self.set_info(info.key, info)
        self._layout_dirty = True
        self._title_dirty = True

    def set_info(self, key: str, info: PairInfo | BasketInfo, bars: int | None = None) -> None:
        """A pair was recomputed (`Recomputed`), possibly with new parameters."""
        row = self.rows.get(key)
        if row is None:
            return
        if info != row.info:
            row.info = info
            row.snapshot = None
            self._layout_dirty = True
        row.bars = bars
        self._dirty.setdefault(key, self._tick)

    def show_snapshot(self, key: str, snap: Snapshot | BasketSnapshot) -> None:
        row = self.rows.get(key)
        if row is None:
            return
        info = row.info
        if isinstance(info, BasketInfo) or isinstance(snap, BasketSnapshot):
            if not (
                isinstance(info, BasketInfo)
                and isinstance(snap, BasketSnapshot)
                and (snap.symbols, snap.timeframe, snap.window)
                == (info.symbols, info.timeframe, info.window)
            ):
                return
        elif not describes(info, snap):
            return
        row.snapshot = snap
        self._dirty.setdefault(key, self._tick)

    def show_delivered(self, a: Alert) -> None:
        """The alert reached every notification destination: its log row says so."""
        log = self._part("#wl-log", LogLines) if self.is_mounted else None
        if log is not None:
            log.mark(_log_key(a), DELIVERED_MARK)

    def show_alert(self, key: str | None, ev: AlertEvent | AlertWithdrawn) -> None:
        """One line in the log naming the pair; the row's last alert."""
        a = ev.alert
        row = self.rows.get(key) if key is not None else None
        label = row_label(row.info) if row is not None else printable(a.pair, 20)
        if row is not None:
            if _withdrawn(ev):
                row.alerts = deque(
                    (b for b in row.alerts if not _same_alert(a, b)), maxlen=PAIR_ALERTS
                )
            else:
                row.alerts.append(a)
            self._dirty.setdefault(key, self._tick)
        log = self._part("#wl-log", LogLines) if self.is_mounted else None
        if log is None:
            return
        rk = _log_key(a)
        when, pair = (iso_utc(a.ts_ms)[11:19], ""), (label, "")
        if _withdrawn(ev):
            cell = (printable(f"WITHDRAWN {_alert_text(a)}"), "strike dim")
            if not log.replace(rk, (when, pair, cell)):
                log.add((when, pair, cell))
        else:
            text = printable(_alert_text(a) + (" (revised)" if ev.revised else ""))
            log.add((when, pair, (text, "")), key=rk)

    def show_status(self, st: Status | None) -> None:
        """Keep `st`; it is drawn with the next rows, within `STATUS_TICKS`, or at the
        next tick when what it warns of changed."""
        self.status = st
        due = self._tick if self._warns(st) != self._status_key else self._tick + STATUS_TICKS
        self._status_due = due if self._status_due is None else min(self._status_due, due)

    def _warns(self, st: Status | None) -> tuple:
        from quanttui.app.widgets.status import STALE_LEG_S

        width = self.app.size.width if self.is_mounted else 0
        if st is None:
            return (None, width)
        stale = tuple(
            sorted(s for s in st.symbols if (age := st.leg_age.get(s)) is None or age > STALE_LEG_S)
        )
        return (st.state, st.detail, st.db_error, stale, width)

    def _draw_status(self) -> None:
        from quanttui.app.widgets.status import status_line

        st = self.status
        status = self._part("#wl-status", Static)
        if status is None:
            return
        self._status_due = None
        warns = self._status_key = self._warns(st)
        width = self.app.size.width or 80
        line = status_line(st, (), (1, 1), width)
        stale = warns[3] if st is not None else ()
        if stale and line.cell_len + 10 < width:
            names = " ".join(short_name(s) for s in stale)
            line.append("  ")
            line.append(
                printable(f"no recent trades: {names}", width - line.cell_len - 2, one_line=True),
                style="yellow",
            )
        status.update(line, layout=False)

    def _part(self, selector: str, kind: type[W]) -> W | None:
        """One of the screen's widgets, or None while it is not there: an engine event can
        arrive after the screen is mounted but while the app tears it down."""
        try:
            return self.query_one(selector, kind)
        except NoMatches:
            return None

    # ----------------------------------------------------------------- drawing
    def order(self) -> list[str]:
        """The pairs' keys as the rows show them, top first."""
        if not self.is_mounted:
            return list(self.rows)
        return list(self.query_one("#wl-table", WatchTable).order)

    def _sorted_keys(self) -> list[str]:
        keys = list(self.rows)
        col = BY_KEY.get(self.sort_key or "")
        if col is None or col.sort is None:
            return keys
        values = {k: col.sort(self.rows[k]) for k in keys}
        have = [k for k in keys if values[k] is not None]
        have.sort(key=lambda k: values[k], reverse=self.descending)
        return have + [k for k in keys if values[k] is None]

    def _cell(self, row: Row, col: Column) -> tuple[str, str]:
        """(text, style) of one cell."""
        snap = row.snapshot
        z = row.zscore
        beyond = z is not None and abs(z) >= self.entry_z
        key = col.key
        if key == "mark":
            return ("▲" if z >= 0 else "▼", BEYOND_STYLE) if beyond else (" ", "")
        if key == "pair":
            return row_label(row.info), "bold" if beyond else ""
        if key == "fill":
            f = row.fill
            return ("—" if f is None else f"{f * 100:.0f}%"), "" if f is None or f >= 1 else "dim"
        if key == "z":
            return fmt(z, "+.2f"), BEYOND_STYLE if beyond else ""
        if key == "spark":
            series = row.zseries
            finite = [abs(v) for v in series[-self._spark :] if math.isfinite(v)]
            limit = max([self.entry_z, *finite])
            return sparkline(series, self._spark, limit), ""
        if is_basket(row.info) and key in ("beta", "coint_p", "carry"):
            return "", ""
        if snap is None and key != "alert":
            return "—", ""
        if isinstance(snap, BasketSnapshot) and key != "alert":
            return self._basket_cell(snap, key)
        if key == "beta":
            return fmt(snap.beta, ".4g"), ""
        if key == "corr":
            return fmt(snap.corr, ".2f"), ""
        if key in ("adf_p", "coint_p"):
            return fmt_p(getattr(snap, key)), ""
        if key == "half_life":
            return fmt_duration(snap.half_life_s), ""
        if key == "carry":
            return fmt(row.carry, "+.1f"), ""
        if key == "alert":
            if not row.alerts:
                return "—", ""
            a = row.alerts[-1]
            return f"{iso_utc(a.ts_ms)[11:19]} {a.value:+.2f}", ""
        return "", ""

    @staticmethod
    def _basket_cell(snap: BasketSnapshot, key: str) -> tuple[str, str]:
        """A basket row's cell under a pair column: the Johansen rank (trace test, 95 %)
        under corr, the r = 0 trace statistic under ADF p (bold when it is past its 95 %
        critical value), the half-life; blank where a basket has no such metric."""
        if key == "corr":
            return ("—" if snap.rank is None else f"r={snap.rank}"), ""
        if key == "adf_p":
            if not snap.trace:
                return "—", ""
            past = bool(snap.trace_cv) and snap.trace[0] > snap.trace_cv[0][1]
            return fmt(snap.trace[0], ".1f"), "bold" if past else ""
        if key == "half_life":
            return fmt_duration(snap.half_life_s), ""
        return "", ""

    def _rebuild(self, table: WatchTable) -> None:
        """Columns for the current width and pair labels; every row's cells anew."""
        width = self.app.size.width or 80
        labels = [row_label(r.info) for r in self.rows.values()]
        self._pair_width = max([4, *(len(t) for t in labels)])
        self._columns, self._spark = plan_columns(width, self._pair_width)
        table.set_columns(
            [
                TableColumn(
                    c.key,
                    self._label(c),
                    self._pair_width
                    if c.key == "pair"
                    else self._spark
                    if c.key == "spark"
                    else c.width,
                )
                for c in self._columns
            ]
        )
        self._dirty = dict.fromkeys(self.rows, self._tick)
        self._refresh_rows(table, len(self._dirty))

    def _label(self, col: Column) -> str:
        label = col.label
        if col.key == self.sort_key:
            label = ("|z|" if col.key == "z" else label) + ("▼" if self.descending else "▲")
        return label

    def _refresh_rows(self, table: WatchTable, limit: int) -> None:
        """The cells of the `limit` rows dirty longest; the order once every row is
        drawn (so that no row sorts by a value it does not show yet), or `DRAW_TICKS`
        after the last."""
        keys = list(itertools.islice(self._dirty, limit))
        for key in keys:
            del self._dirty[key]
            row = self.rows[key]
            table.set_cells(key, {c.key: self._cell(row, c) for c in self._columns})
            self.shown[key] = row.snapshot
        if not self._dirty or self._tick - self._ordered_tick >= DRAW_TICKS:
            self._ordered_tick = self._tick
            table.set_order(self._sorted_keys())

    def _draw(self) -> None:
        """One tick: the rows dirty longest. The oldest has `left` ticks (this one
        included) before it has waited `DRAW_S`; each tick takes a `left`-th of the
        dirty rows, at least `ROWS_PER_DRAW`, so every row dirty now is drawn in time."""
        self._tick += 1
        status = self._status_due is not None and (
            self._status_due <= self._tick or bool(self._dirty) or self._layout_dirty
        )
        if not self.is_mounted or not (
            self._layout_dirty or self._dirty or self._title_dirty or status
        ):
            return
        table = self.query_one("#wl-table", WatchTable)
        with self.app.batch_update():
            if self._layout_dirty:
                self._layout_dirty = False
                self._rebuild(table)
                self._title_dirty = True
            elif self._dirty:
                oldest = next(iter(self._dirty.values()), self._tick)
                left = max(1, DRAW_TICKS - (self._tick - 1 - oldest))
                self._refresh_rows(table, max(ROWS_PER_DRAW, math.ceil(len(self._dirty) / left)))
            if not self._dirty or self._title_dirty:
                self._update_title()
            if status:
                self._draw_status()

    def _update_title(self) -> None:
        beyond = sum(
            1 for r in self.rows.values() if r.zscore is not None and abs(r.zscore) >= self.entry_z
        )
        infos = [r.info for r in self.rows.values()]
        baskets = sum(1 for i in infos if isinstance(i, BasketInfo))
        t = Text()
        t.append(f" {self.mode_label} ", style="reverse bold")
        t.append(" WATCHLIST", style="bold")
        if self.list_name:
            t.append(f" {printable(self.list_name, 40)}", style="bold")
        pairs = len(self.rows) - baskets
        t.append(f"  {pairs} pair{'' if pairs == 1 else 's'}")
        if baskets:
            t.append(f", {baskets} basket{'s' if baskets > 1 else ''}")
        params = {(i.timeframe, i.window, getattr(i, "hedge", None)) for i in infos}
        if len(params) == 1:
            tf, w, hedge = next(iter(params))
            t.append(f"  {tf} W={w}" + (f" {hedge}" if hedge else ""))
        elif len({(i.timeframe, i.window) for i in infos}) == 1:
            tf, w = infos[0].timeframe, infos[0].window
            t.append(f"  {tf} W={w}")
        t.append("  ")
        t.append(f"{beyond} beyond ±{self.entry_z:g}", style=BEYOND_STYLE if beyond else "")
        if self.sort_key:
            col = BY_KEY[self.sort_key]
            t.append(f"  by {'|z|' if col.key == 'z' else col.label}")
        key = (t.plain, beyond)
        if key != getattr(self, "_title_key", None) or self._title_dirty:
            self._title_key = key
            self._title_dirty = False
            self.query_one("#wl-title", Static).update(t, layout=False)

    # ----------------------------------------------------------------- keys
    def selected(self) -> str | None:
        """The key of the pair under the cursor."""
        if not self.is_mounted:
            return None
        return self.query_one("#wl-table", WatchTable).cursor_key

    def on_watch_table_selected(self, event: WatchTable.Selected) -> None:
        event.stop()
        self.app.open_pair(event.key)

    def on_watch_table_header_clicked(self, event: WatchTable.HeaderClicked) -> None:
        key = event.column
        if key == "spark" or key == "mark":
            key = "z"
        if key in SORT_KEYS:
            self.action_sort(key)

    def action_open(self) -> None:
        key = self.selected()
        if key is not None:
            self.app.open_pair(key)

    def action_sort(self, key: str) -> None:
        if key not in SORT_KEYS:
            return
        if key == self.sort_key:
            self.descending = not self.descending
        else:
            self.sort_key, self.descending = key, BY_KEY[key].descending
        self._relabel()

    def action_sort_next(self) -> None:
        visible = [c.key for c in self._columns if c.key in SORT_KEYS] or list(SORT_KEYS)
        nxt = (
            visible[(visible.index(self.sort_key) + 1) % len(visible)]
            if self.sort_key in visible
            else "z"
        )
        self.sort_key, self.descending = nxt, BY_KEY[nxt].descending
        self._relabel()

    def action_reverse(self) -> None:
        if self.sort_key is not None:
            self.descending = not self.descending
            self._relabel()

    def _relabel(self) -> None:
        table = self.query_one("#wl-table", WatchTable)
        for c in self._columns:
            table.set_label(c.key, self._label(c))
        self._title_dirty = True
        with self.app.batch_update():
            table.set_order(self._sorted_keys())
            self._update_title()

    def action_add_pair(self) -> None:
        self.app.push_screen(AddPairScreen(self.app.request_add, set(self.rows)))

    def action_remove_pair(self) -> None:
        key = self.selected()
        if key is None:
            return
        i = self.rows[key].info
        what = (
            f"the basket {'+'.join(i.symbols)}"
            if isinstance(i, BasketInfo)
            else f"{i.symbol_x} -> {i.symbol_y}"
        )

        def done(ok: bool | None) -> None:
            if ok:
                self.app.remove_pair(key)

        self.app.push_screen(ConfirmScreen(printable(f"Stop watching {what}? (y/n)")), done)

    def action_export(self) -> None:
        if not self.rows:
            self.notify("no pairs to export", severity="warning")
            return
        self.notify(f"exporting {len(self.rows)} pairs…", timeout=2)
        self.app.export_pairs(self.order())

    def action_edit_rules(self) -> None:
        from quanttui.app.screens.rules import RulesScreen

        app = self.app
        self.app.push_screen(RulesScreen(app.common_rules, app.add_rule_all, app.remove_rule_all))


def _alert_text(a: Alert) -> str:
    return f"{a.rule} ({a.value:+.4g})"


def _same_alert(a: Alert, b: Alert) -> bool:
    return (a.ts_ms, a.pair, a.rule) == (b.ts_ms, b.pair, b.rule) and math.isclose(
        a.value, b.value, rel_tol=1e-9, abs_tol=1e-12
    )


def _log_key(a: Alert) -> str:
    return f"{a.ts_ms} {a.pair} {a.rule} {a.value:.17g}"


def _withdrawn(ev: object) -> bool:
    return hasattr(ev, "withdrawn_ms")


@functools.cache
def listed_monitor() -> type:
    """The single-pair monitor as opened from the watchlist or the scanner: Esc goes back.
    Made on first use, so that the watchlist's first frame does not wait for the charts."""
    from quanttui.app.screens.monitor import MonitorScreen

    class ListedMonitorScreen(MonitorScreen):
        BINDINGS = [Binding("escape", "app.back", "Back")]

    return ListedMonitorScreen


class AddPairScreen(ModalScreen[str | None]):
    """Type a pair X/Y or a basket A+B+C; it is checked here (form, duplicates), then by
    the engine against the exchange's symbols (`Engine.add_pair`, `Engine.add_basket`).
    Errors show in the dialog, which stays open; on success it closes with the new key."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]
    DEFAULT_CSS = """
    AddPairScreen { align: center middle; }
    AddPairScreen > Vertical {
        width: 64; max-width: 100%; height: auto;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    AddPairScreen #add-message { height: auto; min-height: 1; }
    """

    def __init__(
        self,
        submit: Callable[[tuple[str, ...]], concurrent.futures.Future],
        watched: set[str],
    ) -> None:
        super().__init__()
        self._submit = submit
        self._watched = watched
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(
                "Add a pair X/Y (Y regressed on X) or a basket A+B+C (3-12 legs), Enter to "
                "add, Esc to close"
            )
            yield Input(
                placeholder="e.g. BTCUSDT/SOLUSDT or BTCUSDT+ETHUSDT+SOLUSDT", id="add-input"
            )
            yield Static("", id="add-message")

    def on_mount(self) -> None:
        self.query_one("#add-input", Input).focus()

    def say(self, text: str, error: bool = False) -> None:
        self.query_one("#add-message", Static).update(
            Text(printable(text, 300), style="bold red" if error else "")
        )

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.busy:
            return
        words = event.value.split()
        bare = not any("/" in w or "+" in w for w in words)
        text = ("/" if len(words) == 2 else "+").join(words) if bare else "".join(words)
        try:
            legs = parse_watchlist_entry(text)
        except ValueError as exc:
            self.say(str(exc), error=True)
            return
        key = entry_key(legs)
        if key in self._watched:
            self.say(f"{key} is already on the watchlist", error=True)
            return
        self.busy = True
        self.say(f"checking {key} against the exchange…")
        try:
            await asyncio.wrap_future(self._submit(legs))
        except Exception as exc:  # noqa: BLE001 - the engine's one-line reason
            self.busy = False
            self.say(str(exc) or exc.__class__.__name__, error=True)
            return
        what = " -> ".join(legs) if len(legs) == 2 else f"the basket {key}"
        self.notify(f"watching {what}", markup=False)
        self.dismiss(key)
