"""The single-pair monitor: header, status, three charts, metrics table, alert log.

A view of one engine pair: it renders the engine's events and turns keys into engine
commands (`QuantApp.command`); it holds no pipeline of its own. Drawing happens on a
1/6 s timer, one piece per tick (see `_draw_tick`), and can be paused; ingestion never
pauses.

What is on screen is one value at a time: the snapshot shown (the latest, or the one
frozen by `p`), the bars the charts span (zoom, `+`/`-`), the cursor's bar (←, Esc back
to live) and the lower chart's view (`v`). The metrics table shows the cursor's bar when
there is one (`snapshot_at`, the values that bar's alerts were evaluated on), the
latest bar otherwise; the charts get a `ChartFrame` of it all and redraw when theirs
changed.

At 80×24 every metric fits without scrolling: a header line (the bar's time, and the
"at cursor" marker) over a two-column table of short labels (`compact_rows`), the
funding block below it when the engine has mark prices, and the alert log under that.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import Counter

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Static

from quanttui.alerts import RuleError, parse_rule
from quanttui.app.widgets.charts import LOWER_TITLES, LOWER_VIEWS, Chart, ChartFrame, warm_up
from quanttui.app.widgets.keys import KeyBar
from quanttui.app.widgets.loglines import DELIVERED_MARK, LogLines
from quanttui.app.widgets.status import status_line
from quanttui.app.widgets.table import Table
from quanttui.config import HEDGES, TIMEFRAMES
from quanttui.engine.events import AlertEvent, AlertWithdrawn, PairInfo, Status, describes
from quanttui.model import Alert, Snapshot, iso_utc
from quanttui.report import compact_funding_rows, compact_rows, metric_value_text
from quanttui.textsafe import printable

WINDOWS = (20, 30, 60, 120, 200, 300, 500, 1000, 2000, 5000)
ALERT_LOG_ROWS = 500
"""The alert log keeps this many lines (the database keeps every alert)."""
ALERT_MARKS = 1000
"""Alert times kept for the z chart's marks (its history holds at most 600 bars)."""

LEFT = ("price_x", "price_y", "beta", "alpha", "r2", "beta_se", "spread", "spread_mean")
LEFT += ("zscore", "corr")
RIGHT = ("adf_stat", "adf_p", "coint_p", "half_life", "return_beta", "return_r2", "bars")
RIGHT += ("kalman_z", "ticks", "gaps")
"""The two columns of the metrics table, row by row."""
COLUMNS = (("l1", 7), ("v1", 11), ("l2", 9), ("v2", 14))
"""(key, width) of the metrics table's columns: label and value, twice."""
FUNDING_ROWS = 5

WINDOW_KEYS = Binding.Group("Window")
ZOOM_KEYS = Binding.Group("Zoom")
CURSOR_KEYS = Binding.Group("Cursor")
END_KEYS = Binding.Group("Ends")
PAGE_KEYS = Binding.Group("Page")


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _alert_key(a: Alert) -> str:
    return f"{a.ts_ms} {a.rule} {a.value:.17g}"


def alert_text(a: Alert) -> str:
    return f"{a.rule} ({metric_value_text(a.metric, a.value)})"


def zoom_levels(n: int, window: int) -> list[int]:
    """The spans `+`/`-` step through: W, 2W, 4W, ... bars, then the whole history `n`."""
    levels = []
    span = max(1, window)
    while span < n:
        levels.append(span)
        span *= 2
    levels.append(max(n, 1))
    return levels


ENGINE_ACTIONS = frozenset(
    {"cycle_timeframe", "window", "cycle_hedge", "swap", "export", "backtest", "edit_rules"}
)


class MonitorScreen(Screen[None]):
    HELP_TITLE = "Monitor keys"
    BINDINGS = [
        Binding(
            "left",
            "cursor(-1)",
            "Cursor",
            key_display="←",
            group=CURSOR_KEYS,
            tooltip="Cursor: ← puts it on the newest bar, then ← → move it one bar, "
            "Home/End to the oldest/newest, PgUp/PgDn a quarter of the span, Esc back to "
            "live; the table shows that bar's values (AT CURSOR) while data keeps coming",
        ),
        Binding("right", "cursor(1)", "Cursor", key_display="→", group=CURSOR_KEYS),
        Binding(
            "home",
            "cursor_end(0)",
            "Oldest",
            key_display="Home",
            group=END_KEYS,
            tooltip="Cursor to the oldest / newest bar loaded",
        ),
        Binding("end", "cursor_end(1)", "Newest", key_display="End", group=END_KEYS),
        Binding(
            "pageup",
            "cursor_page(-1)",
            "Page",
            key_display="PgUp",
            group=PAGE_KEYS,
            tooltip="Cursor a quarter of the chart span back / forward",
        ),
        Binding("pagedown", "cursor_page(1)", "Page", key_display="PgDn", group=PAGE_KEYS),
        Binding(
            "escape", "live", "Live", key_display="Esc", tooltip="Leave the cursor: back to live"
        ),
        Binding(
            "plus,equals_sign",
            "zoom(-1)",
            "Zoom",
            key_display="+",
            group=ZOOM_KEYS,
            tooltip="Zoom the charts in / out: W, 2W, 4W … bars, up to the whole loaded "
            "history (the span is in each chart's title)",
        ),
        Binding("minus", "zoom(1)", "Zoom", key_display="-", group=ZOOM_KEYS),
        Binding(
            "v", "cycle_lower", "Chart", tooltip="Lower chart: z-score → correlation → hedge b"
        ),
        Binding("e", "export", "Export", tooltip="Write CSVs of ticks, bars, analytics and alerts"),
        Binding(
            "t",
            "cycle_timeframe",
            "Bar",
            tooltip="Bar size: 1s → 1m → 5m, recomputed from stored data",
        ),
        Binding(
            "left_square_bracket",
            "window(-1)",
            "Window",
            key_display="[",
            group=WINDOW_KEYS,
            tooltip="Shorter / longer rolling window: " + ", ".join(map(str, WINDOWS)),
        ),
        Binding("right_square_bracket", "window(1)", "Window", key_display="]", group=WINDOW_KEYS),
        Binding("h", "cycle_hedge", "Hedge", tooltip="Hedge ratio: OLS → log → Kalman, recomputed"),
        Binding("s", "swap", "Swap", tooltip="Swap the X and Y legs, recomputed"),
        Binding(
            "p", "toggle_pause", "Pause", tooltip="Pause or resume drawing (ingestion goes on)"
        ),
        Binding("a", "edit_rules", "Rules", tooltip="Add or remove alert rules"),
        Binding(
            "b",
            "backtest",
            "Backtest",
            tooltip="Backtest the z-score strategy over the stored history",
        ),
        Binding("c", "clear_alerts", "Clear", tooltip="Clear the alert log and the chart's marks"),
    ]
    ACTION_HELP = {
        b.action: b.tooltip
        for b in BINDINGS
        if isinstance(b, Binding)
        and b.tooltip
        and b.action
        not in ("cursor(-1)", "cursor_end(0)", "cursor_page(-1)", "live", "zoom(-1)", "zoom(1)")
    }
    """The palette's entries (`QuantApp.get_system_commands`)."""

    paused: reactive[bool] = reactive(False, init=False)
    """Drawing is frozen; trades are still stored and analysed."""

    def __init__(self, key: str, info: PairInfo, mode_label: str, entry_z: float) -> None:
        super().__init__()
        self.key = key
        self.info = info
        self.mode_label = mode_label
        self.entry_z = entry_z
        self.snapshot: Snapshot | None = None
        """The latest snapshot of the pair (what `p` freezes is `frozen`)."""
        self.frozen: Snapshot | None = None
        self.loaded_bars: int | None = None
        self.status: Status | None = None
        self.rules: list[str] = []
        self.span: int | None = None
        """Bars the charts span; None follows the whole loaded history."""
        self.cursor_ms: int | None = None
        """Time of the cursor's bar; None when live."""
        self.lower = "z"
        self.marks: Counter[int] = Counter()
        """Bar times of standing alerts of this pair (the z chart's marks)."""
        self._dirty = False
        self._cells: dict[tuple[str, str], str] = {}
        self._styles: dict[tuple[str, str], str] = {}
        self._values: dict[str, str] = {}
        self._frame: ChartFrame | None = None
        self._next_chart = 0
        self._funding_shown = False

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield Static(id="status")
        with Horizontal(id="body"):
            with Vertical(id="charts"):
                yield Chart("prices", id="chart-prices")
                yield Chart("spread", id="chart-spread")
                yield Chart("lower", id="chart-z")
            with Vertical(id="side"):
                yield Static(id="metrics-head")
                yield Table(
                    id="metrics",
                    show_header=False,
                    cursor_type="none",
                    zebra_stripes=False,
                    cell_padding=0,
                )
                yield LogLines([9, None], limit=ALERT_LOG_ROWS, id="alerts")
        yield KeyBar()

    def on_mount(self) -> None:
        self.call_after_refresh(warm_up)
        metrics = self.query_one("#metrics", DataTable)
        for key, width in COLUMNS:
            metrics.add_column(key, key=key, width=width)
        for i in range(len(LEFT)):
            metrics.add_row(*(Text("") for _ in COLUMNS), key=f"r{i}")
        self.query_one("#alerts", LogLines).border_title = "alerts (UTC)"
        self._fill_table(self._empty())
        self.update_title()
        self.set_interval(1 / 6, self._draw_tick)

    def _empty(self) -> Snapshot:
        i = self.info
        return Snapshot(i.symbol_x, i.symbol_y, i.timeframe, i.window, i.hedge, 0)

    # ----------------------------------------------------------------- events
    def set_info(self, info: PairInfo, bars: int | None = None) -> None:
        """The pair's parameters (at once on a key, so repeated keys step from what was
        asked, and again when the engine reports the recompute with `bars` loaded)."""
        if info != self.info:
            self.info = info
            self.snapshot = self.frozen = None
            self.loaded_bars = None
            self.marks.clear()
            self._frame = None
            self._dirty = True
            self.update_title()
        if bars is not None:
            self.loaded_bars = bars
            self._dirty = True
        self.show_status(self.status)

    def show_snapshot(self, snap: Snapshot) -> None:
        if not describes(self.info, snap):
            return
        self.snapshot = snap
        if not self.paused:
            self._frame = None
            self._dirty = True

    def show_status(self, st: Status | None) -> None:
        self.status = st
        if not self.is_mounted:
            return
        snap = self.shown
        w = self.info.window
        bars = snap.bars if snap is not None else self.loaded_bars
        fill = None if bars is None else (min(bars, w), w)
        z_in = None
        if bars is not None and bars >= w and not _finite(snap.zscore if snap else None):
            need = w if self.info.hedge == "kalman" else 2 * w - 1
            z_in = max(1, need - bars)
        width = self.app.size.width or 80
        legs = (self.info.symbol_x, self.info.symbol_y)
        try:
            line = status_line(st, legs, fill, width, z_in)
            self.query_one("#status", Static).update(line)
        except NoMatches:
            return
        if st is not None:
            table = self.query_one("#metrics", DataTable)
            self._set_metric(table, "ticks", "ticks", f"{st.stored:,}")
            self._set_metric(table, "gaps", "gaps", f"{st.gaps_open} open {st.gaps_filled} fill")

    def show_delivered(self, a: Alert) -> None:
        """The alert reached every notification destination: its log row says so."""
        self.query_one("#alerts", LogLines).mark(_alert_key(a), DELIVERED_MARK)

    def show_alert(self, ev: AlertEvent | AlertWithdrawn) -> None:
        log = self.query_one("#alerts", LogLines)
        a = ev.alert
        rk = _alert_key(a)
        when = (iso_utc(a.ts_ms)[11:19], "")
        if isinstance(ev, AlertWithdrawn):
            if self.marks[a.ts_ms] > 0:
                self.marks[a.ts_ms] -= 1
                if not self.marks[a.ts_ms]:
                    del self.marks[a.ts_ms]
                self._frame = None
            cell = (printable(f"WITHDRAWN {alert_text(a)}"), "strike dim")
            if not log.replace(rk, (when, cell)):
                log.add((when, cell))
            return
        self.marks[a.ts_ms] += 1
        while len(self.marks) > ALERT_MARKS:
            del self.marks[min(self.marks)]
        self._frame = None
        label = alert_text(a) + (" (revised)" if ev.revised else "")
        log.add((when, (printable(label), "")), key=rk)

    # ----------------------------------------------------------------- what is shown
    @property
    def shown(self) -> Snapshot | None:
        """The snapshot on screen: frozen while paused, else the latest."""
        return self.frozen if self.paused and self.frozen is not None else self.snapshot

    def cursor_index(self) -> int | None:
        """The cursor's bar in the shown series (the nearest one still loaded)."""
        snap = self.shown
        if self.cursor_ms is None or snap is None or not len(snap.series):
            return None
        i = bisect.bisect_right(snap.series.ts_ms, self.cursor_ms) - 1
        return max(0, i)

    def cursor_snapshot(self) -> Snapshot | None:
        """The metrics of the cursor's bar, or None when live."""
        i = self.cursor_index()
        snap = self.shown
        if i is None or snap is None:
            return None
        from quanttui.analytics.snapshot import snapshot_at

        return snapshot_at(snap, i)

    def frame(self) -> ChartFrame | None:
        """What the charts show now (see the module docstring)."""
        if self._frame is not None:
            return self._frame
        snap = self.shown
        if snap is None or not len(snap.series):
            return None
        n = len(snap.series)
        span = n if self.span is None else min(self.span, n)
        start, stop = n - span, n
        cursor = self.cursor_index()
        if cursor is not None and cursor < start:
            start = max(0, cursor - span // 4)
            stop = start + span
        self._frame = ChartFrame(
            snap,
            start,
            stop,
            cursor,
            self.lower,
            self.entry_z,
            tuple(sorted(self.marks)),
        )
        return self._frame

    def metric_text(self, key: str) -> str:
        """The value the metrics table shows for `key` (`zscore`, `price_x`, ...)."""
        return self._values.get(key, "")

    @property
    def head_text(self) -> str:
        return str(self.query_one("#metrics-head", Static).render())

    # ----------------------------------------------------------------- drawing
    def update_title(self) -> None:
        i = self.info
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {self.mode_label} ", style="reverse bold")
        t.append(f" {i.symbol_x} -> {i.symbol_y} ", style="bold")
        t.append(f" ({i.symbol_y} = a + b*{i.symbol_x})  ")
        t.append(f"{i.timeframe}  W={i.window}  {i.hedge}", style="bold")
        if self.paused:
            t.append("  PAUSED", style="reverse")
        self.query_one("#title", Static).update(t)

    def _draw_tick(self) -> None:
        """Per tick: the metrics table when what it shows changed (about 1 ms), then one
        chart whose frame is not drawn yet, taking the charts in turn. One plotext chart
        per tick keeps every frame short (each costs 10-20 ms), and the rotation means
        none starves when snapshots come faster than ticks (a fast replay): each stale
        chart redraws within three ticks."""
        if self._dirty:
            self._dirty = False
            with self.app.batch_update():
                self._fill_table(self.cursor_snapshot() or self.shown or self._empty())
                self.show_status(self.status)
            self.refresh_bindings()
        frame = self.frame()
        if frame is None:
            return
        charts = list(self.query(Chart))
        for step in range(len(charts)):
            i = (self._next_chart + step) % len(charts)
            if charts[i].stale(frame):
                charts[i].draw(frame)
                self._next_chart = (i + 1) % len(charts)
                return

    def _fill_table(self, snap: Snapshot) -> None:
        table = self.query_one("#metrics", DataTable)
        cursor = self.cursor_ms is not None and snap is not self.shown
        cells = compact_rows(snap)
        if self.shown is None and self.loaded_bars is None:
            cells["bars"] = (cells["bars"][0], "—")  # nothing loaded: no window fill yet
        for key in (*LEFT, *RIGHT):
            if key in cells:
                label, value = cells[key]
                self._set_metric(table, key, label, value, "bold" if key == "zscore" else "")
        head = Text(no_wrap=True, overflow="ellipsis")
        when = "—" if snap.time_ms is None else iso_utc(snap.time_ms)[:19].replace("T", " ")
        if cursor:
            live = self.shown
            back = 0 if live is None else live.bars - snap.bars
            head.append(" AT CURSOR ", style="reverse bold")
            if live is not None and live.time_ms is not None and snap.time_ms is not None:
                if iso_utc(live.time_ms)[:10] == iso_utc(snap.time_ms)[:10]:
                    when = when[11:]
            head.append(f" {when} UTC  {back} bars ago")
        else:
            head.append(f" Last bar {when} UTC", style="bold")
        self.query_one("#metrics-head", Static).update(head)
        live = self.shown
        if live is not None and live.funding is not None:
            self._fill_funding(table, live, dim=cursor)

    def _fill_funding(self, table: DataTable, snap: Snapshot, dim: bool) -> None:
        if not self._funding_shown:
            self._funding_shown = True
            for i in range(FUNDING_ROWS):
                table.add_row(*(Text("") for _ in COLUMNS), key=f"f{i}")
        style = "dim" if dim else ""
        for i, (left, right) in enumerate(compact_funding_rows(snap)):
            for (key, label, value), (lc, vc) in zip(
                (left, right), (("l1", "v1"), ("l2", "v2")), strict=True
            ):
                self._values[key] = value
                self._set_cell(table, f"f{i}", lc, label if lc == "l1" else f" {label}", style)
                self._set_cell(table, f"f{i}", vc, value, style, right=True)

    def _set_metric(
        self, table: DataTable, key: str, label: str, value: str, style: str = ""
    ) -> None:
        if key in LEFT:
            row, lc, vc = f"r{LEFT.index(key)}", "l1", "v1"
        else:
            row, lc, vc = f"r{RIGHT.index(key)}", "l2", "v2"
            label = f" {label}"
        self._values[key] = value
        self._set_cell(table, row, lc, label, "dim")
        self._set_cell(table, row, vc, value, style, right=True)

    def _set_cell(
        self, table: DataTable, row: str, column: str, value: str, style: str = "", right=False
    ) -> None:
        """Touch a cell only when its text changes: every update re-renders the row, and
        at 5k trades/s the metrics table was the largest part of a frame."""
        if self._cells.get((row, column)) != value or self._styles.get((row, column)) != style:
            self._cells[(row, column)] = value
            self._styles[(row, column)] = style
            table.update_cell(
                row, column, Text(value, style=style, justify="right" if right else "left")
            )

    def watch_paused(self, paused: bool) -> None:
        self.frozen = self.snapshot if paused else None
        self.update_title()
        self._frame = None
        self._dirty = True

    def _moved(self) -> None:
        self._frame = None
        self._dirty = True
        self._draw_tick()
        self.refresh_bindings()

    # ----------------------------------------------------------------- keys
    CURSOR_HIDES = frozenset(
        "export cycle_timeframe window(-1) window(1) cycle_hedge swap edit_rules backtest "
        "clear_alerts".split()
    )

    def bar_hides(self) -> frozenset[str]:
        """In cursor mode the key bar leaves out the keys that do not concern the cursor
        (they still act; `?` lists them)."""
        return frozenset() if self.cursor_ms is None else self.CURSOR_HIDES

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that do nothing now are left out of the key bar: → and the cursor's
        other keys and Esc outside cursor mode; `+`/`-` are shown dim at their ends, and
        the keys that command the engine until it has started (after the first frame)."""
        if action in ENGINE_ACTIONS and not self.app.started:
            return None
        live = self.cursor_ms is None
        if action == "cursor":
            return not (live and parameters and parameters[0] == 1)
        if action in ("cursor_end", "cursor_page", "live"):
            return not live
        if action == "zoom":
            snap = self.shown
            if snap is None:
                return None
            levels = zoom_levels(len(snap.series), self.info.window)
            now = levels[-1] if self.span is None else min(self.span, levels[-1])
            step = parameters[0] if parameters else 0
            if (step < 0 and now <= levels[0]) or (step > 0 and now >= levels[-1]):
                return None
        return True

    def _cursor_to(self, i: int) -> None:
        snap = self.shown
        if snap is None or not len(snap.series):
            return
        ts = snap.series.ts_ms
        self.cursor_ms = ts[max(0, min(len(ts) - 1, i))]
        self._moved()

    def action_cursor(self, step: int) -> None:
        i = self.cursor_index()
        snap = self.shown
        if snap is None or not len(snap.series):
            return
        self._cursor_to(len(snap.series) - 1 if i is None else i + step)

    def action_cursor_end(self, newest: int) -> None:
        snap = self.shown
        if snap is not None:
            self._cursor_to(len(snap.series) - 1 if newest else 0)

    def action_cursor_page(self, direction: int) -> None:
        i = self.cursor_index()
        frame = self.frame()
        if i is None or frame is None:
            return
        self._cursor_to(i + direction * max(1, frame.bars // 4))

    def action_live(self) -> None:
        self.cursor_ms = None
        self._moved()

    def action_zoom(self, step: int) -> None:
        """`step` < 0 zooms in (fewer bars), > 0 out, between W bars and everything."""
        snap = self.shown
        if snap is None or not len(snap.series):
            return
        levels = zoom_levels(len(snap.series), self.info.window)
        now = levels[-1] if self.span is None else min(self.span, levels[-1])
        if step < 0:
            nxt = next((v for v in reversed(levels) if v < now), levels[0])
        else:
            nxt = next((v for v in levels if v > now), levels[-1])
        self.span = None if nxt >= levels[-1] else nxt
        self._moved()

    def action_cycle_lower(self) -> None:
        self.lower = LOWER_VIEWS[(LOWER_VIEWS.index(self.lower) + 1) % len(LOWER_VIEWS)]
        self.notify(f"lower chart: {LOWER_TITLES[self.lower]}", timeout=2)
        self._moved()

    def set_params(self, **changes: object) -> None:
        """Ask the engine for new parameters (recomputed from the database) and show them."""
        self.app.command("set_params", self.key, **changes)
        i = self.info
        if changes.pop("swap", False):
            changes.update(symbol_x=i.symbol_y, symbol_y=i.symbol_x)
        self.set_info(dataclasses.replace(i, **changes))

    def action_cycle_timeframe(self) -> None:
        tfs = list(TIMEFRAMES)
        self.set_params(timeframe=tfs[(tfs.index(self.info.timeframe) + 1) % len(tfs)])

    def action_window(self, step: int) -> None:
        w = self.info.window
        if step > 0:
            nxt = next((v for v in WINDOWS if v > w), w)
        else:
            nxt = next((v for v in reversed(WINDOWS) if v < w), w)
        if nxt != w:
            self.set_params(window=nxt)

    def action_cycle_hedge(self) -> None:
        self.set_params(hedge=HEDGES[(HEDGES.index(self.info.hedge) + 1) % len(HEDGES)])

    def action_swap(self) -> None:
        self.set_params(swap=True)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused

    def action_clear_alerts(self) -> None:
        self.query_one("#alerts", LogLines).clear()
        self.marks.clear()
        self._frame = None

    def action_export(self) -> None:
        self.notify("exporting…", timeout=2)
        self.app.command("export", [self.key])

    def action_backtest(self) -> None:
        self.app.open_backtest(self.key)

    def action_edit_rules(self) -> None:
        from quanttui.app.screens.rules import RulesScreen

        self.app.push_screen(RulesScreen(lambda: list(self.rules), self.add_rule, self.remove_rule))

    def add_rule(self, text: str) -> bool:
        """Checked here (the parser is pure) so the dialog answers at once; the engine
        applies it."""
        a = self.app.config.analytics
        try:
            rule = parse_rule(text, entry_z=a.entry_z, exit_z=a.exit_z)
        except RuleError as exc:
            self.notify(str(exc), title="Rule not added", severity="error", markup=False)
            return False
        if rule.text in self.rules:
            self.notify(f"already there: {rule.text}", severity="warning", markup=False)
            return False
        self.rules.append(rule.text)
        self.app.command("add_rule", rule.text, self.key)
        self.notify(f"rule added: {rule.text}", markup=False)
        return True

    def remove_rule(self, text: str) -> bool:
        if text not in self.rules:
            return False
        self.rules.remove(text)
        self.app.command("remove_rule", text, self.key)
        self.notify(f"rule removed: {text}", markup=False)
        return True
