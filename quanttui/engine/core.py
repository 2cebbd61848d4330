"""The monitor engine: N pairs over one feed, one writer, one database; no UI.

Why it is shaped this way:

* **One pipeline for every view.** The app, headless mode, `record` and the watchlist all
  run this object; they send commands (`set_params`, `add_pair`, `add_rule`, `export`,
  `backtest`, `stop`) and render the events it publishes (`quanttui.engine.events`). No
  view holds a copy of the ingestion, recompute or alert logic.
* **Nothing waits for a view.** `publish` only puts into each subscriber's `Mailbox`,
  which coalesces snapshots and bounds the rest. The engine normally runs on its own
  thread and event loop (`quanttui.engine.runner`), so a terminal that stops draining
  (a stalled SSH link blocks Textual's writer) cannot delay a trade, a bar or an alert.
* **One connection.** Every pair's legs are subscribed once on one combined stream, a
  symbol shared by several pairs is stored once, and adding or removing a pair at run
  time sends SUBSCRIBE/UNSUBSCRIBE on the open connection.
* **Alerts agree with the database.** Bars that a recompute would give differently
  (late trades) trigger a recompute; alerts are evaluated on settled bars and revised or
  withdrawn after a recompute (`quanttui.engine.alertbook`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from quanttui.alerts import RuleError, parse_rule
from quanttui.analytics.live import LivePair, PairParams
from quanttui.analytics.stationarity import stationarity, warm_up
from quanttui.config import Config, NotifyConfig
from quanttui.engine.alertbook import AlertBook
from quanttui.engine.basket import BasketMonitor, basket_book
from quanttui.engine.events import (
    AlertEvent,
    AlertsDelivered,
    AlertWithdrawn,
    BackfillEvent,
    BacktestDone,
    Event,
    ExportDone,
    FeedState,
    Finished,
    Notice,
    PairsChanged,
    Recomputed,
    RulesChanged,
    Status,
)
from quanttui.engine.mailbox import Mailbox
from quanttui.engine.pair import HISTORY, PairMonitor, StallGuard, make_rules
from quanttui.feed.backfill import BackfillProgress
from quanttui.feed.binance import SymbolError, now_ms
from quanttui.feed.ingest import Ingestion
from quanttui.feed.replay import Replay, ReplaySpec, open_feed
from quanttui.model import (
    BASKET_METRIC_NAMES,
    FUNDING_METRIC_NAMES,
    Alert,
    BasketSnapshot,
    MarkPrice,
    Snapshot,
    Tick,
)
from quanttui.store.db import StoreError, connect
from quanttui.store.queries import tick_counts
from quanttui.store.writer import INSERT_ALERT, WriterStatus, db_event_line, loss_line

CLOCK_S = 0.2
STATUS_S = 0.25
"""The status is published this often (and on every feed state or database change), so
a view that prints it every few seconds never shows one older than this."""
RATE_SPAN_S = 3.0
"""ticks/s is the rate over the last this many seconds, so it drops to 0 soon after the
feed goes quiet."""
RATE_SAMPLES = int(RATE_SPAN_S / CLOCK_S) + 1
"""(time, trades) samples kept for `Engine.rate`: one per clock tick over `RATE_SPAN_S`."""
COMMIT_TIMEOUT_S = 5.0
RECENT_ALERTS = 1000
FUNDING_HISTORY_MS = 30 * 86_400_000
"""The warm start fetches at least this much funding history (what a backtest over the
stored bars needs is usually less)."""
WITHDRAW_ALERT = (
    "UPDATE alerts SET withdrawn_ms = ? WHERE ts_ms = ? AND pair = ? AND rule = ? "
    "AND withdrawn_ms IS NULL"
)


class EngineError(Exception):
    """A command that cannot be carried out (unknown pair, bad rule, ...); one line."""


def pair_key(x: str, y: str) -> str:
    return f"{x}/{y}"


class Engine:
    def __init__(
        self,
        cfg: Config,
        pairs: Sequence[tuple[str, str]] = (),
        *,
        symbols: Sequence[str] = (),
        rules: Sequence[str] = (),
        replay: ReplaySpec | None = None,
        analyse: bool = True,
        baskets: Sequence[Sequence[str]] = (),
    ) -> None:
        self.cfg = cfg
        self.replay = replay
        self.extra_rules = list(rules)
        self.analyse = analyse
        self.pairs: dict[str, PairMonitor | BasketMonitor] = {}
        """Pairs and baskets (`BasketMonitor`, key ``A+B+C``) by key."""
        self._subscribers: list[Mailbox] = []
        self.recent_alerts: deque[AlertEvent | AlertWithdrawn | AlertsDelivered] = deque(
            maxlen=RECENT_ALERTS
        )
        """The last alerts and withdrawals published, for a view that attaches late."""
        for x, y in pairs:
            self._new_pair(x, y)
        for legs in baskets:
            self._new_basket(legs)
        self.extra_symbols = [s for s in symbols if s not in self._pair_symbols()]
        self.feed: Ingestion | Replay = open_feed(
            cfg,
            self.symbols,
            replay,
            on_ticks=self._on_ticks,
            on_state=self._on_state,
            on_mark=self._on_mark,
        )
        self._settlements: set[tuple[str, int]] = set()
        self.feed.writer.on_error = self._on_db_error
        self.feed_state = "connecting"
        self.feed_detail = ""
        self.backfill: BackfillProgress | None = None
        self.ticks = 0
        self.last_rx: dict[str, float] = {}
        """When each watched symbol last traded (monotonic s): one entry per symbol."""
        self.alerts_fired = 0
        self.alerts_withdrawn = 0
        self.recomputes = 0
        self.stored_base = 0
        self._rate: deque[tuple[float, int]] = deque(maxlen=RATE_SAMPLES)
        self._stop = asyncio.Event()
        self._stopped = False
        self._tasks: set[asyncio.Task] = set()
        self._stat_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stationarity")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.finished: Finished | None = None
        self.notify_routing = None
        """`quanttui.notify.urls.Routing` when `[notify]` has destinations."""
        self.notifier = None
        """The running `quanttui.notify.worker.Notifier`; its counts ride the status, and
        each delivery is published as `AlertsDelivered`."""
        if cfg.notify.enabled:
            from quanttui.notify.urls import routing

            self.notify_routing = routing(cfg)

    # ----------------------------------------------------------------- pairs and rules
    def _pair_symbols(self) -> list[str]:
        out: list[str] = []
        for p in self.pairs.values():
            for s in p.symbols:
                if s not in out:
                    out.append(s)
        return out

    @property
    def symbols(self) -> list[str]:
        out = self._pair_symbols()
        out += [s for s in getattr(self, "extra_symbols", []) if s not in out]
        return out

    def _params(self, x: str, y: str) -> PairParams:
        a = self.cfg.analytics
        return PairParams(x, y, a.timeframe, a.window, a.hedge, a.kalman_delta, a.kalman_obs_var)

    def _rule_args(self) -> dict:
        a, al = self.cfg.analytics, self.cfg.alerts
        return {
            "entry_z": a.entry_z,
            "exit_z": a.exit_z,
            "hysteresis": al.hysteresis,
            "cooldown_s": al.cooldown_s,
            "default": False,
        }

    def default_rules(self, key: str) -> list[str]:
        """The rules a new pair starts with: `abs(zscore) >= entry_z`, the config's
        `[alerts] rules` and the command line's, each either for every pair or, written
        `X/Y: rule`, for the pair X/Y only."""
        a = self.cfg.analytics
        out = [f"abs(zscore) >= {a.entry_z:g}"]
        for text in [*self.cfg.alerts.rules, *self.extra_rules]:
            target, rule = split_rule(text)
            if target is None or target == key:
                out.append(rule)
        return out

    def _new_pair(self, x: str, y: str) -> PairMonitor:
        key = pair_key(x, y)
        if key in self.pairs:
            raise EngineError(f"pair {key} is already watched")
        texts = [t for t in self.default_rules(key) if not self._basket_only(t)]
        rules = make_rules(texts, key, self._rule_args())
        mon = PairMonitor(
            key, self._params(x, y), AlertBook(rules, HISTORY), [r.text for r in rules.rules]
        )
        self.pairs[key] = mon
        return mon

    def _basket_only(self, text: str) -> bool:
        """A rule for every pair and basket that names a basket metric (`trace_margin`,
        `rank`, ...): a pair leaves it out, as a basket leaves out the pair metrics."""
        a = self.cfg.analytics
        try:
            parse_rule(text, entry_z=a.entry_z, exit_z=a.exit_z)
        except RuleError:
            try:
                parse_rule(text, entry_z=a.entry_z, exit_z=a.exit_z, names=BASKET_METRIC_NAMES)
            except RuleError:
                return False
            return True
        return False

    def _new_basket(self, symbols: Sequence[str]) -> BasketMonitor:
        """A basket of 3+ legs with the config's timeframe, window and `[basket]` keys.
        Its rules: `abs(zscore) >= entry_z`, plus those of `[alerts] rules` and the
        command line that name basket metrics (`BASKET_METRIC_NAMES`), for every
        basket or, written `A+B+C: rule`, for that basket only."""
        from quanttui.analytics.basket import BasketParams

        a, b = self.cfg.analytics, self.cfg.basket
        try:
            params = BasketParams(
                tuple(symbols), a.timeframe, a.window, b.det_order, b.k_ar_diff, b.log_prices
            )
        except ValueError as exc:
            raise EngineError(f"basket {'+'.join(symbols)}: {exc}") from None
        key = params.key
        if key in self.pairs:
            raise EngineError(f"basket {key} is already watched")
        texts = []
        for text in self.default_rules(key):
            try:
                parse_rule(text, entry_z=a.entry_z, exit_z=a.exit_z, names=BASKET_METRIC_NAMES)
            except RuleError:
                continue
            texts.append(text)
        book = basket_book(texts, key, self._rule_args(), HISTORY)
        mon = BasketMonitor(key, params, book, [r.text for r in book.rules.rules])
        self.pairs[key] = mon
        return mon

    def pair_infos(self) -> tuple:
        return tuple(p.info for p in self.pairs.values())

    # ----------------------------------------------------------------- events
    def subscribe(self, box: Mailbox) -> Mailbox:
        self._subscribers.append(box)
        return box

    def unsubscribe(self, box: Mailbox) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(box)

    def publish(self, event: Event) -> None:
        if isinstance(event, AlertEvent | AlertWithdrawn | AlertsDelivered):
            self.recent_alerts.append(event)
        for box in self._subscribers:
            box.put(event)

    def attach(self, box: Mailbox, *, history: bool = True) -> tuple[tuple, dict[str, list[str]]]:
        """Subscribe a view that joins a running engine (`quanttui.server`), on the
        engine's loop: its box first gets the recent alerts and withdrawals in order
        (unless not `history`), then
        each pair's latest snapshot and the status, so its first frame shows the engine's
        state without a warm-up. Returns the pairs and each pair's rules."""
        for ev in self.recent_alerts if history else ():
            box.put(ev)
        for mon in self.pairs.values():
            if mon.snapshot is not None:
                box.put(mon.snapshot_event(mon.snapshot))
        self._subscribers.append(box)
        self._publish_status()
        infos = self.pair_infos()
        return infos, {i.key: self.rules(i.key) for i in infos}

    def _on_db_error(self, st: WriterStatus) -> None:
        """A commit failed (or the database takes writes again): said at once, once per
        episode; the status carries `DB ERROR (reason)` and `unsaved=N` meanwhile."""
        line = db_event_line(st, self.feed.writer.max_unsaved)
        self.publish(Notice(line, "Database", "error" if st.error else "information"))
        self._publish_status()

    def _on_state(self, state: str, detail: str) -> None:
        self.feed_state, self.feed_detail = state, detail
        if state == "finished" and self.loop is not None:
            self._spawn(self._replay_finished(detail))
            return
        self.publish(FeedState(state, detail))
        self._publish_status()

    async def _replay_finished(self, detail: str, timeout_s: float = 15.0) -> None:
        """A replay has delivered its last trade. `finished` is published once every
        pair has taken it in: loaded, no recompute pending, stationarity done, so a
        view that stops on it has seen every alert of the recording."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            busy = any(
                m.live is None or m.resync.pending or m.stat_running or m.wants_stationarity()
                for m in self.pairs.values()
            )
            if not busy:
                break
            await asyncio.sleep(0.05)
        self.publish(FeedState("finished", detail))
        self._publish_status()

    # ----------------------------------------------------------------- life cycle
    def now(self) -> int:
        """Wall-clock ms, or the replay clock in a replay."""
        if isinstance(self.feed, Replay):
            return self.feed.now_ms()
        return now_ms()

    async def run(self) -> Finished:
        """Check symbols, start the feed, warm start, run until `stop()`. Returns (and
        publishes) `Finished`."""
        self.loop = asyncio.get_running_loop()
        code, error = 0, None
        try:
            try:
                warning = await self.feed.check_symbols()
            except SymbolError as exc:
                code, error = 2, str(exc)
                return await self._finish(code, error)
            if warning:
                self.publish(Notice(warning, "Symbols not verified", "warning"))
            if self.analyse and self.pairs:
                self._spawn(self._warm_up())
            replaying = isinstance(self.feed, Replay)
            if not replaying:
                try:
                    await self.feed.start()
                except StoreError as exc:
                    return await self._finish(2, str(exc))
            self._start_backfill(list(self.symbols))
            loads = [self._spawn(self.rebuild(mon, new_params=True)) for mon in self.pairs.values()]
            if replaying:
                # A replay starts once every pair has loaded, so the same recording gives
                # the same bars and alerts whatever the machine's pace (live trades cannot
                # wait: the feed starts first and the load's seam takes them in).
                await asyncio.gather(*loads, return_exceptions=True)
                try:
                    await self.feed.start()
                except StoreError as exc:
                    return await self._finish(2, str(exc))
            await self._start_notifier()
            self._spawn(self._clock())
            await self._stop.wait()
        except Exception as exc:  # noqa: BLE001 - a view must always get Finished
            code, error = 1, f"{exc.__class__.__name__}: {exc}"
        return await self._finish(code, error)

    async def _warm_up(self) -> None:
        """statsmodels (with scipy) imported off the loop, then the heap frozen: the
        cyclic GC's full collections stop walking those modules' objects for good, which
        in the engine's process had cost it 0.5-0.8 s of every 300,000 trades."""
        await asyncio.to_thread(warm_up)
        gc.freeze()

    async def _finish(self, code: int, error: str | None) -> Finished:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self._close_feed()
        if self.notifier is not None:
            await self.notifier.stop()
        self._stat_pool.shutdown(wait=False, cancel_futures=True)
        stats = {
            "ticks": self.ticks,
            "stored": self.feed.writer.inserted,
            "alerts": self.alerts_fired,
            "withdrawn": self.alerts_withdrawn,
            "recomputes": self.recomputes,
        }
        writer = self.feed.writer
        st = writer.status()
        stats["unsaved"], stats["dropped"] = st.unsaved, st.dropped
        loss = None
        if st.lost:
            loss = loss_line(st, writer.lost_ranges())
            code = code or 1
        self.finished = Finished(code, error, stats, loss)
        self.publish(self.finished)
        return self.finished

    async def _start_notifier(self) -> None:
        """Deliver the outbox (this run's alerts and any a previous run left pending)."""
        if self.notify_routing is None:
            return
        from quanttui.notify.worker import Notifier

        self.notifier = Notifier(
            self.feed.writer.path,
            self.cfg.notify,
            self.notify_routing,
            on_change=lambda _st: self._publish_status(),
            on_delivered=lambda alerts: self.publish(AlertsDelivered(alerts)),
        )
        try:
            await self.notifier.start()
        except Exception as exc:  # noqa: BLE001 - notifications must not stop the engine
            self.notifier = None
            self.publish(Notice(f"notifications off: {exc}", "Notifications", "error"))

    async def reload_notify(self, notify: NotifyConfig) -> int:
        """`[notify]` anew (the server's SIGHUP): the destinations are checked first (an
        unknown URL raises `EngineError` and leaves delivery as it was), then the running
        notifier stops as at exit (in-flight deliveries finish, the rest stays pending in
        the outbox) and one for the new destinations starts; alerts fired from now on are
        routed to them. Rows pending for a destination no longer configured stay pending.
        Returns the number of destinations."""
        cfg = dataclasses.replace(self.cfg, notify=notify)
        new = None
        if notify.enabled:
            from quanttui.notify.urls import NotifyUrlError, routing

            try:
                new = routing(cfg)
            except NotifyUrlError as exc:
                raise EngineError(f"[notify] not reloaded: {exc}") from None
        if self.notifier is not None:
            await self.notifier.stop()
            self.notifier = None
        self.cfg, self.notify_routing = cfg, new
        await self._start_notifier()
        self._publish_status()
        return len(new.all) if new is not None else 0

    async def _close_feed(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.feed.stop()

    def stop(self) -> None:
        """End the run: stop the feed, flush the writer, publish `Finished`."""
        self._stop.set()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                self.publish(Notice(f"{exc.__class__.__name__}: {exc}", "Error", "error"))

        task.add_done_callback(done)
        return task

    # ----------------------------------------------------------------- ingestion
    def _start_backfill(self, symbols: list[str]) -> None:
        if not isinstance(self.feed, Ingestion) or self._stopped:
            return
        self._spawn(self._funding_backfill(symbols))
        tf, window = self._backfill_span()
        self.backfill = None
        self.feed.start_backfill(tf, window, self._on_backfill, symbols=symbols)

    def _backfill_span(self) -> tuple[str, int]:
        """The warm start covers the widest span any pair needs."""
        from quanttui.config import TIMEFRAMES

        if not self.pairs:
            a = self.cfg.analytics
            return a.timeframe, a.window
        best = max(
            self.pairs.values(), key=lambda p: TIMEFRAMES[p.params.timeframe] * p.params.window
        )
        return best.params.timeframe, best.params.window

    def _on_backfill(self, progress: BackfillProgress) -> None:
        self.backfill = progress
        self._publish_status()
        self.publish(
            BackfillEvent(
                progress.state, progress.done, progress.total, progress.rows, progress.detail
            )
        )
        if progress.state == "skipped":
            self.publish(
                Notice(
                    f"backfill skipped, using stored data: {progress.detail}",
                    "Warm start",
                    "warning",
                )
            )
        elif progress.state == "done" and progress.rows:
            for mon in list(self.pairs.values()):
                self._spawn(self.rebuild(mon))

    def _on_ticks(self, ticks: list[Tick]) -> None:
        now = time.monotonic()
        self.ticks += len(ticks)
        by_symbol: dict[str, list[Tick]] = {}
        for t in ticks:
            by_symbol.setdefault(t.symbol, []).append(t)
        for sym in by_symbol:
            self.last_rx[sym] = now
        for mon in self.pairs.values():
            legs = mon.symbols
            if not any(s in by_symbol for s in legs):
                continue
            sel = (
                ticks
                if len(by_symbol) <= len(legs) and set(by_symbol) <= set(legs)
                else [t for t in ticks if t.symbol in legs]
            )
            if mon.live is None:
                mon.buffer(sel)
                continue
            live = mon.live
            before = live.diverged
            closed = live.add(sel)
            mon.resync.watch(live, before)
            if closed:
                self._bars_closed(mon, closed)

    async def _clock(self) -> None:
        """Every `CLOCK_S`: the status, due recomputes, and bars whose time has passed.
        A failure in one tick is reported and the clock goes on: without it no bar
        would close by time again."""
        guard = StallGuard(CLOCK_S)
        state = {"last_status": 0.0}
        while True:
            await asyncio.sleep(CLOCK_S)
            try:
                self._tick(guard, state)
            except Exception as exc:  # noqa: BLE001
                self.publish(Notice(f"clock: {exc.__class__.__name__}: {exc}", "Error", "error"))

    def _tick(self, guard: StallGuard, state: dict[str, float]) -> None:
        mono = time.monotonic()
        self._rate.append((mono, self.ticks))
        republish = mono - state["last_status"] >= STATUS_S
        if republish:
            state["last_status"] = mono
            self._publish_status()
        if not guard.ready():
            return
        now = self.now()
        filling = isinstance(self.feed, Ingestion) and self.feed.feed.backfilling
        for mon in list(self.pairs.values()):
            if mon.live is not None and mon.resync.ready(hold=filling):
                self._spawn(self.rebuild(mon))
                continue
            if mon.marks_dirty and mon.live is not None and republish:
                self._publish_snapshot(mon)
            if now == 0 or mon.live is None:
                continue
            live = mon.live
            before = live.diverged
            closed = live.advance(now)
            mon.resync.watch(live, before)
            if closed:
                self._bars_closed(mon, closed)

    def rate(self) -> float:
        """ticks/s over the last `RATE_SPAN_S` seconds."""
        if len(self._rate) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._rate[0], self._rate[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def _publish_status(self) -> None:
        feed = self.feed
        st = feed.feed.stats
        w = feed.writer
        path = w.path
        size = 0
        for p in (path, Path(f"{path}-wal")):
            with contextlib.suppress(OSError):
                size += os.path.getsize(p)
        mono = time.monotonic()
        replay_ms = feed.now_ms() if isinstance(feed, Replay) else 0
        self.publish(
            Status(
                state=self.feed_state,
                detail=self.feed_detail,
                rate=self.rate(),
                ticks=self.ticks,
                stored=self.stored_base + w.inserted,
                inserted=w.inserted,
                leg_age={s: mono - t for s, t in self.last_rx.items()},
                symbols=tuple(self.symbols),
                gaps_open=st.gaps_open,
                gaps_filled=st.gaps_filled,
                malformed=sum(getattr(st, "malformed", {}).values())
                if hasattr(st, "malformed")
                else 0,
                db_bytes=size,
                replay_ms=replay_ms,
                speed=feed.speed if isinstance(feed, Replay) else None,
                backfill=self.backfill.state if self.backfill else "",
                backfill_done=self.backfill.done if self.backfill else 0,
                backfill_total=self.backfill.total if self.backfill else 0,
                db_error=w.error,
                unsaved=w.unsaved + (w.queue.qsize() if w.error else 0),
                dropped=w.dropped,
                per_symbol=dict(st.per_symbol),
                reconnects=getattr(st, "reconnects", 0),
                alerts=self.alerts_fired,
                dropped_events=sum(b.dropped for b in self._subscribers),
                **self._notify_counts(),
            )
        )

    def _notify_counts(self) -> dict[str, object]:
        if self.notify_routing is None:
            return {}
        st = self.notifier.status() if self.notifier is not None else None
        return {
            "notify": True,
            "notify_pending": st.pending if st else 0,
            "notify_failed": st.failed if st else 0,
        }

    # ----------------------------------------------------------------- analytics
    def _bars_closed(self, mon: PairMonitor, closed: list) -> None:
        if mon.book.not_before is None and isinstance(self.feed, Replay):
            start = self.feed.start_ms
            if start is not None:
                mon.book.not_before = start - start % mon.params.timeframe_ms
        fired = mon.closed(closed)
        if fired:
            self._fire(mon, fired)
        self._maybe_stationarity(mon)
        snap = self._publish_snapshot(mon)
        if isinstance(snap, Snapshot) and snap.funding is not None and snap.time_ms is not None:
            values = {k: v for k, v in snap.metrics().items() if k in FUNDING_METRIC_NAMES}
            fired = mon.book.on_extra(snap.time_ms, values)
            if fired:
                self._fire(mon, fired)

    def _publish_snapshot(
        self, mon: PairMonitor | BasketMonitor
    ) -> Snapshot | BasketSnapshot | None:
        snap = mon.build_snapshot(self.now())
        if snap is not None:
            self.publish(mon.snapshot_event(snap))
        return snap

    # ----------------------------------------------------------------- funding
    def _on_mark(self, mp: MarkPrice) -> None:
        """A mark-price update (about once a second per symbol): each pair with that leg
        takes it; its snapshot is republished from the clock at most once a second. When
        a leg's next funding time moves on, that settlement is fetched over REST."""
        for mon in self.pairs.values():
            if mon.funding is None or mp.symbol not in mon.symbols:
                continue
            passed = mon.funding.update(mp)
            mon.marks_dirty = True
            if passed is not None and (mp.symbol, passed) not in self._settlements:
                self._settlements.add((mp.symbol, passed))
                self._spawn(self._fetch_settlement(mp.symbol, passed))

    async def _fetch_settlement(self, symbol: str, funding_ms: int) -> None:
        """Binance publishes a settlement a few seconds after the hour: try a few times."""
        from quanttui.feed.binance import RestError, RestUnavailable
        from quanttui.feed.funding import store_settlement

        if not isinstance(self.feed, Ingestion):
            return
        for delay in (5, 15, 60, 300):
            await asyncio.sleep(delay)
            try:
                if await store_settlement(self.feed.rest, self.feed.writer, symbol, funding_ms):
                    return
            except (RestError, RestUnavailable):
                continue

    async def _funding_backfill(self, symbols: list[str]) -> None:
        """Warm start of funding: settlements over the backtest-sized span (at least
        `FUNDING_HISTORY_MS`) and each symbol's interval; an unreachable endpoint only
        warns, as the trade warm start does."""
        from quanttui.feed.binance import RestError, RestUnavailable
        from quanttui.feed.funding import backfill_funding
        from quanttui.store.queries import funding_intervals

        if not isinstance(self.feed, Ingestion) or self.cfg.feed.backfill == "off":
            return
        end = now_ms()
        try:
            await backfill_funding(
                self.feed.rest, self.feed.writer, symbols, end - FUNDING_HISTORY_MS, end
            )
        except (RestError, RestUnavailable) as exc:
            self.publish(Notice(f"funding history skipped: {exc}", "Funding", "warning"))
            return
        db = self.feed.writer.path

        def intervals() -> dict[str, int]:
            conn = connect(db, readonly=True)
            try:
                return funding_intervals(conn, list(symbols))
            finally:
                conn.close()

        known = await asyncio.to_thread(intervals)
        for mon in self.pairs.values():
            if mon.funding is not None:
                mon.funding.set_intervals({s: h for s, h in known.items() if s in mon.symbols})

    def _maybe_stationarity(self, mon: PairMonitor) -> None:
        if not self.analyse or not mon.wants_stationarity():
            return
        live = mon.live
        assert live is not None and live.engine.last is not None
        e = live.engine
        mon.stat_running = True
        self._spawn(
            self._stationarity(
                mon,
                list(e.window_spread),
                list(e.window_x),
                list(e.window_y),
                e.last.ts_ms,
                mon.generation,
            )
        )

    async def _stationarity(self, mon, s, x, y, ts: int, generation: int) -> None:
        """ADF and coint off the event loop, one at a time per pair; a bar that closed
        meanwhile gets its own run right after."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._stat_pool, stationarity, s, x, y)
        finally:
            mon.stat_running = False
        if generation != mon.generation or mon.live is None:
            return
        mon.stat, mon.stat_ts = result, ts
        values = {
            k: v
            for k, v in (
                ("adf_stat", result.adf_stat),
                ("adf_p", result.adf_p),
                ("coint_p", result.coint_p),
            )
            if v is not None
        }
        fired = mon.book.on_extra(ts, values)
        if fired:
            self._fire(mon, fired)
        self._publish_snapshot(mon)
        self._maybe_stationarity(mon)

    # ----------------------------------------------------------------- alerts
    def _fire(self, mon: PairMonitor, alerts: list[Alert], *, revised: bool = False) -> None:
        writer = self.feed.writer
        for a in alerts:
            self.alerts_fired += 1
            self.publish(AlertEvent(a, revised))
            then = ()
            if self.notify_routing is not None:
                from quanttui.notify.outbox import alert_rows

                last = mon.live.engine.last if mon.live is not None else None
                hedge = getattr(last, "beta", None) if last is not None else None
                if hedge is None and mon.snapshot is not None:
                    hedge = getattr(mon.snapshot, "beta", None)
                weights = getattr(last, "weights", None)
                legs = tuple(zip(mon.symbols, weights, strict=True)) if weights else None
                dests = self.notify_routing.for_alert(a.pair, a.rule)
                then = alert_rows(a, dests, hedge, mon.params.hedge, revised=revised, legs=legs)
            row = (a.ts_ms, a.pair, a.rule, a.metric, a.value, a.threshold)
            self._spawn(
                writer.execute(INSERT_ALERT, row, then=then)
                if then
                else writer.execute(INSERT_ALERT, row)
            )

    def _withdraw(self, alerts: list[Alert]) -> None:
        t = now_ms()
        reason = "a recompute from the database changed its bar"
        for a in alerts:
            self.alerts_withdrawn += 1
            self.publish(AlertWithdrawn(a, t, reason))
            then = ()
            if self.notify_routing is not None:
                from quanttui.notify.outbox import retraction_rows

                then = retraction_rows(a, t, reason)
            args = (t, a.ts_ms, a.pair, a.rule)
            w = self.feed.writer
            self._spawn(
                w.execute(WITHDRAW_ALERT, args, then=then)
                if then
                else w.execute(WITHDRAW_ALERT, args)
            )

    # ----------------------------------------------------------------- recompute
    async def commit_received(self) -> None:
        """Wait (up to `COMMIT_TIMEOUT_S`) until everything received so far is committed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await self.feed.writer.flush()

    async def rebuild(self, mon: PairMonitor, *, new_params: bool = False) -> None:
        """Recompute a pair from the database without a seam. Trades received before
        are committed first, so the load sees them; closed bars come from the stored
        history and the open bucket from its stored trades; trades that arrive meanwhile
        are buffered and added unless the load already held them (same symbol and
        trade id). Trades the load missed for buckets it closed count as late, so another
        resync follows once they stop. With the same parameters (a resync) the alerts
        are re-run over the recomputed bars (`AlertBook.resync`)."""
        mon.generation += 1
        generation = mon.generation
        params = mon.params
        mon.live = None
        if new_params:
            mon.stat_ts = None
            from quanttui.analytics.stationarity import Stationarity

            mon.stat = Stationarity()
        end = self.now()
        end -= end % params.timeframe_ms
        await self.commit_received()
        live, seen, stored = await asyncio.to_thread(self._load, params, end)
        if generation != mon.generation:
            return
        pending = [t for t in mon.pending if (t.symbol, t.trade_id) not in seen]
        mon.pending = []
        dropped, mon.pending_dropped = mon.pending_dropped, 0
        pending.sort(key=lambda t: (t.ts_ms, t.trade_id))
        before = live.diverged
        closed_pending = live.add(pending)
        now = self.now()
        closed_now = live.advance(now) if now else []
        mon.live = live
        mon.stored_ticks = stored
        self.stored_base = stored - self.feed.writer.inserted
        self.recomputes += not new_params
        if not new_params:
            revised, withdrawn = mon.book.resync(mon.history_metrics())
            if withdrawn:
                self._withdraw(withdrawn)
            if revised:
                self._fire(mon, revised, revised=True)
        mon.resync.watch(live, before)
        if dropped:
            mon.resync.request()
        self.publish(
            Recomputed(
                mon.key, mon.info, live.engine.bars, stored, resync=not new_params, live_from=end
            )
        )
        closed = closed_pending + closed_now
        if closed and not new_params:
            fired = mon.closed(closed)
            if fired:
                self._fire(mon, fired)
        self._maybe_stationarity(mon)
        self._publish_snapshot(mon)

    def _load(self, params, end: int) -> tuple[LivePair, set[tuple[str, int]], int]:
        """`LivePair.resume` (or `LiveBasket.resume` for a basket's `BasketParams`)."""
        from quanttui.analytics.basket import BasketParams, LiveBasket

        conn = connect(
            self.cfg.db_path if self.replay is None else self.feed.writer.path, readonly=True
        )
        try:
            if isinstance(params, BasketParams):
                live, seen = LiveBasket.resume(conn, params, end, HISTORY)
                legs = list(params.symbols)
            else:
                live, seen = LivePair.resume(conn, params, end, HISTORY)
                legs = [params.symbol_x, params.symbol_y]
            stored = sum(tick_counts(conn, legs).values())
        finally:
            conn.close()
        return live, seen, stored

    # ----------------------------------------------------------------- commands
    def _pair(self, key: str) -> PairMonitor:
        try:
            return self.pairs[key]
        except KeyError:
            raise EngineError(f"no such pair {key}") from None

    async def set_params(self, key: str, **changes: object) -> None:
        """Change a pair's timeframe, window, hedge or legs (`swap=True`) and recompute
        it from the database. Its rules start afresh on the new bars."""
        mon = self._pair(key)
        if isinstance(mon, BasketMonitor):
            raise EngineError(f"basket {key}: its parameters come from the config")
        if changes.pop("swap", False):
            changes["symbol_x"], changes["symbol_y"] = mon.params.symbol_y, mon.params.symbol_x
        mon.params = dataclasses.replace(mon.params, **changes)
        mon.reset_funding()
        rules = make_rules(mon.rule_texts, mon.params.pair, self._rule_args())
        mon.book = AlertBook(rules, HISTORY)
        self._spawn(self.rebuild(mon, new_params=True))
        if "timeframe" in changes or "window" in changes:
            self._start_backfill(list(mon.symbols))

    async def add_pair(self, x: str, y: str) -> str:
        """Watch another pair; new legs are subscribed on the open connection."""
        return await self._watch([x, y], lambda: self._new_pair(x, y))

    async def add_basket(self, symbols: Sequence[str]) -> str:
        """Watch another basket (3 to 12 legs, key ``A+B+C``) with the config's timeframe,
        window and `[basket]` keys; new legs are subscribed on the open connection and
        warm-started, as for `add_pair`. Returns its key."""
        legs = [str(s) for s in symbols]
        return await self._watch(legs, lambda: self._new_basket(legs))

    async def _watch(
        self, legs: Sequence[str], make: Callable[[], PairMonitor | BasketMonitor]
    ) -> str:
        """`add_pair` and `add_basket`: check the legs a replay or the exchange does not
        know, make the monitor, subscribe and warm-start its new legs, recompute it."""
        if isinstance(self.feed, Replay) and not set(legs) <= set(self.feed.symbols):
            raise EngineError("a replay cannot add symbols it does not replay")
        new = [s for s in dict.fromkeys(legs) if s not in self.symbols]
        if new and isinstance(self.feed, Ingestion):
            from quanttui.feed.binance import check_symbols

            try:
                warning = await check_symbols(self.feed.rest, new)
            except SymbolError as exc:
                raise EngineError(str(exc)) from None
            if warning:
                self.publish(Notice(warning, "Symbols not verified", "warning"))
        mon = make()
        if new:
            await self.feed.subscribe(new)
            self._start_backfill(new)
        self.publish(PairsChanged(self.pair_infos(), tuple(self.symbols)))
        self._spawn(self.rebuild(mon, new_params=True))
        return mon.key

    async def remove_pair(self, key: str) -> None:
        """Stop watching a pair (or a basket, by its key ``A+B+C``); legs no other pair
        uses are unsubscribed."""
        mon = self.pairs.pop(key, None)
        if mon is None:
            raise EngineError(f"no such pair {key}")
        mon.generation += 1
        still = set(self.symbols)
        gone = [s for s in mon.symbols if s not in still]
        for s in gone:
            self.last_rx.pop(s, None)
        if gone:
            await self.feed.unsubscribe(gone)
        self.publish(PairsChanged(self.pair_infos(), tuple(self.symbols)))

    async def set_meta(self, key: str, value: str) -> None:
        """Keep a view's small state (the last watchlist, `quanttui.store.state`) in the
        `meta` table, through the one writer."""
        await self.feed.writer.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value)
        )

    def add_rule(self, text: str, key: str | None = None) -> str:
        """Add a rule to one pair (or every pair); returns its normalised text. Raises
        `EngineError` for a rule that does not parse or is already there."""
        a = self.cfg.analytics
        targets = [self._pair(key)] if key else list(self.pairs.values())
        names = tuple(dict.fromkeys(n for m in targets for n in m.metric_names))
        try:
            rule = parse_rule(
                text, entry_z=a.entry_z, exit_z=a.exit_z, **({"names": names} if names else {})
            )
        except RuleError as exc:
            raise EngineError(str(exc)) from None
        added = False
        for mon in targets:
            if rule.metric not in mon.metric_names:
                continue
            if mon.book.rules.add(rule):
                mon.rule_texts.append(rule.text)
                added = True
                self.publish(RulesChanged(mon.key, tuple(mon.rule_texts)))
        if not added:
            raise EngineError(f"already there: {rule.text}")
        return rule.text

    def remove_rule(self, text: str, key: str | None = None) -> bool:
        targets = [self._pair(key)] if key else list(self.pairs.values())
        removed = False
        for mon in targets:
            if mon.book.rules.remove(text):
                mon.rule_texts = [r.text for r in mon.book.rules.rules]
                removed = True
                self.publish(RulesChanged(mon.key, tuple(mon.rule_texts)))
        return removed

    def rules(self, key: str) -> list[str]:
        return list(self._pair(key).rule_texts)

    async def export(
        self,
        keys: Sequence[str] | None = None,
        out_dir: str | Path | None = None,
        *,
        watchlist: bool | None = None,
    ) -> ExportDone:
        """CSVs of everything received up to now: the writer's queue is committed first.
        One pair: its files in `out_dir`; several (or `watchlist=True`): one timestamped
        directory with every pair's files (named per pair) and a `watchlist.csv` summary
        (`quanttui.export.export_watchlist`)."""
        from quanttui.export import ExportError, export_basket, export_pair, export_watchlist

        await self.commit_received()
        every = [self._pair(k) for k in keys] if keys else list(self.pairs.values())
        baskets = [m for m in every if isinstance(m, BasketMonitor)]
        mons = [m for m in every if not isinstance(m, BasketMonitor)]
        target = out_dir or self.cfg.export.dir
        db = self.feed.writer.path
        many = len(mons) > 1 if watchlist is None else watchlist
        rows = [
            (m.params, m.snapshot, m.book.emitted[-1] if m.book.emitted else None) for m in mons
        ]
        # the analytics end where each pair's live bars do: at the bar of its snapshot
        ends = {m.params.pair: m.settled_end() for m in every}
        clock = self.now() or None

        def write() -> list[str]:
            conn = connect(db, readonly=True)
            try:
                done_baskets: list[str] = []
                for b in baskets:
                    files = export_basket(
                        conn, b.params, target, settled_end_ms=ends[b.key], now_ms=clock
                    )
                    done_baskets += [f"{p} ({n:,} rows)" for p, n in files.values()]
                if not mons:
                    return done_baskets
                if many:
                    folder, n = export_watchlist(
                        conn, rows, target, settled_ends=ends, now_ms=clock
                    )
                    return [f"{folder} ({len(rows)} pairs, {n} CSV files)", *done_baskets]
                out: list[str] = done_baskets
                for mon in mons:
                    done = export_pair(
                        conn,
                        mon.params,
                        target,
                        settled_end_ms=ends[mon.params.pair],
                        now_ms=clock,
                    )
                    out += [f"{p} ({n:,} rows)" for p, n in done.values()]
                return out
            finally:
                conn.close()

        try:
            paths = await asyncio.to_thread(write)
        except ExportError as exc:
            ev = ExportDone((), str(exc))
        else:
            ev = ExportDone(tuple(paths))
        self.publish(ev)
        return ev

    async def backtest(self, key: str, params) -> BacktestDone:
        from quanttui.analytics.backtest import backtest_bars
        from quanttui.store.queries import load_funding_series, load_pair_bars

        mon = self._pair(key)
        pair = mon.params
        await self.commit_received()
        db = self.feed.writer.path
        if isinstance(mon, BasketMonitor):
            return await self._backtest_basket(mon, params)

        def run():
            conn = connect(db, readonly=True)
            try:
                bars = load_pair_bars(
                    conn,
                    pair.symbol_x,
                    pair.symbol_y,
                    pair.timeframe,
                    max_gap_bars=pair.max_gap_bars,
                )
                series = load_funding_series(conn, [pair.symbol_x, pair.symbol_y])
            finally:
                conn.close()
            funding = (series[pair.symbol_x], series[pair.symbol_y])
            return backtest_bars(bars, pair, params, funding=funding)

        try:
            ev = BacktestDone(key, await asyncio.to_thread(run))
        except ValueError as exc:
            ev = BacktestDone(key, None, str(exc))
        self.publish(ev)
        return ev

    async def _backtest_basket(self, mon: BasketMonitor, params) -> BacktestDone:
        """`backtest` of a basket (`quanttui.analytics.basket.backtest_basket`)."""
        from quanttui.analytics.basket import backtest_basket
        from quanttui.store.queries import load_basket_bars, load_funding_series

        b = mon.params
        db = self.feed.writer.path

        def run():
            conn = connect(db, readonly=True)
            try:
                bars = load_basket_bars(
                    conn, list(b.symbols), b.timeframe, max_gap_bars=b.max_gap_bars
                )
                series = load_funding_series(conn, list(b.symbols))
            finally:
                conn.close()
            return backtest_basket(
                bars,
                b,
                params,
                funding=[series[s] for s in b.symbols],
                min_rank=self.cfg.basket.min_rank,
            )

        try:
            ev = BacktestDone(mon.key, await asyncio.to_thread(run))
        except ValueError as exc:
            ev = BacktestDone(mon.key, None, str(exc))
        self.publish(ev)
        return ev


def split_rule(text: str) -> tuple[str | None, str]:
    """`X/Y: rule` -> ("X/Y", "rule"); `A+B+C: rule` -> ("A+B+C", "rule"), a basket's
    rule; a plain rule -> (None, rule)."""
    head, sep, rest = text.partition(":")
    if sep and "+" in head and all(p.strip().isalnum() for p in head.split("+")):
        return "+".join(p.strip().upper() for p in head.split("+")), rest.strip()
    if sep and "/" in head and all(p.strip().isalnum() for p in head.split("/")):
        x, y = (p.strip().upper() for p in head.split("/"))
        return pair_key(x, y), rest.strip()
    return None, text.strip()
