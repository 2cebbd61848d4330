"""The single-pair monitor: header, status, three charts, metrics table, alert log.

A view of one engine pair: it renders the engine's events and turns keys into engine
commands (`QuantApp.command`); it holds no pipeline of its own. Drawing happens on a
1/6 s timer, one piece per tick (see `_render`), and can be paused; ingestion never
pauses.
"""

from __future__ import annotations

import dataclasses

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from quanttui.alerts import RuleError, parse_rule
from quanttui.app.widgets.charts import Chart
from quanttui.app.widgets.status import status_line
from quanttui.config import HEDGES, TIMEFRAMES
from quanttui.engine.events import AlertEvent, AlertWithdrawn, PairInfo, Status
from quanttui.model import Alert, Snapshot, iso_utc
from quanttui.report import snapshot_rows
from quanttui.textsafe import printable

WINDOWS = (20, 30, 60, 120, 200, 300, 500, 1000, 2000, 5000)
ALERT_LOG_ROWS = 500
"""The alert log keeps this many lines (the database keeps every alert)."""


def alert_text(a: Alert) -> str:
    return f"{a.rule} ({a.value:+.4g})"


class MonitorScreen(Screen[None]):
    BINDINGS = [
        Binding("e", "export", "Export"),
        Binding("t", "cycle_timeframe", "Timeframe"),
        Binding("left_square_bracket", "window(-1)", "Window-", key_display="["),
        Binding("right_square_bracket", "window(1)", "Window+", key_display="]"),
        Binding("h", "cycle_hedge", "Hedge"),
        Binding("s", "swap", "Swap"),
        Binding("p", "toggle_pause", "Pause"),
        Binding("a", "edit_rules", "Rules"),
        Binding("b", "backtest", "Backtest"),
        Binding("c", "clear_alerts", "Clear"),
    ]
    ACTION_HELP = {
        "export": "Write CSVs of ticks, bars, analytics and alerts",
        "cycle_timeframe": "Cycle the bar size 1s / 1m / 5m and recompute",
        "window(-1)": "Shorter rolling window and recompute",
        "window(1)": "Longer rolling window and recompute",
        "cycle_hedge": "Cycle hedge ratio OLS / log / Kalman and recompute",
        "swap": "Swap the X and Y legs and recompute",
        "toggle_pause": "Pause or resume drawing (ingestion goes on)",
        "edit_rules": "Add or remove alert rules",
        "backtest": "Backtest the z-score strategy over the stored history",
        "clear_alerts": "Clear the alert log",
    }

    paused: reactive[bool] = reactive(False, init=False)
    """Drawing is frozen; trades are still stored and analysed."""

    def __init__(self, key: str, info: PairInfo, mode_label: str, entry_z: float) -> None:
        super().__init__()
        self.key = key
        self.info = info
        self.mode_label = mode_label
        self.entry_z = entry_z
        self.snapshot: Snapshot | None = None
        self.loaded_bars: int | None = None
        self.status: Status | None = None
        self.rules: list[str] = []
        self._dirty = False
        self._cells: dict[tuple[str, str], str] = {}
        self._drawn: dict[str | None, Snapshot] = {}
        self._next_chart = 0
        self._alert_rows: dict[tuple[int, str, str], str] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield Static(id="status")
        with Horizontal(id="body"):
            with Vertical(id="charts"):
                yield Chart("prices (base 100)", id="chart-prices")
                yield Chart("spread and mean", id="chart-spread")
                yield Chart("z-score", id="chart-z")
            with Vertical(id="side"):
                yield DataTable(
                    id="metrics", show_header=False, cursor_type="none", zebra_stripes=False
                )
                yield DataTable(id="alerts", cursor_type="none")
        yield Footer()

    def on_mount(self) -> None:
        metrics = self.query_one("#metrics", DataTable)
        metrics.add_column("metric", key="label", width=14)
        metrics.add_column("value", key="value", width=21)
        i = self.info
        empty = Snapshot(i.symbol_x, i.symbol_y, i.timeframe, i.window, i.hedge, 0)
        for key, label, value in snapshot_rows(empty):
            metrics.add_row(Text(label), Text(value), key=key)
        for key, label in (("ticks", "Ticks stored"), ("gaps", "Gaps open/fill")):
            metrics.add_row(Text(label), Text("—"), key=key)
        alerts = self.query_one("#alerts", DataTable)
        alerts.add_column("time", key="time")
        alerts.add_column("alert", key="alert")
        self.update_title()
        self.set_interval(1 / 6, self._draw_tick)

    # ----------------------------------------------------------------- events
    def set_info(self, info: PairInfo, bars: int | None = None) -> None:
        """The pair's parameters (at once on a key, so repeated keys step from what was
        asked, and again when the engine reports the recompute with `bars` loaded)."""
        if info != self.info:
            self.info = info
            self.snapshot = None
            self.loaded_bars = None
            self._drawn.clear()
            self.update_title()
        if bars is not None:
            self.loaded_bars = bars
        self.show_status(self.status)

    def show_snapshot(self, snap: Snapshot) -> None:
        i = self.info
        if (snap.symbol_x, snap.symbol_y, snap.timeframe, snap.window, snap.hedge) != (
            i.symbol_x,
            i.symbol_y,
            i.timeframe,
            i.window,
            i.hedge,
        ):
            return
        self.snapshot = snap
        self._dirty = True

    def show_status(self, st: Status | None) -> None:
        self.status = st
        if not self.is_mounted:
            return
        snap = self.snapshot
        w = self.info.window
        bars = snap.bars if snap is not None else self.loaded_bars
        fill = None if bars is None else (min(bars, w), w)
        width = self.app.size.width or 80
        legs = (self.info.symbol_x, self.info.symbol_y)
        try:
            self.query_one("#status", Static).update(status_line(st, legs, fill, width))
        except NoMatches:
            return
        if st is not None:
            table = self.query_one("#metrics", DataTable)
            self._set_cell(table, "ticks", "value", f"{st.stored:,}")
            self._set_cell(table, "gaps", "value", f"{st.gaps_open} / {st.gaps_filled}")

    def show_alert(self, ev: AlertEvent | AlertWithdrawn) -> None:
        table = self.query_one("#alerts", DataTable)
        a = ev.alert
        rk = (a.ts_ms, a.rule, f"{a.value:.17g}")
        if isinstance(ev, AlertWithdrawn):
            row = self._alert_rows.get(rk)
            text = Text(f"WITHDRAWN {alert_text(a)}", style="strike dim")
            if row is not None and row in table.rows:
                table.update_cell(row, "alert", text)
            else:
                table.add_row(Text(iso_utc(a.ts_ms)[11:19]), text)
            return
        label = alert_text(a) + (" (revised)" if ev.revised else "")
        row = table.add_row(Text(iso_utc(a.ts_ms)[11:19]), Text(printable(label)))
        self._alert_rows[rk] = row.value
        while table.row_count > ALERT_LOG_ROWS:
            first = next(iter(table.rows))
            table.remove_row(first)
        if len(self._alert_rows) > 2 * ALERT_LOG_ROWS:
            self._alert_rows = dict(list(self._alert_rows.items())[-ALERT_LOG_ROWS:])
        table.scroll_end(animate=False)

    # ----------------------------------------------------------------- drawing
    def update_title(self) -> None:
        i = self.info
        t = Text()
        t.append(f" {self.mode_label} ", style="reverse bold")
        t.append(f" {i.symbol_x} -> {i.symbol_y} ", style="bold")
        t.append(f" ({i.symbol_y} = a + b*{i.symbol_x})  ")
        t.append(f"{i.timeframe}  W={i.window}  {i.hedge}", style="bold")
        if self.paused:
            t.append("  PAUSED", style="reverse")
        self.query_one("#title", Static).update(t)

    def _draw_tick(self) -> None:
        """Per tick: the metrics table when the snapshot changed (about 1 ms), then one
        chart that does not show the latest snapshot yet, taking the charts in turn.
        One plotext chart per tick keeps every frame short (the three together cost
        about as much as the 50 ms frame budget at 5k trades/s), and the rotation means
        none starves when snapshots come faster than ticks (a fast replay): each stale
        chart redraws within three ticks."""
        if self.paused or self.snapshot is None:
            return
        snap = self.snapshot
        if self._dirty:
            self._dirty = False
            table = self.query_one("#metrics", DataTable)
            with self.app.batch_update():
                for key, _label, value in snapshot_rows(snap):
                    self._set_cell(table, key, "value", value)
                self._set_cell(table, "price_x", "label", snap.symbol_x)
                self._set_cell(table, "price_y", "label", snap.symbol_y)
        charts = list(self.query(Chart))
        for step in range(len(charts)):
            i = (self._next_chart + step) % len(charts)
            if self._drawn.get(charts[i].id) is not snap:
                self._drawn[charts[i].id] = snap
                charts[i].draw(snap, self.entry_z)
                self._next_chart = (i + 1) % len(charts)
                return

    def _set_cell(self, table: DataTable, row: str, column: str, value: str) -> None:
        """Touch a cell only when its text changes: every update re-renders the row, and
        at 5k trades/s the metrics table was the largest part of a frame."""
        if self._cells.get((row, column)) != value:
            self._cells[(row, column)] = value
            table.update_cell(row, column, Text(value))

    def watch_paused(self, paused: bool) -> None:
        self.update_title()
        if not paused:
            self._dirty = True

    # ----------------------------------------------------------------- keys
    def _set(self, **changes: object) -> None:
        engine = self.app.engine
        self.app.command(engine.set_params(self.key, **changes))
        i = self.info
        if changes.pop("swap", False):
            changes.update(symbol_x=i.symbol_y, symbol_y=i.symbol_x)
        self.set_info(dataclasses.replace(i, **changes))

    def action_cycle_timeframe(self) -> None:
        tfs = list(TIMEFRAMES)
        self._set(timeframe=tfs[(tfs.index(self.info.timeframe) + 1) % len(tfs)])

    def action_window(self, step: int) -> None:
        w = self.info.window
        if step > 0:
            nxt = next((v for v in WINDOWS if v > w), w)
        else:
            nxt = next((v for v in reversed(WINDOWS) if v < w), w)
        if nxt != w:
            self._set(window=nxt)

    def action_cycle_hedge(self) -> None:
        self._set(hedge=HEDGES[(HEDGES.index(self.info.hedge) + 1) % len(HEDGES)])

    def action_swap(self) -> None:
        self._set(swap=True)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused

    def action_clear_alerts(self) -> None:
        self.query_one("#alerts", DataTable).clear()
        self._alert_rows.clear()

    def action_export(self) -> None:
        self.notify("exporting…", timeout=2)
        self.app.command(self.app.engine.export([self.key]))

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
        self.app.command_call(self.app.engine.add_rule, rule.text, self.key)
        self.notify(f"rule added: {rule.text}", markup=False)
        return True

    def remove_rule(self, text: str) -> bool:
        if text not in self.rules:
            return False
        self.rules.remove(text)
        self.app.command_call(self.app.engine.remove_rule, text, self.key)
        self.notify(f"rule removed: {text}", markup=False)
        return True
