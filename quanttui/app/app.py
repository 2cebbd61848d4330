"""The Textual monitor: wires feed, storage and analytics together with workers and messages.

Threads and tasks:

* the ingestion session (feed + single writer) runs as tasks on the app's event loop;
  each trade batch is stored and fed to the `LivePair` in memory (O(1) per bar);
* a 5 Hz clock closes bars when time passes their end;
* rebuilding from the database (start-up, timeframe/window/hedge change, swap) runs in a
  thread worker and posts `PairRebuilt`; trades that arrive meanwhile are replayed into
  the new pipeline from a bounded buffer, so nothing is skipped at the seam;
* ADF and coint run in a thread worker at most once per closed bar and post
  `StationarityComputed`;
* drawing is throttled to 4 Hz and can be paused; ingestion never pauses.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import signal
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from quanttui.alerts import AlertEngine, RuleError, build_engine, parse_rule
from quanttui.analytics.backtest import BacktestParams, BacktestReport, backtest_bars
from quanttui.analytics.live import (
    LivePair,
    PairParams,
    ResyncTimer,
    StallGuard,
)
from quanttui.analytics.snapshot import build_snapshot
from quanttui.analytics.stationarity import Stationarity, stationarity, warm_up
from quanttui.app.messages import (
    AlertsFired,
    BackfillFinished,
    BacktestFinished,
    ExportFinished,
    PairRebuilt,
    SnapshotReady,
    StationarityComputed,
)
from quanttui.app.screens.backtest import BacktestScreen
from quanttui.app.screens.rules import RulesScreen
from quanttui.app.widgets.charts import Chart
from quanttui.config import HEDGES, TIMEFRAMES, Config
from quanttui.export import ExportError, export_backtest, export_pair
from quanttui.feed.backfill import BackfillProgress
from quanttui.feed.binance import SymbolError, now_ms
from quanttui.feed.ingest import Ingestion
from quanttui.feed.replay import Replay, ReplaySpec, open_feed
from quanttui.model import Alert, Snapshot, Tick, iso_utc
from quanttui.report import snapshot_rows
from quanttui.store.db import connect
from quanttui.store.queries import load_pair_bars, tick_counts
from quanttui.store.writer import INSERT_ALERT
from quanttui.textsafe import printable

WINDOWS = (20, 30, 60, 120, 200, 300, 500, 1000, 2000, 5000)
STALE_LEG_S = 30.0


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class QuantApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "quanttui"
    BINDINGS = [
        Binding("e", "export", "Export CSV"),
        Binding("t", "cycle_timeframe", "Timeframe"),
        Binding("left_square_bracket", "window(-1)", "Window -", key_display="["),
        Binding("right_square_bracket", "window(1)", "Window +", key_display="]"),
        Binding("h", "cycle_hedge", "Hedge"),
        Binding("s", "swap", "Swap legs"),
        Binding("p", "toggle_pause", "Pause"),
        Binding("a", "edit_rules", "Rules"),
        Binding("b", "backtest", "Backtest"),
        Binding("c", "clear_alerts", "Clear alerts"),
        Binding("question_mark", "show_help_panel", "Keys", key_display="?"),
        Binding("q", "quit", "Quit"),
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
        "quit": "Flush the database and quit",
    }

    paused: reactive[bool] = reactive(False, init=False)
    """Drawing is frozen; trades are still stored and analysed."""
    feed_state: reactive[str] = reactive("connecting", init=False)
    """connecting, live, reconnecting, stale, offline or stopped."""

    def __init__(
        self,
        config: Config,
        symbol_x: str,
        symbol_y: str,
        *,
        extra_rules: Iterable[str] = (),
        replay: ReplaySpec | None = None,
    ) -> None:
        super().__init__()
        self.replay = replay
        self.config = config
        a = config.analytics
        self.params = PairParams(
            symbol_x, symbol_y, a.timeframe, a.window, a.hedge, a.kalman_delta, a.kalman_obs_var
        )
        self.mode_label = replay.label if replay else "LIVE"
        self.rules_text = list(config.alerts.rules) + list(extra_rules)
        self.alert_engine = self._make_alert_engine(default=True)
        self.rules_text = [r.text for r in self.alert_engine.rules]
        self.pair: LivePair | None = None
        self.stat = Stationarity()
        self.stat_ts: int | None = None
        self.generation = 0
        self.recent: deque[Tick] = deque(maxlen=500_000)
        """Trades that arrive while a rebuild is in flight (only then), replayed into the
        new pipeline at the seam."""
        self.ingestion: Ingestion | Replay | None = None
        self.feed_detail = ""
        self.snapshot: Snapshot | None = None
        self._dirty = False
        self._last_leg_rx: dict[str, float] = {}
        self._rate_window: deque[tuple[float, int]] = deque(maxlen=32)
        self._ticks_total = 0
        self._stopped = False
        self._stored_base = 0
        self.backtest_screen: BacktestScreen | None = None
        self._stall_guard = StallGuard(0.2)
        self.resync = ResyncTimer()
        self.backfill_progress: BackfillProgress | None = None
        self._cells: dict[tuple[str, str], str] = {}
        self._drawn: dict[str | None, Snapshot] = {}
        self._next_chart = 0

    # ----------------------------------------------------------------- layout
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

    def _make_alert_engine(self, *, default: bool = False) -> AlertEngine:
        a, al = self.config.analytics, self.config.alerts
        return build_engine(
            self.params.pair,
            self.rules_text,
            entry_z=a.entry_z,
            exit_z=a.exit_z,
            hysteresis=al.hysteresis,
            cooldown_s=al.cooldown_s,
            default=default,
        )

    def on_mount(self) -> None:
        metrics = self.query_one("#metrics", DataTable)
        metrics.add_column("metric", key="label", width=14)
        metrics.add_column("value", key="value", width=21)
        for key, label, value in snapshot_rows(self._empty_snapshot()):
            metrics.add_row(Text(label), Text(value), key=key)
        for key, label in (("ticks", "Ticks stored"), ("gaps", "Gaps open/fill")):
            metrics.add_row(Text(label), Text("—"), key=key)
        alerts = self.query_one("#alerts", DataTable)
        alerts.add_column("time", key="time")
        alerts.add_column("alert", key="alert")
        self._update_title()
        self._update_status()
        self.ingestion = open_feed(
            self.config,
            [self.params.symbol_x, self.params.symbol_y],
            self.replay,
            on_ticks=self._on_ticks,
            on_state=self._on_feed_state,
        )
        self.run_worker(warm_up, thread=True, group="warmup", exit_on_error=False)
        self.ingest()
        self.request_rebuild()
        self.set_interval(0.2, self._clock)
        self.set_interval(1 / 6, self._render)
        self.set_interval(1.0, self._update_status)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, lambda: self.call_later(self.action_quit))

    def _empty_snapshot(self) -> Snapshot:
        p = self.params
        return Snapshot(p.symbol_x, p.symbol_y, p.timeframe, p.window, p.hedge, 0)

    def _update_title(self) -> None:
        p = self.params
        t = Text()
        t.append(f" {self.mode_label} ", style="reverse bold")
        t.append(f" {p.symbol_x} -> {p.symbol_y} ", style="bold")
        t.append(f" ({p.symbol_y} = a + b*{p.symbol_x})  ")
        t.append(f"{p.timeframe}  W={p.window}  {p.hedge}", style="bold")
        if self.paused:
            t.append("  PAUSED", style="reverse")
        self.query_one("#title", Static).update(t)

    # ----------------------------------------------------------------- ingestion
    @work(exclusive=True, group="feed", exit_on_error=False)
    async def ingest(self) -> None:
        ing = self.ingestion
        assert ing is not None
        await ing.start()
        try:
            warning = await ing.check_symbols()
        except SymbolError as exc:
            await self._stop_ingestion()
            self.exit(2, message=Text(f"quanttui: error: {printable(exc, 1000, one_line=True)}"))
            return
        if warning:
            self.notify(
                printable(warning),
                title="Symbols not verified",
                severity="warning",
                markup=False,
            )
        self._start_backfill()

    def _start_backfill(self) -> None:
        if not isinstance(self.ingestion, Ingestion) or self._stopped:
            return
        self.backfill_progress = None
        p = self.params
        self.ingestion.start_backfill(p.timeframe, p.window, self._on_backfill)

    def _on_backfill(self, progress: BackfillProgress) -> None:
        self.backfill_progress = progress
        if progress.state in ("done", "skipped", "off"):
            self.post_message(BackfillFinished(progress.state, progress.rows, progress.detail))

    def on_backfill_finished(self, msg: BackfillFinished) -> None:
        if msg.state == "skipped":
            self.notify(
                f"backfill skipped, using stored data: {printable(msg.detail)}",
                title="Warm start",
                severity="warning",
                markup=False,
            )
        elif msg.state == "done" and msg.rows:
            self.request_rebuild()

    def _on_feed_state(self, state: str, detail: str) -> None:
        self.feed_detail = detail
        self.feed_state = state

    def _on_ticks(self, ticks: list[Tick]) -> None:
        if self.pair is None:
            self.recent.extend(ticks)
        now = time.monotonic()
        for t in ticks:
            self._last_leg_rx[t.symbol] = now
        self._ticks_total += len(ticks)
        if self.pair is not None:
            diverged = self.pair.diverged
            closed = self.pair.add(ticks)
            self.resync.watch(self.pair, diverged)
            if closed:
                self._bars_closed()

    def now(self) -> int:
        """Wall-clock ms, or the replay clock in a replay."""
        if isinstance(self.ingestion, Replay):
            return self.ingestion.now_ms()
        return now_ms()

    def _clock(self) -> None:
        if not self._stall_guard.ready():
            return
        self._resync_if_due()
        if isinstance(self.ingestion, Replay) and self.ingestion.now_ms() == 0:
            return
        pair = self.pair
        if pair is not None:
            diverged = pair.diverged
            if pair.advance(self.now()):
                self._bars_closed()
            self.resync.watch(pair, diverged)

    def _resync_if_due(self) -> None:
        """Recompute once the live bars have parted from the database's (see
        `LivePair.diverged`) and trades stop arriving late. Late trades (REST backfill of
        the trades missed during a disconnect or a stall) are stored but cannot change
        bars the clock already closed; a recompute from the database puts them in."""
        if self.pair is not None and self.resync.ready():
            self.request_rebuild(resync=True)

    # ----------------------------------------------------------------- analytics
    def request_rebuild(self, *, resync: bool = False) -> None:
        """Recompute from the database. A `resync` (same parameters) keeps showing the
        last stationarity tests until the recomputed ones arrive."""
        self.generation += 1
        self.pair = None
        if not resync:
            self.stat = Stationarity()
            self.stat_ts = None
        self._rebuild(self.params, self.generation)

    @work(exclusive=True, group="rebuild", exit_on_error=False)
    async def _rebuild(self, params: PairParams, generation: int) -> None:
        """Recompute from the database without a seam. Trades received before the request
        are committed first, so the load sees them; closed bars come from the stored
        history and the open bucket from its stored trades, and trades that arrive
        meanwhile (buffered in `recent`) are added unless the load already held them
        (same symbol and trade id)."""
        end = self.now()
        end -= end % params.timeframe_ms
        await self._commit_received()
        pair, seen, stored = await asyncio.to_thread(self._load_pair, params, end)
        self.post_message(PairRebuilt(pair, generation, end, stored, seen))

    async def _commit_received(self) -> None:
        """Wait (up to 5 s) until everything received so far is committed."""
        if self.ingestion is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.ingestion.writer.flush()

    def _load_pair(
        self, params: PairParams, end: int
    ) -> tuple[LivePair, set[tuple[str, int]], int]:
        conn = connect(self.config.db_path, readonly=True)
        try:
            pair, seen = LivePair.resume(conn, params, end)
            stored = sum(tick_counts(conn, [params.symbol_x, params.symbol_y]).values())
        finally:
            conn.close()
        return pair, seen, stored

    def on_pair_rebuilt(self, msg: PairRebuilt) -> None:
        if msg.generation != self.generation:
            return
        pair = msg.pair
        self._stored_base = msg.stored_ticks - (
            self.ingestion.writer.inserted if self.ingestion else 0
        )
        pending = [
            t
            for t in self.recent
            if t.ts_ms >= msg.end_ms and (t.symbol, t.trade_id) not in msg.seen
        ]
        self.recent.clear()
        pending.sort(key=lambda t: (t.ts_ms, t.trade_id))
        pair.add(pending)
        if self.now():
            pair.advance(self.now())
        self.pair = pair
        self._bars_closed()
        self._freeze_heap()

    def _freeze_heap(self) -> None:
        """Move what exists now (modules, widgets, the loaded pipeline) out of the cyclic
        GC's reach. A full collection otherwise walks every one of those objects and, with
        trades arriving at thousands per second, stalled the UI for up to 200 ms. Run after
        each load and after the statsmodels import, without a collection first (that would
        itself stall a frame); frozen objects are still freed by reference counting, only
        cyclic garbage present at that instant is kept."""
        gc.freeze()

    def _bars_closed(self) -> None:
        pair = self.pair
        if pair is None or pair.engine.last is None:
            return
        last = pair.engine.last.ts_ms
        if self.stat_ts != last and len(pair.engine.window_spread) == pair.params.window:
            e = pair.engine
            self._stationarity(
                list(e.window_spread), list(e.window_x), list(e.window_y), last, self.generation
            )
        self._publish()

    @work(thread=True, exclusive=True, group="stationarity", exit_on_error=False)
    def _stationarity(
        self, s: list[float], x: list[float], y: list[float], ts: int, generation: int
    ) -> None:
        self.post_message(StationarityComputed(ts, generation, stationarity(s, x, y)))

    def on_stationarity_computed(self, msg: StationarityComputed) -> None:
        if msg.generation != self.generation:
            return
        self.stat, self.stat_ts = msg.result, msg.ts_ms
        self._publish()

    def _publish(self) -> None:
        pair = self.pair
        if pair is None:
            return
        p = pair.params
        snap = build_snapshot(
            pair.engine, p.symbol_x, p.symbol_y, p.timeframe, self.stat, run_tests=False
        )
        if snap.time_ms is not None:
            fired = self.alert_engine.evaluate(snap.metrics(), snap.time_ms)
            if fired:
                self.post_message(AlertsFired(fired))
        self.post_message(SnapshotReady(snap))

    def on_snapshot_ready(self, msg: SnapshotReady) -> None:
        self.snapshot = msg.snapshot
        self._dirty = True

    # ----------------------------------------------------------------- alerts
    async def on_alerts_fired(self, msg: AlertsFired) -> None:
        table = self.query_one("#alerts", DataTable)
        for a in msg.alerts:
            self._log_alert(table, a)
            if self.ingestion is not None:
                await self.ingestion.writer.execute(
                    INSERT_ALERT, (a.ts_ms, a.pair, a.rule, a.metric, a.value, a.threshold)
                )
            self.notify(
                f"{a.rule}: {a.value:.4g}",
                title=f"Alert {a.pair}",
                severity="warning",
                markup=False,
            )
        if self.config.alerts.bell:
            self.bell()

    def _log_alert(self, table: DataTable, a: Alert) -> None:
        table.add_row(Text(iso_utc(a.ts_ms)[11:19]), Text(f"{a.rule} ({a.value:.4g})"))
        table.scroll_end(animate=False)

    def add_rule(self, text: str) -> bool:
        a = self.config.analytics
        try:
            rule = parse_rule(text, entry_z=a.entry_z, exit_z=a.exit_z)
        except RuleError as exc:
            self.notify(printable(exc), title="Rule not added", severity="error", markup=False)
            return False
        if not self.alert_engine.add(rule):
            self.notify(f"already there: {rule.text}", severity="warning", markup=False)
            return False
        self.rules_text.append(rule.text)
        self.notify(f"rule added: {rule.text}", markup=False)
        return True

    def remove_rule(self, text: str) -> bool:
        if not self.alert_engine.remove(text):
            return False
        self.rules_text = [r.text for r in self.alert_engine.rules]
        self.notify(f"rule removed: {text}", markup=False)
        return True

    def action_edit_rules(self) -> None:
        self.push_screen(
            RulesScreen(lambda: list(self.rules_text), self.add_rule, self.remove_rule)
        )

    # ----------------------------------------------------------------- drawing
    def _render(self) -> None:
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
            with self.batch_update():
                for key, _label, value in snapshot_rows(snap):
                    self._set_cell(table, key, "value", value)
                self._set_cell(table, "price_x", "label", snap.symbol_x)
                self._set_cell(table, "price_y", "label", snap.symbol_y)
        charts = list(self.query(Chart))
        for step in range(len(charts)):
            i = (self._next_chart + step) % len(charts)
            if self._drawn.get(charts[i].id) is not snap:
                self._drawn[charts[i].id] = snap
                charts[i].draw(snap, self.config.analytics.entry_z)
                self._next_chart = (i + 1) % len(charts)
                return

    def _set_cell(self, table: DataTable, row: str, column: str, value: str) -> None:
        """Touch a cell only when its text changes: every update re-renders the row, and
        at 5k trades/s the metrics table was the largest part of a frame."""
        if self._cells.get((row, column)) != value:
            self._cells[(row, column)] = value
            table.update_cell(row, column, Text(value))

    def _update_status(self) -> None:
        now = time.monotonic()
        self._rate_window.append((now, self._ticks_total))
        t0, n0 = self._rate_window[0]
        rate = (self._ticks_total - n0) / (now - t0) if now > t0 else 0.0
        state = self.feed_state
        style = {
            "live": "bold green",
            "replay": "bold cyan",
            "stale": "bold yellow",
            "reconnecting": "bold yellow",
        }.get(state, "bold red")
        if state in ("connecting", "finished"):
            style = "bold"
        t = Text()
        t.append(f" {state.upper()} ", style=f"reverse {style}")
        if isinstance(self.ingestion, Replay) and self.ingestion.now_ms():
            r = self.ingestion
            t.append(f" {r.speed:g}x " if r.speed else " max ", style="bold")
            t.append(f"{iso_utc(r.now_ms())[:19].replace('T', ' ')}Z ", style="bold cyan")
        t.append(f" {rate:,.0f} ticks/s")
        for sym in (self.params.symbol_x, self.params.symbol_y):
            seen = self._last_leg_rx.get(sym)
            if seen is None:
                t.append(f"  {sym}: no trades", style="yellow")
            else:
                age = now - seen
                t.append(f"  {sym} {age:.1f}s", style="yellow" if age > STALE_LEG_S else "")
                if age > STALE_LEG_S:
                    t.append(" STALE", style="bold yellow")
        path = self.config.db_path
        size = sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
        t.append(f"  DB {_human_bytes(size)}")
        bf = self.backfill_progress
        if bf is not None and bf.state == "running":
            t.append(f"  backfilling {bf.done:,}/{bf.total:,} bars", style="bold")
        elif bf is not None and bf.state == "skipped":
            t.append("  backfill skipped", style="yellow")
        if self.pair is None:
            t.append("  loading history…")
        elif self.pair.engine.bars < self.params.window:
            t.append(f"  filling window {self.pair.engine.bars}/{self.params.window}")
        if self.feed_detail and state not in ("live", "replay"):
            t.append(f"  ({printable(self.feed_detail, 80, one_line=True)})")
        self.query_one("#status", Static).update(t)
        if self.ingestion is not None:
            st = self.ingestion.feed.stats
            table = self.query_one("#metrics", DataTable)
            stored = self._stored_base + self.ingestion.writer.inserted
            self._set_cell(table, "ticks", "value", f"{stored:,}")
            self._set_cell(table, "gaps", "value", f"{st.gaps_open} / {st.gaps_filled}")

    def watch_feed_state(self, state: str) -> None:
        if not self._stopped:
            self._update_status()

    def watch_paused(self, paused: bool) -> None:
        self._update_title()
        if not paused:
            self._dirty = True

    # ----------------------------------------------------------------- actions
    def _change(self, **changes: object) -> None:
        self.params = dataclasses.replace(self.params, **changes)
        self.alert_engine = self._make_alert_engine()
        self._update_title()
        self.request_rebuild()
        if "timeframe" in changes or "window" in changes:
            self._start_backfill()

    def action_cycle_timeframe(self) -> None:
        tfs = list(TIMEFRAMES)
        self._change(timeframe=tfs[(tfs.index(self.params.timeframe) + 1) % len(tfs)])

    def action_window(self, step: int) -> None:
        w = self.params.window
        if step > 0:
            nxt = next((v for v in WINDOWS if v > w), w)
        else:
            nxt = next((v for v in reversed(WINDOWS) if v < w), w)
        if nxt != w:
            self._change(window=nxt)

    def action_cycle_hedge(self) -> None:
        self._change(hedge=HEDGES[(HEDGES.index(self.params.hedge) + 1) % len(HEDGES)])

    def action_swap(self) -> None:
        self._change(symbol_x=self.params.symbol_y, symbol_y=self.params.symbol_x)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused

    def action_clear_alerts(self) -> None:
        self.query_one("#alerts", DataTable).clear()

    def action_export(self) -> None:
        self.notify("exporting…", timeout=2)
        self._export(self.params)

    @work(exclusive=True, group="export", exit_on_error=False)
    async def _export(self, params: PairParams) -> None:
        """Export everything received up to the key press: the writer's queue is committed
        first, so the CSVs include ticks still in flight to the database."""
        await self._commit_received()
        try:
            done = await asyncio.to_thread(self._export_files, params)
        except ExportError as exc:
            self.post_message(ExportFinished([], str(exc)))
            return
        self.post_message(ExportFinished([f"{p} ({n:,} rows)" for p, n in done.values()]))

    def _export_files(self, params: PairParams) -> dict[str, tuple[Path, int]]:
        conn = connect(self.config.db_path, readonly=True)
        try:
            return export_pair(conn, params, self.config.export.dir)
        finally:
            conn.close()

    def on_export_finished(self, msg: ExportFinished) -> None:
        if msg.error:
            self.notify(printable(msg.error), title="Export failed", severity="error", markup=False)
        else:
            self.notify(
                printable("\n".join(msg.paths), 1000), title="Exported", timeout=8, markup=False
            )

    # ----------------------------------------------------------------- backtest
    def action_backtest(self) -> None:
        p = self.params
        self.backtest_screen = BacktestScreen(
            f" BACKTEST  {p.symbol_y} vs {p.symbol_x}  {p.timeframe}  W={p.window}  {p.hedge}"
        )
        self.push_screen(self.backtest_screen)
        self.action_run_backtest()

    def action_run_backtest(self) -> None:
        a, b = self.config.analytics, self.config.backtest
        params = BacktestParams(
            a.entry_z, a.exit_z, b.stop_z or None, b.fee_bps, self.params.hedge == "log"
        )
        self._backtest(self.params, params)

    @work(thread=True, exclusive=True, group="backtest", exit_on_error=False)
    def _backtest(self, pair: PairParams, params: BacktestParams) -> None:
        conn = connect(self.config.db_path, readonly=True)
        try:
            bars = load_pair_bars(
                conn, pair.symbol_x, pair.symbol_y, pair.timeframe, max_gap_bars=pair.max_gap_bars
            )
        finally:
            conn.close()
        try:
            self.post_message(BacktestFinished(backtest_bars(bars, pair, params)))
        except ValueError as exc:
            self.post_message(BacktestFinished(None, str(exc)))

    def on_backtest_finished(self, msg: BacktestFinished) -> None:
        screen = self.backtest_screen
        if screen is None or not screen.is_mounted:
            return
        if msg.report is None:
            screen.show_error(msg.error or "backtest failed")
        else:
            screen.show(msg.report)

    def action_export_backtest(self) -> None:
        screen = self.backtest_screen
        if screen is None or screen.report is None:
            self.notify("no backtest to export", severity="warning")
            return
        self._export_backtest(screen.report)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def _export_backtest(self, report: BacktestReport) -> None:
        try:
            done = export_backtest(report, self.config.export.dir)
        except ExportError as exc:
            self.post_message(ExportFinished([], str(exc)))
            return
        self.post_message(ExportFinished([f"{p} ({n:,} rows)" for p, n in done.values()]))

    async def _stop_ingestion(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.ingestion is not None:
            await self.ingestion.stop()

    async def action_quit(self) -> None:
        await self._stop_ingestion()
        self.exit(0)

    async def on_unmount(self) -> None:
        """Any other way out (an exception, a test's teardown) still flushes the writer."""
        await self._stop_ingestion()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "warmup" and event.state == WorkerState.SUCCESS:
            self._freeze_heap()
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            self.notify(
                printable(f"{event.worker.group}: {err}"),
                title="Error",
                severity="error",
                markup=False,
            )

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for b in self.BINDINGS:
            if isinstance(b, Binding) and b.action in self.ACTION_HELP:
                yield SystemCommand(
                    f"{b.description} ({b.key_display or b.key})",
                    self.ACTION_HELP[b.action],
                    lambda action=b.action: self.run_action(action),
                )
