"""A basket of m >= 3 legs: the one definition of its per-bar metrics and its backtest.

A pair has one hedge ratio; a basket of m legs can have up to m - 1 independent
stationary combinations, which the Johansen test counts (the cointegration rank) and
estimates (the eigenvectors). The monitor, headless mode, ``snapshot``, ``export`` and
``backtest`` all run `BasketAnalytics.update` once per bar over the same bar grid
(`quanttui.analytics.bars.align_legs` from the database, `BasketBuilder` live), so a
recompute from the database gives exactly the numbers the live path gave.

Definitions (W = window in bars, m legs, ``y_t`` the bar-t closes, or log closes with
``log_prices``; the README's "Baskets" repeats them):

* Johansen test on the last W levels ``y_{t-W+1..t}`` (`RollingJohansen`: the moment
  sums are updated in O(m^2 k^2) per bar and recomputed exactly every W bars; equal to
  statsmodels' ``coint_johansen(levels, det_order, k_ar_diff)``): trace statistics
  ``LR_tr(r) = -T sum_{i>r} ln(1 - lambda_i)`` and max-eigenvalue statistics
  ``LR_max(r) = -T ln(1 - lambda_{r+1})``, r = 0..m-1, with their 90/95/99 % critical
  values; the rank is the first r whose trace statistic is below its 95 % value.
* weights ``w_t``: the first eigenvector (largest eigenvalue) scaled so that leg 0 has
  weight 1.
* spread ``s_t = w_t . y_t``: bar t's levels with bar t's own weights, never weights
  estimated later (no look-ahead); the first spread is at bar W.
* z-score ``z_t = (s_t - mean(s_{t-W+1..t})) / std(s_{t-W+1..t}, ddof=1)``, the pair's
  definition, so the first z-score is at bar 2W - 1.
* half-life: OLS ``ds_t = c + k s_{t-1}`` over the W spreads of the z window,
  ``-ln 2 / k`` bars when k < 0, else undefined.
* one unit of the basket holds ``q_i`` of leg i: ``q_i = w_i`` with prices,
  ``q_i = w_i p_0 / p_i`` with log prices (notional ``w_i p_0``: a value hedge, since a
  small move of the log spread by ``ds`` then changes the value by ``p_0 ds``). Leg 0 is
  one contract either way. The notional of leg i is ``q_i p_i`` (signed: < 0 is short).
"""

from __future__ import annotations

import dataclasses
import math
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from quanttui.analytics.backtest import (
    BacktestParams,
    Book,
    StrategyResult,
    bars_in_range,
    report_json,
    simulate,
    trade_json,
)
from quanttui.analytics.bars import BasketBar, BasketBars, BasketBuilder
from quanttui.analytics.funding import FundingSeries
from quanttui.analytics.johansen import RollingJohansen, check_params
from quanttui.analytics.live import LiveLegs
from quanttui.analytics.rolling import SpreadZ
from quanttui.config import MAX_BASKET_LEGS, MIN_BASKET_LEGS, TIMEFRAMES, basket_legs_problem
from quanttui.model import BasketSnapshot

if TYPE_CHECKING:
    import sqlite3

NAN = math.nan
MIN_LEGS, MAX_LEGS = MIN_BASKET_LEGS, MAX_BASKET_LEGS
"""The Johansen critical-value tables (Osterwald-Lenum, MacKinnon-Haug-Michelis) stop at
12 variables."""


@dataclass(frozen=True, slots=True)
class BasketParams:
    """What a basket's metrics depend on; raises `ValueError` for bad values.

    `symbols` in leg order (leg 0 is the one normalised to weight 1)."""

    symbols: tuple[str, ...]
    timeframe: str
    window: int
    det_order: int = 0
    k_ar_diff: int = 1
    log_prices: bool = True

    def __post_init__(self) -> None:
        syms = self.symbols
        problem = basket_legs_problem(syms)
        if problem:
            raise ValueError(problem)
        if self.timeframe not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {self.timeframe!r}")
        check_params(len(syms), self.window, self.det_order, self.k_ar_diff)

    @property
    def key(self) -> str:
        """The basket's name, as alerts and the watchlist show it: ``A+B+C``."""
        return "+".join(self.symbols)

    @property
    def pair(self) -> str:
        """The name alerts carry in their ``pair`` field: the `key`."""
        return self.key

    @property
    def hedge(self) -> str:
        """What a notification names as the weights' scale: ``log`` (notional multiples of
        the first leg's) or ``prices`` (units)."""
        return "log" if self.log_prices else "prices"

    @property
    def timeframe_ms(self) -> int:
        return TIMEFRAMES[self.timeframe]

    @property
    def max_gap_bars(self) -> int:
        """Longer silences of every leg than this are skipped, not filled (2W)."""
        return 2 * self.window

    def analytics(self, history: int = 600) -> BasketAnalytics:
        return BasketAnalytics(self, history)


@dataclass(frozen=True, slots=True)
class BasketMetrics:
    """A basket's metrics at one closed bar; empty tuples and `nan` while undefined.

    `trace`, `max_eig`, `eig` have m entries (row r: H0 rank <= r / rank == r);
    `trace_cv`, `max_cv` m rows of (90 %, 95 %, 99 %); `rank` is -1 while undefined."""

    ts_ms: int
    closes: tuple[float, ...]
    trace: tuple[float, ...] = ()
    max_eig: tuple[float, ...] = ()
    trace_cv: tuple[tuple[float, float, float], ...] = ()
    max_cv: tuple[tuple[float, float, float], ...] = ()
    eig: tuple[float, ...] = ()
    rank: int = -1
    weights: tuple[float, ...] = ()
    notional: tuple[float, ...] = ()
    spread: float = NAN
    spread_mean: float = NAN
    zscore: float = NAN
    half_life_bars: float = NAN


def _cv(a: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    return tuple((float(r[0]), float(r[1]), float(r[2])) for r in a)


class BasketAnalytics:
    """The basket's streaming estimator: `update(ts_ms, closes)` once per closed bar.

    Keeps the last `history` `BasketMetrics` (bounded) for charts, alert re-runs and
    exports."""

    def __init__(self, params: BasketParams, history: int = 600) -> None:
        self.params = params
        self.window = params.window
        self.bars = 0
        self._rj = RollingJohansen(
            len(params.symbols),
            params.window,
            params.det_order,
            params.k_ar_diff,
            log=params.log_prices,
        )
        self._z = SpreadZ(params.window)
        self.history: deque[BasketMetrics] = deque(maxlen=max(history, 1))

    @property
    def last(self) -> BasketMetrics | None:
        return self.history[-1] if self.history else None

    def update(self, ts_ms: int, closes: Sequence[float]) -> BasketMetrics:
        """Add bar `ts_ms` (one close per leg, in leg order) and return its metrics.

        Raises `ValueError` for a wrong count or a non-positive or non-finite close (the
        state is then unchanged)."""
        row = tuple(float(c) for c in closes)
        if len(row) != len(self.params.symbols) or not all(c > 0 and math.isfinite(c) for c in row):
            raise ValueError(
                f"expected {len(self.params.symbols)} positive finite closes, got {closes!r}"
            )
        try:
            res = self._rj.update(row)
        except np.linalg.LinAlgError:
            res = None  # e.g. a leg flat over the whole window: S_00 is singular
        self.bars += 1
        if res is None or not np.all(np.isfinite(res.trace)):
            # filling, or a full window whose test is undefined: the z window starts
            # again, as a pair's does when its spread is undefined
            self._z.clear()
            m = BasketMetrics(ts_ms, row)
            self.history.append(m)
            return m
        w = res.weights
        spread = NAN
        notional: tuple[float, ...] = ()
        if np.all(np.isfinite(w)):
            y = np.log(row) if self.params.log_prices else np.asarray(row)
            spread = float(w @ y)
            p = np.asarray(row)
            notional = tuple((w * p[0] if self.params.log_prices else w * p).tolist())
        spread_mean, z, half_life = self._z.update(spread)
        m = BasketMetrics(
            ts_ms,
            row,
            tuple(res.trace.tolist()),
            tuple(res.max_eig.tolist()),
            _cv(res.trace_cv),
            _cv(res.max_cv),
            tuple(res.eig.tolist()),
            int(res.rank),
            tuple(w.tolist()),
            notional,
            spread,
            spread_mean,
            z,
            half_life,
        )
        self.history.append(m)
        return m


def run_basket_bars(engine: BasketAnalytics, bars: BasketBars) -> None:
    """Feed stored bars to the estimator, oldest first (the recompute path)."""
    closes = bars.closes()
    for i, ts in enumerate(bars.ts_ms.tolist()):
        engine.update(ts, closes[i])


def basket_metrics(m: BasketMetrics, bars: int, timeframe: str) -> dict[str, float]:
    """The rule metrics of one bar (`quanttui.model.BASKET_METRIC_NAMES`); undefined ones
    are left out. ``trace_stat``/``max_eig_stat`` are the r = 0 rows (H0: no
    cointegration), ``*_margin`` the statistic less its 95 % critical value (> 0 rejects
    H0 at 95 %)."""
    hl = m.half_life_bars
    raw: dict[str, float] = {
        "zscore": m.zscore,
        "spread": m.spread,
        "spread_mean": m.spread_mean,
        "half_life_bars": hl,
        "half_life_s": hl * TIMEFRAMES[timeframe] / 1000,
        "bars": float(bars),
    }
    if m.trace:
        raw.update(
            rank=float(m.rank),
            trace_stat=m.trace[0],
            trace_cv95=m.trace_cv[0][1],
            trace_margin=m.trace[0] - m.trace_cv[0][1],
            max_eig_stat=m.max_eig[0],
            max_eig_cv95=m.max_cv[0][1],
            max_eig_margin=m.max_eig[0] - m.max_cv[0][1],
            eig1=m.eig[0],
        )
    return {k: float(v) for k, v in raw.items() if math.isfinite(v)}


def build_basket_snapshot(engine: BasketAnalytics, series: int | None = None) -> BasketSnapshot:
    """The basket's `BasketSnapshot` at its last bar, with the last `series` bars (all
    kept by default) of z-score and spread for a chart."""
    p = engine.params
    m = engine.last

    def num(v: float) -> float | None:
        return v if math.isfinite(v) else None

    hist = list(engine.history)
    if series is not None:
        hist = hist[-series:] if series > 0 else []
    base = BasketSnapshot(
        p.key,
        p.symbols,
        p.timeframe,
        p.window,
        p.det_order,
        p.k_ar_diff,
        p.log_prices,
        engine.bars,
        series_ts=array("q", [h.ts_ms for h in hist]),
        series_zscore=array("d", [h.zscore for h in hist]),
        series_spread=array("d", [h.spread for h in hist]),
    )
    if m is None:
        return base
    hl = m.half_life_bars
    return dataclasses.replace(
        base,
        time_ms=m.ts_ms,
        closes=m.closes,
        trace=m.trace,
        trace_cv=m.trace_cv,
        max_eig=m.max_eig,
        max_cv=m.max_cv,
        eig=m.eig,
        rank=m.rank if m.trace else None,
        weights=m.weights,
        notional=m.notional,
        spread=num(m.spread),
        spread_mean=num(m.spread_mean),
        zscore=num(m.zscore),
        half_life_bars=num(hl),
        half_life_s=num(hl * p.timeframe_ms / 1000),
    )


class LiveBasket(LiveLegs[BasketParams, BasketBar, BasketMetrics]):
    """A basket's live pipeline (`quanttui.analytics.live.LiveLegs`, as `LivePair`): every
    leg's trades in, `BasketMetrics` out."""

    engine: BasketAnalytics
    builder: BasketBuilder

    def update(self, ts_ms: int, closes: Sequence[float]) -> BasketMetrics:
        """One closed bar: the metrics of `BasketAnalytics.update`."""
        return self.engine.update(ts_ms, closes)

    @property
    def symbols(self) -> list[str]:
        return list(self.params.symbols)

    @staticmethod
    def _builder(params: BasketParams) -> BasketBuilder:
        return BasketBuilder(params.symbols, params.timeframe_ms, max_gap_bars=params.max_gap_bars)

    @staticmethod
    def _load(conn: sqlite3.Connection, params: BasketParams, end_ms: int) -> BasketBars:
        from quanttui.store.queries import load_basket_bars

        return load_basket_bars(
            conn, list(params.symbols), params.timeframe, end_ms, max_gap_bars=params.max_gap_bars
        )

    def _replay(self, bars: BasketBars) -> BasketBar | None:
        run_basket_bars(self.engine, bars)
        return bars.basket_bar(len(bars) - 1) if len(bars) else None

    def _close(self, bar: BasketBar) -> BasketMetrics:
        return self.update(bar.ts_ms, bar.closes)


# ---------------------------------------------------------------------------- backtest


@dataclass(slots=True)
class BasketTrade:
    """One round trip; `qty` signed per leg (long > 0), fixed at the entry fill."""

    entry_time: int
    side: str
    entry_prices: tuple[float, ...]
    weights: tuple[float, ...]
    qty: tuple[float, ...]
    entry_index: int
    exit_time: int | None = None
    exit_prices: tuple[float, ...] | None = None
    pnl: float = 0.0
    bars_held: int = 0
    funding: float = 0.0


@dataclass(slots=True)
class BasketBacktestResult(StrategyResult[BasketTrade]):
    """A basket's backtest (`run_basket_backtest`)."""


def _units(w: np.ndarray, p: np.ndarray, log_prices: bool) -> np.ndarray:
    """Quantities of one unit of the basket at prices `p` (module docstring)."""
    return w * p[0] / p if log_prices else w.copy()


class BasketBook(Book[BasketTrade, np.ndarray]):
    """One unit of the basket (`_units` of the signal bar's weights at the fill's prices),
    long ``+q`` or short ``-q``; `q` is the open trade's, as an array."""

    def __init__(self, ts: np.ndarray, closes: np.ndarray, log_prices: bool) -> None:
        self.ts, self.px, self.log_prices = ts, closes, log_prices
        self.q = np.zeros(closes.shape[1])

    def enter(self, t: int, side: str, hedge: np.ndarray) -> tuple[BasketTrade, float]:
        p = self.px[t]
        sign = 1.0 if side == "long" else -1.0
        self.q = q = sign * _units(hedge, p, self.log_prices)
        trade = BasketTrade(
            int(self.ts[t]), side, tuple(p.tolist()), tuple(hedge.tolist()), tuple(q.tolist()), t
        )
        return trade, float(np.abs(q) @ p)

    def mark(self, pos: BasketTrade, t: int) -> float:
        return float(self.q @ (self.px[t] - self.px[t - 1]))

    def close(self, pos: BasketTrade, t: int) -> float:
        p = self.px[t]
        pos.exit_prices = tuple(p.tolist())
        return float(np.abs(self.q) @ p)

    def qty(self, pos: BasketTrade, leg: int) -> float:
        return pos.qty[leg]

    def price(self, leg: int, t: int) -> float:
        return float(self.px[t, leg])


def run_basket_backtest(
    ts_ms: np.ndarray,
    closes: np.ndarray,
    z: np.ndarray,
    weights: np.ndarray,
    params: BacktestParams,
    timeframe_ms: int,
    funding: Sequence[FundingSeries] | None = None,
    rank: np.ndarray | None = None,
    min_rank: int = 1,
) -> BasketBacktestResult:
    """The pair backtest's z-score strategy on a basket spread.

    Same rules as `quanttui.analytics.backtest.run_backtest` (entry at ``|z_t| >=
    entry``, exit at ``exit``, optional stop, next-bar fills, one change per bar), with
    one unit of the basket as the position: long the spread holds ``+q`` (``q`` of
    `_units` for the signal bar's weights at the fill's prices, `params.log_hedge` for log
    prices), short ``-q``. Fees ``fee_bps / 1e4 * sum_i |q_i| p_i`` at entry and exit;
    PnL ``sum_i q_i (p_{i,t} - p_{i,t-1})`` per bar; funding per leg as the pair's
    (a leg with quantity q receives ``-q M r`` at each settlement), with `funding` one
    `FundingSeries` per leg. With two legs and weights ``(1, -b)`` on ``(y, x)`` this is
    the pair backtest exactly.

    Rank filter: with `rank` (the Johansen rank of each bar, `BasketMetrics.rank`, -1
    while undefined), a flat book decides to enter at bar t only when
    ``rank_t >= min_rank``; exits are never held back. ``min_rank = 0`` (or no `rank`)
    enters on z alone.

    Raises `ValueError` on mismatched shapes or a negative `min_rank`."""
    ts = np.asarray(ts_ms, np.int64)
    px = np.asarray(closes, float)
    n = len(ts)
    if px.ndim != 2 or px.shape[0] != n or len(z) != n or np.shape(weights) != px.shape:
        raise ValueError("closes and weights must be bars x legs, z one per bar")
    if funding is not None and len(funding) != px.shape[1]:
        raise ValueError("funding needs one series per leg")
    if rank is not None and len(rank) != n:
        raise ValueError("rank must be one per bar")
    if min_rank < 0:
        raise ValueError(f"min_rank must be >= 0, got {min_rank}")
    zf = np.asarray(z, float)
    w_all = np.asarray(weights, float)
    usable = np.isfinite(zf) & np.isfinite(w_all).all(axis=1)
    entry_ok = None if rank is None or min_rank == 0 else np.asarray(rank) >= min_rank
    book = BasketBook(ts, px, params.log_hedge)
    fields = simulate(ts, zf.tolist(), w_all, usable, params, timeframe_ms, book, funding, entry_ok)
    return BasketBacktestResult(**fields, ts_ms=ts, params=asdict(params))


@dataclass(frozen=True, slots=True)
class BasketBacktestReport:
    """A backtest over a basket's stored bars (`backtest_basket`)."""

    result: BasketBacktestResult
    bars: int
    params: dict
    symbols: tuple[str, ...]

    def trades_json(self) -> list[dict]:
        funded = self.result.funding is not None
        legs = self.symbols
        return [
            trade_json(
                t,
                funded,
                entry_prices=dict(zip(legs, t.entry_prices, strict=True)),
                exit_prices=dict(zip(legs, t.exit_prices, strict=True)) if t.exit_prices else None,
                weights=dict(zip(legs, t.weights, strict=True)),
                qty=dict(zip(legs, t.qty, strict=True)),
            )
            for t in self.result.trades
        ]

    def as_json(self) -> dict:
        return report_json(self.result, self.trades_json(), self.bars, self.params)


def backtest_basket(
    bars: BasketBars,
    basket: BasketParams,
    params: BacktestParams,
    start_ms: int | None = None,
    end_ms: int | None = None,
    funding: Sequence[FundingSeries] | None = None,
    *,
    min_rank: int = 0,
) -> BasketBacktestReport:
    """Run `BasketAnalytics` over all `bars`, then `run_basket_backtest` over the bars in
    ``[start_ms, end_ms]``; `params.log_hedge` is taken from the basket's `log_prices`.
    Entries need each signal bar's own Johansen rank (`BasketMetrics.rank`, the live
    path's, from bars up to that one) to be at least `min_rank`; 0 (the default here; the
    CLI passes the config's) turns the filter off.

    Raises `ValueError` when the range holds fewer than two bars or no z-score, or when
    `min_rank` is not in ``0..m`` (m legs)."""
    m_legs = len(basket.symbols)
    if not 0 <= min_rank <= m_legs:
        raise ValueError(f"min_rank must be 0 to {m_legs} (the legs), got {min_rank}")
    engine = basket.analytics(history=max(len(bars), 1))
    run_basket_bars(engine, bars)
    keep = bars_in_range(
        engine.history, start_ms, end_ms, basket.key, basket.timeframe, basket.window
    )
    nan_w = (NAN,) * m_legs
    res = run_basket_backtest(
        np.fromiter((m.ts_ms for m in keep), np.int64, len(keep)),
        np.array([m.closes for m in keep], float),
        np.fromiter((m.zscore for m in keep), float, len(keep)),
        np.array([m.weights or nan_w for m in keep], float),
        BacktestParams(
            params.entry_z, params.exit_z, params.stop_z, params.fee_bps, basket.log_prices
        ),
        basket.timeframe_ms,
        funding,
        np.fromiter((m.rank for m in keep), np.int64, len(keep)),
        min_rank,
    )
    meta = {
        **res.params,
        "basket": basket.key,
        "symbols": list(basket.symbols),
        "timeframe": basket.timeframe,
        "window": basket.window,
        "det_order": basket.det_order,
        "k_ar_diff": basket.k_ar_diff,
        "log_prices": basket.log_prices,
        "min_rank": min_rank,
    }
    return BasketBacktestReport(res, len(keep), meta, basket.symbols)
