"""A pair's live pipeline: trades -> bar builder -> streaming analytics.

The app and the headless modes both drive one `LivePair`: feed it trades and the clock,
get back the bars that closed. It is rebuilt from the database (`from_store`) on start and
whenever timeframe, window or hedge mode change, so a change applies to the whole stored
history, not only to new data.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from quanttui.analytics.bars import BarBuilder, PairBars
from quanttui.analytics.engine import BarMetrics, PairAnalytics
from quanttui.analytics.snapshot import run_bars
from quanttui.config import TIMEFRAMES
from quanttui.model import PairBar, Tick

CLOSE_GRACE_MS = 250
"""A bar is closed this long after its end, so trades stamped just before the boundary
that arrive a little late (network, exchange latency) still land in it."""

RESYNC_DELAY_S = 1.0
"""Trades that arrive after their bar closed (the REST backfill of trades missed during a
disconnect or a stall) are stored but cannot change that bar; the live modes recompute
from the database once none has arrived for this long."""
RESYNC_MIN_INTERVAL_S = 5.0
"""At most one such recompute per this many seconds."""


class ResyncTimer:
    """When to recompute after the live bars parted from the database's.

    `watch` records a rise of `LivePair.diverged`; `ready()` is True once, when
    `RESYNC_DELAY_S` have passed since the last rise and `RESYNC_MIN_INTERVAL_S` since
    the previous recompute. Shared by the app and headless mode."""

    def __init__(self) -> None:
        self._due: float | None = None
        self._last = -RESYNC_MIN_INTERVAL_S
        self.count = 0

    @property
    def pending(self) -> bool:
        return self._due is not None

    def watch(self, pair: LivePair, diverged_before: int) -> None:
        if pair.diverged > diverged_before:
            self._due = time.monotonic() + RESYNC_DELAY_S

    def ready(self) -> bool:
        now = time.monotonic()
        if self._due is None or now < self._due or now - self._last < RESYNC_MIN_INTERVAL_S:
            return False
        self._due, self._last = None, now
        self.count += 1
        return True


@dataclass(frozen=True, slots=True)
class PairParams:
    symbol_x: str
    symbol_y: str
    timeframe: str
    window: int
    hedge: str
    kalman_delta: float = 1e-4
    kalman_obs_var: float = 1e-3

    @property
    def timeframe_ms(self) -> int:
        return TIMEFRAMES[self.timeframe]

    @property
    def pair(self) -> str:
        return f"{self.symbol_x}/{self.symbol_y}"

    def analytics(self, history: int = 600) -> PairAnalytics:
        """A fresh `PairAnalytics` for these parameters, keeping `history` bar metrics."""
        return PairAnalytics(
            self.window,
            self.hedge,
            kalman_delta=self.kalman_delta,
            kalman_obs_var=self.kalman_obs_var,
            history=history,
        )

    @property
    def max_gap_bars(self) -> int:
        """Longer silences of both legs than this are skipped, not filled (2W)."""
        return 2 * self.window


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


class LivePair:
    def __init__(self, params: PairParams, history: int = 600) -> None:
        self.params = params
        self.engine = params.analytics(history)
        self.builder = BarBuilder(
            params.symbol_x, params.symbol_y, params.timeframe_ms, max_gap_bars=params.max_gap_bars
        )
        self.last_bar: PairBar | None = None

    @classmethod
    def from_bars(cls, params: PairParams, bars: PairBars, history: int = 600) -> LivePair:
        lp = cls(params, history)
        run_bars(lp.engine, bars)
        if len(bars):
            lp.last_bar = bars.pair_bar(len(bars) - 1)
            lp.builder.seed(lp.last_bar)
        return lp

    @classmethod
    def from_store(
        cls,
        conn: sqlite3.Connection,
        params: PairParams,
        end_ms: int,
        history: int = 600,
        *,
        open_at_end: bool = True,
    ) -> LivePair:
        """History up to (excluding) the bucket containing `end_ms`. With no history the
        builder opens the bucket of `end_ms` (live: earlier trades are late), or, with
        `open_at_end` false (a replay that has not started), the first trade's bucket."""
        from quanttui.store.queries import load_pair_bars

        bars = load_pair_bars(
            conn,
            params.symbol_x,
            params.symbol_y,
            params.timeframe,
            end_ms,
            max_gap_bars=params.max_gap_bars,
        )
        lp = cls.from_bars(params, bars, history)
        if lp.builder.current is None and open_at_end:
            tf = params.timeframe_ms
            lp.builder.current = end_ms - end_ms % tf
        return lp

    @classmethod
    def resume(
        cls, conn: sqlite3.Connection, params: PairParams, end_ms: int, history: int = 600
    ) -> tuple[LivePair, set[tuple[str, int]]]:
        """`from_store` up to the bucket of `end_ms`, then that still-open bucket from its
        stored trades. Returns the pipeline and the `(symbol, trade_id)` of the trades it
        took from the open bucket, so a caller can skip them when they also arrive live."""
        from quanttui.store.queries import load_ticks

        pair = cls.from_store(conn, params, end_ms, history, open_at_end=end_ms > 0)
        if end_ms <= 0:
            return pair, set()
        open_bucket = load_ticks(conn, [params.symbol_x, params.symbol_y], end_ms)
        pair.add(open_bucket)
        return pair, {(t.symbol, t.trade_id) for t in open_bucket}

    @property
    def diverged(self) -> int:
        """How often the live bars have parted from what a recompute from the database
        would give: late trades plus filled bars of a silence later skipped. A rise is
        the cue to recompute (`resume`)."""
        return self.builder.late + self.builder.retracted

    def _apply(self, bars: list[PairBar]) -> list[BarMetrics]:
        out = []
        for b in bars:
            out.append(self.engine.update(b.ts_ms, b.x.close, b.y.close))
            self.last_bar = b
        return out

    def add(self, ticks: Iterable[Tick]) -> list[BarMetrics]:
        closed: list[PairBar] = []
        for t in ticks:
            closed += self.builder.add(t)
        return self._apply(closed)

    def advance(self, now_ms: int, grace_ms: int = CLOSE_GRACE_MS) -> list[BarMetrics]:
        return self._apply(self.builder.advance(now_ms - grace_ms))
