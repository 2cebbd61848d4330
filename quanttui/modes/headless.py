"""`quanttui X Y --headless`: ingestion, analytics and alerts with no UI.

One JSON line per alert on stdout (`{"time", "pair", "rule", "metric", "value",
"threshold"}`), status on stderr. SIGINT, SIGTERM and SIGHUP flush and exit 0.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import orjson

from quanttui.alerts import build_engine
from quanttui.analytics.live import (
    LivePair,
    PairParams,
    ResyncTimer,
    StallGuard,
)
from quanttui.analytics.snapshot import build_snapshot
from quanttui.analytics.stationarity import Stationarity, stationarity, warm_up
from quanttui.config import Config
from quanttui.feed.binance import now_ms
from quanttui.feed.ingest import Ingestion
from quanttui.feed.replay import ReplaySpec, open_feed
from quanttui.model import Tick, iso_utc
from quanttui.modes import start_checked
from quanttui.store.db import connect
from quanttui.store.writer import INSERT_ALERT
from quanttui.textsafe import printable


class HeadlessPair:
    """LivePair + alert rules + stationarity tests, shared by live and replay headless runs."""

    def __init__(
        self,
        cfg: Config,
        params: PairParams,
        extra_rules: Sequence[str],
        store: Callable[[str, tuple], Awaitable[None]],
    ) -> None:
        a, al = cfg.analytics, cfg.alerts
        self.params = params
        self.alerts = build_engine(
            params.pair,
            [*al.rules, *extra_rules],
            entry_z=a.entry_z,
            exit_z=a.exit_z,
            hysteresis=al.hysteresis,
            cooldown_s=al.cooldown_s,
        )
        self.pair: LivePair | None = None
        self.stat = Stationarity()
        self._store = store
        self.fired = 0

    def load(self, db_path: str | Path, end_ms: int) -> set[tuple[str, int]]:
        """(Re)build from the database; returns the ids `LivePair.resume` already took."""
        conn = connect(db_path, readonly=True)
        try:
            self.pair, seen = LivePair.resume(conn, self.params, end_ms)
        finally:
            conn.close()
        return seen

    async def on_closed(self) -> None:
        pair = self.pair
        if pair is None or pair.engine.last is None:
            return
        e = pair.engine
        if len(e.window_spread) == e.window:
            self.stat = await asyncio.to_thread(
                stationarity, list(e.window_spread), list(e.window_x), list(e.window_y)
            )
        else:
            self.stat = Stationarity()
        p = self.params
        snap = build_snapshot(e, p.symbol_x, p.symbol_y, p.timeframe, self.stat, run_tests=False)
        if snap.time_ms is None:
            return
        for a in self.alerts.evaluate(snap.metrics(), snap.time_ms):
            self.fired += 1
            line = {k: printable(v) if isinstance(v, str) else v for k, v in a.as_json().items()}
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
            await self._store(
                INSERT_ALERT, (a.ts_ms, a.pair, a.rule, a.metric, a.value, a.threshold)
            )

    async def add(self, ticks: list[Tick]) -> None:
        """Trade by trade, so each closed bar is evaluated, even in a batch spanning bars."""
        if self.pair is None:
            return
        for t in ticks:
            if self.pair.add((t,)):
                await self.on_closed()

    async def advance(self, now: int) -> None:
        if self.pair is not None and self.pair.advance(now):
            await self.on_closed()


async def _headless(
    cfg: Config, sx: str, sy: str, extra_rules: Sequence[str], replay: ReplaySpec | None
) -> int:
    a = cfg.analytics
    params = PairParams(sx, sy, a.timeframe, a.window, a.hedge, a.kalman_delta, a.kalman_obs_var)
    queue: asyncio.Queue[list[Tick]] = asyncio.Queue()

    def status(state: str, detail: str) -> None:
        print(f"feed: {state} {printable(detail, one_line=True)}".rstrip(), file=sys.stderr)

    ing = open_feed(cfg, [sx, sy], replay, on_ticks=queue.put_nowait, on_state=status)
    clock = now_ms if isinstance(ing, Ingestion) else ing.now_ms
    hp = HeadlessPair(cfg, params, extra_rules, ing.writer.execute)
    warming = asyncio.create_task(asyncio.to_thread(warm_up))
    stop = await start_checked(ing)
    end = 0
    if isinstance(ing, Ingestion):
        ing.start_backfill(a.timeframe, a.window)
        bf = await ing.wait_backfill()
        if bf is not None and bf.state in ("done", "skipped"):
            detail = printable(bf.detail, one_line=True)
            print(f"backfill {bf.state}: {bf.rows:,} rows {detail}".rstrip(), file=sys.stderr)
        end = now_ms()
        await ing.writer.flush()
    live_from = end - end % params.timeframe_ms
    seen = await asyncio.to_thread(hp.load, ing.writer.path, live_from)
    recomputes = 0
    print(
        f"headless {params.pair} {a.timeframe} W={a.window} {a.hedge}: "
        f"{hp.pair.engine.bars} bars loaded"
        + (f", live from {iso_utc(live_from)}" if replay is None else ", replaying"),
        file=sys.stderr,
    )

    async def recompute() -> None:
        """Rebuild from the database, as the app does: late trades (REST backfill after a
        disconnect or stall) are stored but cannot change closed bars."""
        nonlocal live_from, seen, recomputes
        end = clock()
        await ing.writer.flush()
        live_from = end - end % params.timeframe_ms
        seen = await asyncio.to_thread(hp.load, ing.writer.path, live_from)
        recomputes += 1
        print(f"recomputed from the database ({recomputes})", file=sys.stderr)

    async def pipeline() -> None:
        """One task owns the pipeline, so a bar's alerts are evaluated (after its
        stationarity tests) before the next bar can close. Trades close bars as they
        arrive; the clock closes them only when the queue has been quiet for 0.2 s.
        When the live bars part from the database's (`LivePair.diverged`: late trades, or
        fills of a silence that turned out too long), a recompute follows once that has
        settled (`ResyncTimer`)."""
        guard = StallGuard(0.2)
        timer = ResyncTimer()
        while True:
            if timer.ready():
                await recompute()
            try:
                ticks = await asyncio.wait_for(queue.get(), 0.2)
            except TimeoutError:
                if guard.ready() and clock() and hp.pair is not None:
                    diverged = hp.pair.diverged
                    await hp.advance(clock())
                    timer.watch(hp.pair, diverged)
                if replay is not None and ing.finished.is_set() and queue.empty():
                    stop.set()
                continue
            guard.ready()
            assert hp.pair is not None
            diverged = hp.pair.diverged
            await hp.add(
                [
                    t
                    for t in ticks
                    if t.ts_ms >= live_from and (not seen or (t.symbol, t.trade_id) not in seen)
                ]
            )
            timer.watch(hp.pair, diverged)

    tasks = [asyncio.create_task(pipeline()), warming]
    await stop.wait()
    for t in tasks:
        t.cancel()
    await ing.stop()
    print(
        f"stopped: {ing.feed.stats.ticks:,} trades, {hp.fired} alerts, {recomputes} recomputes",
        file=sys.stderr,
    )
    return 0


def run(
    cfg: Config,
    sx: str,
    sy: str,
    *,
    extra_rules: Sequence[str] = (),
    replay: ReplaySpec | None = None,
) -> int:
    return asyncio.run(_headless(cfg, sx, sy, extra_rules, replay))
