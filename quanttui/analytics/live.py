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
from typing import Any, Generic, Protocol, Self, TypeVar

from quanttui.analytics.bars import BarBuilder, BasketBar, PairBars
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


class _LegParams(Protocol):
    @property
    def timeframe_ms(self) -> int: ...

    @property
    def max_gap_bars(self) -> int: ...

    def analytics(self, history: int = 600) -> Any: ...


P = TypeVar("P", bound=_LegParams)
B = TypeVar("B", PairBar, BasketBar)
M = TypeVar("M")


class LiveLegs(Generic[P, B, M]):
    """What a pair's (`LivePair`) and a basket's (`quanttui.analytics.basket.LiveBasket`)
    live pipelines share: rebuilt from the stored bars (`from_bars`, `from_store`),
    resumed into the open bucket from its stored trades (`resume`), then fed trades and
    the clock (`add`, `advance`), returning the metrics of the bars that closed.

    A subclass names its legs (`symbols`), makes its bar builder (`_builder`), loads and
    replays its stored bars (`_load`, `_replay`) and turns a closed bar into metrics
    (`_close`)."""

    def __init__(self, params: P, history: int = 600) -> None:
        self.params = params
        self.engine = params.analytics(history)
        self.builder = self._builder(params)
        self.last_bar: B | None = None

    @property
    def symbols(self) -> list[str]:
        raise NotImplementedError

    @staticmethod
    def _builder(params: P) -> Any:
        raise NotImplementedError

    @staticmethod
    def _load(conn: sqlite3.Connection, params: P, end_ms: int) -> Any:
        """The stored bars before the bucket of `end_ms`."""
        raise NotImplementedError

    def _replay(self, bars: Any) -> B | None:
        """Run the engine over stored `bars`; returns the last of them (None if none)."""
        raise NotImplementedError

    def _close(self, bar: B) -> M:
        raise NotImplementedError

    @classmethod
    def from_bars(cls, params: P, bars: Any, history: int = 600) -> Self:
        live = cls(params, history)
        last = live._replay(bars)
        if last is not None:
            live.last_bar = last
            live.builder.seed(last)
        return live

    @classmethod
    def from_store(
        cls,
        conn: sqlite3.Connection,
        params: P,
        end_ms: int,
        history: int = 600,
        *,
        open_at_end: bool = True,
    ) -> Self:
        """History up to (excluding) the bucket containing `end_ms`. With no history the
        builder opens the bucket of `end_ms` (live: earlier trades are late), or, with
        `open_at_end` false (a replay that has not started), the first trade's bucket."""
        live = cls.from_bars(params, cls._load(conn, params, end_ms), history)
        if live.builder.current is None and open_at_end:
            tf = params.timeframe_ms
            live.builder.current = end_ms - end_ms % tf
        return live

    @classmethod
    def resume(
        cls, conn: sqlite3.Connection, params: P, end_ms: int, history: int = 600
    ) -> tuple[Self, set[tuple[str, int]]]:
        """`from_store` up to the bucket of `end_ms`, then that still-open bucket from its
        stored trades. Returns the pipeline and the `(symbol, trade_id)` of the trades it
        took from the open bucket, so a caller can skip them when they also arrive live."""
        from quanttui.store.queries import load_ticks

        live = cls.from_store(conn, params, end_ms, history, open_at_end=end_ms > 0)
        if end_ms <= 0:
            return live, set()
        open_bucket = load_ticks(conn, live.symbols, end_ms)
        live.add(open_bucket)
        return live, {(t.symbol, t.trade_id) for t in open_bucket}

    @property
    def diverged(self) -> int:
        """How often the live bars have parted from what a recompute from the database
        would give: late trades plus filled bars of a silence later skipped. A rise is
        the cue to recompute (`resume`)."""
        return self.builder.late + self.builder.retracted

    def _apply(self, bars: list[B]) -> list[M]:
        out = []
        for b in bars:
            out.append(self._close(b))
            self.last_bar = b
        return out

    def add(self, ticks: Iterable[Tick]) -> list[M]:
        closed: list[B] = []
        for t in ticks:
            closed += self.builder.add(t)
        return self._apply(closed)

    def advance(self, now_ms: int, grace_ms: int = CLOSE_GRACE_MS) -> list[M]:
        return self._apply(self.builder.advance(now_ms - grace_ms))


class LivePair(LiveLegs[PairParams, PairBar, BarMetrics]):
    """A pair's live pipeline (`LiveLegs`): X and Y trades in, `BarMetrics` out."""

    engine: PairAnalytics
    builder: BarBuilder

    @property
    def symbols(self) -> list[str]:
        return [self.params.symbol_x, self.params.symbol_y]

    @staticmethod
    def _builder(params: PairParams) -> BarBuilder:
        return BarBuilder(
            params.symbol_x, params.symbol_y, params.timeframe_ms, max_gap_bars=params.max_gap_bars
        )

    @staticmethod
    def _load(conn: sqlite3.Connection, params: PairParams, end_ms: int) -> PairBars:
        from quanttui.store.queries import load_pair_bars

        return load_pair_bars(
            conn,
            params.symbol_x,
            params.symbol_y,
            params.timeframe,
            end_ms,
            max_gap_bars=params.max_gap_bars,
        )

    def _replay(self, bars: PairBars) -> PairBar | None:
        run_bars(self.engine, bars)
        return bars.pair_bar(len(bars) - 1) if len(bars) else None

    def _close(self, bar: PairBar) -> BarMetrics:
        return self.engine.update(bar.ts_ms, bar.x.close, bar.y.close)
