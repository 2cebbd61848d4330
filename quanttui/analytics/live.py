"""A pair's live pipeline: trades -> bar builder -> streaming analytics.

The engine (`quanttui.engine`) drives one `LivePair` per pair: feed it trades and the clock,
get back the bars that closed. It is rebuilt from the database (`from_store`) on start and
whenever timeframe, window or hedge mode change, so a change applies to the whole stored
history, not only to new data.
"""

from __future__ import annotations

import sqlite3
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


@dataclass(frozen=True, slots=True)
class PairParams:
    symbol_x: str
    symbol_y: str
    timeframe: str
    window: int
    hedge: str
    kalman_delta: float = 1e-8
    kalman_obs_var: float = 1e-5

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
