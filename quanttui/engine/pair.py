"""One pair inside the engine: its live pipeline, rules, stationarity and resync state.

`PairMonitor` holds no I/O of its own; the engine feeds it trades and the clock, runs
its recomputes and stationarity tests, and publishes what it returns.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quanttui.alerts import AlertEngine
from quanttui.analytics.engine import BarMetrics
from quanttui.analytics.funding import FundingState
from quanttui.analytics.live import LivePair, PairParams
from quanttui.analytics.snapshot import build_snapshot
from quanttui.analytics.stationarity import Stationarity
from quanttui.config import TIMEFRAMES
from quanttui.engine.alertbook import AlertBook
from quanttui.engine.events import PairInfo, SnapshotEvent
from quanttui.model import METRIC_NAMES, Alert, Snapshot, Tick

RESYNC_DELAY_S = 1.0
"""Trades that arrive after their bar closed (the REST backfill of trades missed during a
disconnect or a stall) are stored but cannot change that bar; the engine recomputes
from the database once none has arrived for this long."""
RESYNC_MIN_INTERVAL_S = 5.0
"""At most one such recompute per this many seconds."""
RESYNC_HOLD_MAX_S = 30.0
"""A due recompute waits while the feed still fetches missed trades over REST (holes are
filled one at a time, so one leg's come in while the other's are still on the way), at
most this long past due: a recompute in between would revise alerts on bars that the
next one changes again."""
MAX_PENDING = 500_000
"""Trades kept for a pair while it is being rebuilt (added at the seam); older ones are
dropped (they are in the database, and the rebuild asks for a resync that reloads them,
see `ResyncTimer.request`). At 216 bytes
a `Tick` that is about 108 MB at most, held only during a rebuild (100 s at 5k trades/s)."""
HISTORY = 600
"""Bars of metrics each pair keeps in memory: the charts' history (and the cursor's and
zoom's), the alert re-evaluation horizon (`AlertBook` checkpoints) and the length of a
snapshot's series: about 0.6 MB a pair, snapshot included (tracemalloc, W=300)."""


class ResyncTimer:
    """When to recompute after the live bars parted from the database's.

    `watch` records a rise of `LivePair.diverged`; `ready()` is True once, when
    `RESYNC_DELAY_S` have passed since the last rise and `RESYNC_MIN_INTERVAL_S` since
    the previous recompute, and, with `hold` (missed trades still being fetched), not
    before `RESYNC_HOLD_MAX_S` past due."""

    def __init__(self) -> None:
        self._due: float | None = None
        self._last = -RESYNC_MIN_INTERVAL_S
        self.count = 0

    @property
    def pending(self) -> bool:
        return self._due is not None

    def watch(self, pair: LivePair, diverged_before: int) -> None:
        if pair.diverged > diverged_before:
            self.request()

    def request(self) -> None:
        self._due = time.monotonic() + RESYNC_DELAY_S

    def ready(self, hold: bool = False) -> bool:
        now = time.monotonic()
        if self._due is None or now < self._due or now - self._last < RESYNC_MIN_INTERVAL_S:
            return False
        if hold and now < self._due + RESYNC_HOLD_MAX_S:
            return False
        self._due, self._last = None, now
        self.count += 1
        return True


class StallGuard:
    """Holds the clock back for one tick after the event loop stalled.

    Bars are closed by the clock only when the feed is quiet. After a stall (a blocking
    import, a slow disk) the clock callback can run before the feed has read the trades
    that queued up meanwhile; closing bars then would drop those trades from their bars.
    `ready()` is False once whenever the previous call is more than twice `period_s` ago,
    which gives the feed one turn of the loop first.
    """

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._last: float | None = None

    def ready(self) -> bool:
        now = time.monotonic()
        last, self._last = self._last, now
        return last is None or now - last <= 2 * self.period_s


def bar_metrics(m: BarMetrics, bars: int, timeframe: str) -> dict[str, float]:
    """The rule metrics of one closed bar (`quanttui.model.METRIC_NAMES` less the
    stationarity tests), the same numbers `Snapshot.metrics()` gives at that bar;
    undefined ones are left out."""
    hl = m.half_life_bars
    raw = {
        "price_x": m.x,
        "price_y": m.y,
        "close_x": m.x,
        "close_y": m.y,
        "alpha": m.alpha,
        "beta": m.beta,
        "r2": m.r2,
        "beta_se": m.beta_se,
        "spread": m.spread,
        "spread_mean": m.spread_mean,
        "zscore": m.zscore,
        "corr": m.corr,
        "half_life_bars": hl,
        "half_life_s": hl * TIMEFRAMES[timeframe] / 1000,
        "return_beta": m.return_beta,
        "return_r2": m.return_r2,
        "return_beta_se": m.return_beta_se,
        "bars": float(bars),
    }
    for name in ("kalman_q", "kalman_z"):
        v = getattr(m, name, None)
        if v is not None:
            raw[name] = v
    return {k: float(v) for k, v in raw.items() if math.isfinite(v)}


class BarRules:
    """What a pair's and a basket's monitors share: trades buffered during a recompute,
    and the rules evaluated on each closed bar's metrics, named as `metric_values`
    (`bar_metrics` for a pair, `quanttui.analytics.basket.basket_metrics` for a basket)
    gives them."""

    metric_values: Callable[[Any, int, str], dict[str, float]]

    def buffer(self, ticks: list[Tick]) -> None:
        self.pending.extend(ticks)
        if len(self.pending) > MAX_PENDING:
            drop = len(self.pending) - MAX_PENDING
            del self.pending[:drop]
            self.pending_dropped += drop

    def bars_index(self, i_from_end: int) -> int:
        assert self.live is not None
        return self.live.engine.bars - i_from_end

    def closed(self, metrics: list[Any]) -> list[Alert]:
        """Evaluate the bar rules on bars that just closed (deferred while a resync is
        pending, see `AlertBook`)."""
        if self.live is None:
            return []
        fired: list[Alert] = []
        n = len(metrics)
        for i, m in enumerate(metrics):
            values = self.metric_values(m, self.bars_index(n - 1 - i), self.params.timeframe)
            fired += self.book.on_bar(m.ts_ms, values, defer=self.resync.pending)
        return fired

    def history_metrics(self) -> list[tuple[int, dict[str, float]]]:
        assert self.live is not None
        hist = list(self.live.engine.history)
        n = len(hist)
        return [
            (m.ts_ms, self.metric_values(m, self.bars_index(n - 1 - i), self.params.timeframe))
            for i, m in enumerate(hist)
        ]


@dataclass
class PairMonitor(BarRules):
    metric_values = staticmethod(bar_metrics)

    key: str
    params: PairParams
    book: AlertBook
    rule_texts: list[str]
    live: LivePair | None = None
    generation: int = 0
    pending: list[Tick] = field(default_factory=list)
    pending_dropped: int = 0
    stat: Stationarity = field(default_factory=Stationarity)
    stat_ts: int | None = None
    stat_running: bool = False
    resync: ResyncTimer = field(default_factory=ResyncTimer)
    snapshot: Snapshot | None = None
    stored_ticks: int = 0
    funding: FundingState | None = None
    marks_dirty: bool = False

    def __post_init__(self) -> None:
        self.reset_funding()

    def reset_funding(self, intervals: dict[str, int] | None = None) -> None:
        """A `FundingState` for the current legs and hedge (kept marks carried over)."""
        p = self.params
        old = self.funding
        self.funding = FundingState(p.symbol_x, p.symbol_y, log_hedge=p.hedge == "log")
        if old is not None:
            self.funding.set_intervals(old.intervals)
            for mp in old.latest.values():
                self.funding.update(mp)
        if intervals:
            self.funding.set_intervals(intervals)

    @property
    def symbols(self) -> tuple[str, str]:
        return self.params.symbol_x, self.params.symbol_y

    @property
    def info(self) -> PairInfo:
        p = self.params
        return PairInfo(self.key, p.symbol_x, p.symbol_y, p.timeframe, p.window, p.hedge)

    metric_names = METRIC_NAMES
    """What this pair's rules may name (a basket's are `BASKET_METRIC_NAMES`)."""

    def snapshot_event(self, snap: Snapshot) -> SnapshotEvent:
        return SnapshotEvent(self.key, snap)

    def build_snapshot(self, now_ms: int) -> Snapshot | None:
        """The snapshot at the last closed bar, with the funding metrics at `now_ms`."""
        if self.live is None:
            return None
        p = self.params
        snap = build_snapshot(
            self.live.engine, p.symbol_x, p.symbol_y, p.timeframe, self.stat, run_tests=False
        )
        if self.funding is not None and self.funding.latest:
            snap = dataclasses.replace(
                snap, funding=self.funding.metrics(snap.beta, snap.zscore, now_ms)
            )
        self.snapshot = snap
        self.marks_dirty = False
        return snap

    def settled_end(self) -> int | None:
        """Where this pair's settled bars end (`quanttui.analytics.bars.settled_end`): the
        start of the bucket its live builder has open, so the bars before it are the ones
        it has closed, run the rules on and shown. While the pair is being rebuilt, the
        bucket after its last snapshot's (if that snapshot has the current parameters);
        else None."""
        live = self.live
        if live is not None and live.builder.current is not None:
            return live.builder.current
        s, p = self.snapshot, self.params
        if (
            s is not None
            and s.time_ms is not None
            and (s.symbol_x, s.symbol_y, s.timeframe) == (p.symbol_x, p.symbol_y, p.timeframe)
        ):
            return s.time_ms + p.timeframe_ms
        return None

    def wants_stationarity(self) -> bool:
        live = self.live
        if live is None or live.engine.last is None or self.stat_running:
            return False
        e = live.engine
        return self.stat_ts != e.last.ts_ms and len(e.window_spread) == e.window


def make_rules(texts: list[str], pair: str, engine_args: dict) -> AlertEngine:
    from quanttui.alerts import build_engine

    return build_engine(pair, texts, **engine_args)
