"""OHLCV bars of both legs on one shared, epoch-aligned grid.

A trade belongs to bucket ``floor(T / tf) * tf`` where ``T`` is the trade time in UTC
epoch ms (never the event time ``E``) and ``tf`` the timeframe in ms. Both legs share
the grid, which starts at the first bucket in which both legs have traded at least once.
A bucket in which a leg did not trade repeats that leg's previous close as O=H=L=C with
volume 0 and `filled=True`.

There are two builders with one meaning: `BarBuilder` for live data, one trade at a
time, which closes a bar when the clock passes its end (`advance`), and `pair_bars`, a
vectorised numpy version for recomputes from stored ticks. Tests hold them equal to each
other and to a pandas resample.

Which bars are *settled* (closed, never to change but by a recompute) is one rule,
`settled_end`: the live builder applies it as trades and the clock come in, and every
view of stored data (`quanttui snapshot`, `quanttui export`, the engine's export) applies
it to the database, so none of them reports a bar the alerts have not been run on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from quanttui.model import Bar, PairBar, Tick


class _Leg:
    __slots__ = ("open", "high", "low", "close", "volume", "trades", "last_close")

    def __init__(self) -> None:
        self.last_close: float | None = None
        self.trades = 0
        self.open = self.high = self.low = self.close = self.volume = 0.0

    def add(self, price: float, qty: float) -> None:
        if self.trades == 0:
            self.open = self.high = self.low = price
            self.volume = 0.0
        elif price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.close = price
        self.volume += qty
        self.trades += 1

    def close_bar(self, ts_ms: int) -> Bar | None:
        if self.trades:
            bar = Bar(ts_ms, self.open, self.high, self.low, self.close, self.volume, self.trades)
            self.last_close = self.close
            self.trades = 0
            return bar
        if self.last_close is None:
            return None
        c = self.last_close
        return Bar(ts_ms, c, c, c, c, 0.0, 0, filled=True)


class _Buckets:
    """The clock of `BarBuilder` and `BasketBuilder`: trades go into the open bucket's
    legs, a trade of a later bucket or the clock closes the buckets before it, a late
    trade is counted and dropped, and a silence of every leg longer than `max_gap_bars`
    buckets is skipped. Subclasses name their legs (`_legs`) and make their bar (`_bar`)."""

    _legs: list[_Leg]

    def _clock(self, timeframe_ms: int, max_gap_bars: int | None) -> None:
        if timeframe_ms <= 0:
            raise ValueError(f"timeframe_ms must be > 0, got {timeframe_ms}")
        self.tf = timeframe_ms
        self.max_gap_bars = max_gap_bars
        self.current: int | None = None
        self.last_traded: int | None = None
        self.late = 0
        self.ignored = 0
        self.skipped = 0
        self.retracted = 0
        self._silent = 0

    def _seed(self, ts_ms: int, legs: Sequence[Bar]) -> None:
        for leg, bar in zip(self._legs, legs, strict=True):
            leg.last_close = bar.close
        self.current = ts_ms + self.tf
        self.last_traded = ts_ms

    def _take(self, leg: _Leg | None, tick: Tick) -> list:
        if leg is None or not (tick.price > 0 and tick.qty > 0):
            self.ignored += 1
            return []
        bucket = tick.ts_ms - tick.ts_ms % self.tf
        closed: list = []
        if self.current is None:
            self.current = bucket
        elif bucket < self.current:
            self.late += 1
            return closed
        elif bucket > self.current:
            closed = self._close_until(bucket)
        leg.add(tick.price, tick.qty)
        self.last_traded = bucket
        return closed

    def advance(self, now_ms: int) -> list:
        """Close every bucket that ends at or before `now_ms`."""
        if self.current is None:
            return []
        return self._close_until(now_ms - now_ms % self.tf)

    def _bar(self, ts_ms: int, legs: list[Bar]) -> object:
        raise NotImplementedError

    def _close_until(self, bucket: int) -> list:
        out: list = []
        while self.current is not None and self.current < bucket:
            t = self.current
            silent = all(leg.trades == 0 for leg in self._legs)
            if (
                self.max_gap_bars is not None
                and silent
                and self.last_traded is not None
                and (bucket - self.last_traded) // self.tf - 1 > self.max_gap_bars
            ):
                self.skipped += (bucket - t) // self.tf
                self.retracted += self._silent
                self._silent = 0
                self.current = bucket
                break
            bars = [leg.close_bar(t) for leg in self._legs]
            if all(b is not None for b in bars):
                out.append(self._bar(t, bars))
                self._silent = self._silent + 1 if silent else 0
            self.current = t + self.tf
        return out


class BarBuilder(_Buckets):
    """Incremental pair-bar builder.

    Feed trades with `add` and the clock with `advance`; both return the bars that closed,
    oldest first. A trade older than the open bucket is *late*: it is counted in `late`
    and not applied, so closed bars (and analytics derived from them) never change
    silently. A recompute from the database picks such trades up.

    A silence of both legs longer than `max_gap_bars` buckets is skipped, as a recompute
    skips it. A clock ticking through the silence has by then closed its first
    `max_gap_bars` buckets as filled bars, which a recompute would not have; their number
    is added to `retracted`, the cue for the caller to recompute.
    """

    def __init__(
        self, symbol_x: str, symbol_y: str, timeframe_ms: int, max_gap_bars: int | None = None
    ) -> None:
        self._clock(timeframe_ms, max_gap_bars)
        self.symbol_x = symbol_x
        self.symbol_y = symbol_y
        self._x = _Leg()
        self._y = _Leg()
        self._legs = [self._x, self._y]

    def seed(self, last_bar: PairBar) -> None:
        """Continue after stored history: the next bucket follows `last_bar`."""
        self._seed(last_bar.ts_ms, (last_bar.x, last_bar.y))

    def add(self, tick: Tick) -> list[PairBar]:
        if tick.symbol == self.symbol_x:
            return self._take(self._x, tick)
        if tick.symbol == self.symbol_y:
            return self._take(self._y, tick)
        return self._take(None, tick)

    def _bar(self, ts_ms: int, legs: list[Bar]) -> PairBar:
        return PairBar(ts_ms, legs[0], legs[1])


def settled_end(
    timeframe_ms: int,
    newest_ms: int | None,
    now_ms: int | None = None,
    grace_ms: int = 0,
) -> int | None:
    """Where the settled bars end: the start of the first bucket that is not settled
    (every bar before it is), or None with nothing to go by.

    A bar ``[t, t + tf)`` is settled once something at or after its end has been seen:

    * a trade of either leg with ``T >= t + tf``; `newest_ms` is the newest such time
      (`BarBuilder.add` closes the open bar on the first trade of a later bucket), or
    * the clock: ``now_ms - grace_ms >= t + tf`` (`BarBuilder.advance`, which
      `quanttui.analytics.live.LivePair.advance` calls with the clock less
      `CLOSE_GRACE_MS`).

    So with ``E = max(newest_ms, now_ms - grace_ms)`` the settled bars are those before
    ``floor(E / tf) * tf``: the bucket holding ``E`` is the one still open. Stored data
    read later has no clock of the run that wrote it (a recording that stopped 30 s into
    a minute would otherwise count that half minute as a bar once the minute is past),
    so offline views pass no `now_ms` and the newest stored trade decides.
    """
    if timeframe_ms <= 0:
        raise ValueError(f"timeframe_ms must be > 0, got {timeframe_ms}")
    seen = [v for v in (newest_ms, None if now_ms is None else now_ms - grace_ms) if v is not None]
    if not seen:
        return None
    e = max(seen)
    return e - e % timeframe_ms


@dataclass(frozen=True, slots=True)
class LegBars:
    """Traded buckets of one leg, as parallel arrays (no filled buckets)."""

    ts_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray

    @classmethod
    def empty(cls) -> LegBars:
        f = np.empty(0)
        return cls(np.empty(0, np.int64), f, f, f, f, f, np.empty(0, np.int64))


def leg_bars(ts_ms: np.ndarray, price: np.ndarray, qty: np.ndarray, timeframe_ms: int) -> LegBars:
    """Aggregate one leg's trades, already sorted by (time, trade id), into OHLCV buckets.

    Trades with a non-positive price or quantity (Binance sends `"p":"0","q":"0"` events)
    are dropped.
    """
    keep = (price > 0) & (qty > 0)
    if not keep.all():
        ts_ms, price, qty = ts_ms[keep], price[keep], qty[keep]
    if ts_ms.size == 0:
        return LegBars.empty()
    bucket = ts_ms - ts_ms % timeframe_ms
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], bucket.size] - 1
    return LegBars(
        ts_ms=bucket[starts].astype(np.int64),
        open=price[starts],
        high=np.maximum.reduceat(price, starts),
        low=np.minimum.reduceat(price, starts),
        close=price[ends],
        volume=np.add.reduceat(qty, starts),
        trades=np.diff(np.r_[starts, bucket.size]).astype(np.int64),
    )


@dataclass(frozen=True, slots=True)
class PairBars:
    """Both legs on the shared grid: `x` and `y` hold arrays of equal length, with
    filled buckets (`*_filled`) carrying the previous close forward."""

    ts_ms: np.ndarray
    x: LegBars
    y: LegBars
    x_filled: np.ndarray
    y_filled: np.ndarray

    def __len__(self) -> int:
        return int(self.ts_ms.size)

    def tail(self, n: int) -> PairBars:
        return self.slice(max(len(self) - n, 0), len(self))

    def slice(self, lo: int, hi: int) -> PairBars:
        def cut(leg: LegBars) -> LegBars:
            return LegBars(*(getattr(leg, f)[lo:hi] for f in LegBars.__dataclass_fields__))

        return PairBars(
            self.ts_ms[lo:hi], cut(self.x), cut(self.y), self.x_filled[lo:hi], self.y_filled[lo:hi]
        )

    def pair_bar(self, i: int) -> PairBar:
        def bar(leg: LegBars, filled: np.ndarray) -> Bar:
            return Bar(
                int(leg.ts_ms[i]),
                float(leg.open[i]),
                float(leg.high[i]),
                float(leg.low[i]),
                float(leg.close[i]),
                float(leg.volume[i]),
                int(leg.trades[i]),
                bool(filled[i]),
            )

        return PairBar(int(self.ts_ms[i]), bar(self.x, self.x_filled), bar(self.y, self.y_filled))


def _on_grid(leg: LegBars, grid: np.ndarray) -> tuple[LegBars, np.ndarray]:
    pos = np.searchsorted(leg.ts_ms, grid, side="right") - 1
    hit = leg.ts_ms[pos] == grid
    close = leg.close[pos]
    filled = ~hit
    return (
        LegBars(
            ts_ms=grid,
            open=np.where(hit, leg.open[pos], close),
            high=np.where(hit, leg.high[pos], close),
            low=np.where(hit, leg.low[pos], close),
            close=close,
            volume=np.where(hit, leg.volume[pos], 0.0),
            trades=np.where(hit, leg.trades[pos], 0),
        ),
        filled,
    )


def align(
    x: LegBars,
    y: LegBars,
    timeframe_ms: int,
    end_ms: int | None = None,
    max_gap_bars: int | None = None,
) -> PairBars:
    """Put two legs on the shared grid, from the first bucket both have traded in up to
    (excluding) the bucket that contains `end_ms`, or through the last traded bucket.

    With `max_gap_bars`, a run of more than that many buckets in which neither leg
    traded is left out of the grid, as `BarBuilder` skips it."""
    if x.ts_ms.size == 0 or y.ts_ms.size == 0:
        empty = LegBars.empty()
        return PairBars(empty.ts_ms, empty, empty, np.empty(0, bool), np.empty(0, bool))
    grid = _grid((x, y), timeframe_ms, end_ms, max_gap_bars)
    gx, fx = _on_grid(x, grid)
    gy, fy = _on_grid(y, grid)
    return PairBars(grid, gx, gy, fx, fy)


def _grid(
    legs: Sequence[LegBars], timeframe_ms: int, end_ms: int | None, max_gap_bars: int | None
) -> np.ndarray:
    """The shared grid of legs that have all traded: from the first bucket every leg has
    traded in, through the last traded bucket or up to (excluding) the bucket of
    `end_ms`, with silences of every leg longer than `max_gap_bars` buckets left out."""
    tf = timeframe_ms
    start = max(int(leg.ts_ms[0]) for leg in legs)
    last = max(int(leg.ts_ms[-1]) for leg in legs)
    stop = last + tf if end_ms is None else end_ms - end_ms % tf
    traded = functools.reduce(np.union1d, [leg.ts_ms for leg in legs])
    traded = traded[(traded >= start) & (traded < stop)]
    if traded.size == 0:
        grid = np.arange(start, max(stop, start), tf, dtype=np.int64)[:0]
    else:
        nxt = np.r_[traded[1:], stop]
        runs = (nxt - traded) // tf  # the traded bucket plus the empty ones after it
        if max_gap_bars is not None:
            runs = np.where(runs - 1 > max_gap_bars, 1, runs)
        offsets = np.arange(int(runs.sum()), dtype=np.int64) - np.repeat(
            np.cumsum(runs) - runs, runs
        )
        grid = np.repeat(traded, runs) + offsets * tf
    return grid


def pair_bars(
    x: tuple[np.ndarray, np.ndarray, np.ndarray],
    y: tuple[np.ndarray, np.ndarray, np.ndarray],
    timeframe_ms: int,
    end_ms: int | None = None,
    max_gap_bars: int | None = None,
) -> PairBars:
    """Vectorised equivalent of feeding every trade to `BarBuilder` and advancing the clock
    to `end_ms`. Each leg is `(ts_ms, price, qty)` sorted by time then trade id."""
    return align(
        leg_bars(*x, timeframe_ms), leg_bars(*y, timeframe_ms), timeframe_ms, end_ms, max_gap_bars
    )


@dataclass(frozen=True, slots=True)
class BasketBar:
    """Every leg's bar for one bucket of a basket's shared grid, in leg order."""

    ts_ms: int
    legs: tuple[Bar, ...]

    @property
    def closes(self) -> tuple[float, ...]:
        return tuple(b.close for b in self.legs)


@dataclass(frozen=True, slots=True)
class BasketBars:
    """m legs on one shared grid (the pair's `PairBars` for any number of legs): `legs[i]`
    holds arrays as long as `ts_ms`, `filled[i]` flags the buckets in which leg i did not
    trade (its previous close carried forward)."""

    ts_ms: np.ndarray
    legs: tuple[LegBars, ...]
    filled: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return int(self.ts_ms.size)

    def closes(self) -> np.ndarray:
        """Closes as a bars x legs array."""
        if not self.legs:
            return np.empty((len(self), 0))
        return np.column_stack([leg.close for leg in self.legs])

    def slice(self, lo: int, hi: int) -> BasketBars:
        def cut(leg: LegBars) -> LegBars:
            return LegBars(*(getattr(leg, f)[lo:hi] for f in LegBars.__dataclass_fields__))

        return BasketBars(
            self.ts_ms[lo:hi],
            tuple(cut(leg) for leg in self.legs),
            tuple(f[lo:hi] for f in self.filled),
        )

    def basket_bar(self, i: int) -> BasketBar:
        return BasketBar(
            int(self.ts_ms[i]),
            tuple(
                Bar(
                    int(leg.ts_ms[i]),
                    float(leg.open[i]),
                    float(leg.high[i]),
                    float(leg.low[i]),
                    float(leg.close[i]),
                    float(leg.volume[i]),
                    int(leg.trades[i]),
                    bool(f[i]),
                )
                for leg, f in zip(self.legs, self.filled, strict=True)
            ),
        )


def align_legs(
    legs: Sequence[LegBars],
    timeframe_ms: int,
    end_ms: int | None = None,
    max_gap_bars: int | None = None,
) -> BasketBars:
    """`align` for any number of legs: the grid starts at the first bucket in which every
    leg has traded, a leg without a trade in a bucket repeats its previous close (flagged
    filled), and a silence of every leg longer than `max_gap_bars` buckets is skipped.
    With two legs the grid and the bars are those of `align`."""
    if not legs or any(leg.ts_ms.size == 0 for leg in legs):
        empty = LegBars.empty()
        return BasketBars(
            empty.ts_ms, tuple(empty for _ in legs), tuple(np.empty(0, bool) for _ in legs)
        )
    grid = _grid(legs, timeframe_ms, end_ms, max_gap_bars)
    on = [_on_grid(leg, grid) for leg in legs]
    return BasketBars(grid, tuple(g for g, _ in on), tuple(f for _, f in on))


class BasketBuilder(_Buckets):
    """`BarBuilder` for m legs: trades in with `add`, the clock with `advance`, closed
    `BasketBar`s out. Same rules: a late trade is counted in `late` and not applied, the
    grid starts when every leg has traded, and a silence of every leg longer than
    `max_gap_bars` buckets is skipped (the filled bars a clock closed before knowing are
    counted in `retracted`)."""

    def __init__(
        self, symbols: Sequence[str], timeframe_ms: int, max_gap_bars: int | None = None
    ) -> None:
        if len(set(symbols)) != len(symbols) or len(symbols) < 2:
            raise ValueError(f"need two or more distinct symbols, got {list(symbols)}")
        self._clock(timeframe_ms, max_gap_bars)
        self.symbols = tuple(symbols)
        self._legs = [_Leg() for _ in symbols]
        self._index = {s: i for i, s in enumerate(symbols)}

    def seed(self, last_bar: BasketBar) -> None:
        """Continue after stored history: the next bucket follows `last_bar`."""
        self._seed(last_bar.ts_ms, last_bar.legs)

    def add(self, tick: Tick) -> list[BasketBar]:
        i = self._index.get(tick.symbol)
        return self._take(None if i is None else self._legs[i], tick)

    def _bar(self, ts_ms: int, legs: list[Bar]) -> BasketBar:
        return BasketBar(ts_ms, tuple(legs))
