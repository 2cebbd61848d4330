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
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from quanttui.analytics.backtest import MINUTE_MS, YEAR_S, BacktestParams, FundingOutcome
from quanttui.analytics.bars import BasketBar, BasketBars, BasketBuilder
from quanttui.analytics.funding import FundingSeries, expected_settlements, match_settlements
from quanttui.analytics.johansen import RollingJohansen, check_params
from quanttui.analytics.live import CLOSE_GRACE_MS
from quanttui.analytics.rolling import RollingCov
from quanttui.config import TIMEFRAMES
from quanttui.model import BasketSnapshot, Tick

if TYPE_CHECKING:
    import sqlite3

NAN = math.nan
MIN_LEGS = 3
MAX_LEGS = 12
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
        if len(syms) < MIN_LEGS:
            raise ValueError(f"a basket needs {MIN_LEGS} or more legs, got {len(syms)}")
        if len(syms) > MAX_LEGS:
            raise ValueError(
                f"a basket has at most {MAX_LEGS} legs (the Johansen critical-value tables "
                f"stop there), got {len(syms)}"
            )
        dup = sorted({s for s in syms if syms.count(s) > 1})
        if dup:
            raise ValueError(f"each leg may be given once (got {', '.join(dup)} twice)")
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
        self._spreads = RollingCov(params.window)
        self._ar = RollingCov(params.window - 1)
        self._prev_spread = NAN
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
            self._spreads.clear()
            self._ar.clear()
            self._prev_spread = NAN
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
        spread_mean = z = half_life = NAN
        if math.isfinite(spread):
            sp = self._spreads
            sp.update(spread, spread)
            if math.isfinite(self._prev_spread):
                self._ar.update(self._prev_spread, spread - self._prev_spread)
            self._prev_spread = spread
            if sp.full:
                spread_mean = sp.mean_x
                sd = sp.std_x
                z = (spread - spread_mean) / sd if sd > 0 else NAN
                if self._ar.full:
                    k = self._ar.beta
                    half_life = -math.log(2) / k if k < 0 else NAN
        else:
            self._spreads.clear()
            self._ar.clear()
            self._prev_spread = NAN
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


class LiveBasket:
    """A basket's live pipeline: trades and the clock in (`add`, `advance`), closed bars
    through `update` out. Rebuilt from the database (`from_store`, `resume`) on start and
    whenever its live bars part from the stored ones (`diverged` rises), as `LivePair`."""

    def __init__(self, params: BasketParams, history: int = 600) -> None:
        self.params = params
        self.engine = params.analytics(history)
        self.builder = BasketBuilder(
            params.symbols, params.timeframe_ms, max_gap_bars=params.max_gap_bars
        )
        self.last_bar: BasketBar | None = None

    def update(self, ts_ms: int, closes: Sequence[float]) -> BasketMetrics:
        """One closed bar: the metrics of `BasketAnalytics.update`."""
        return self.engine.update(ts_ms, closes)

    @classmethod
    def from_bars(cls, params: BasketParams, bars: BasketBars, history: int = 600) -> LiveBasket:
        lb = cls(params, history)
        run_basket_bars(lb.engine, bars)
        if len(bars):
            lb.last_bar = bars.basket_bar(len(bars) - 1)
            lb.builder.seed(lb.last_bar)
        return lb

    @classmethod
    def from_store(
        cls,
        conn: sqlite3.Connection,
        params: BasketParams,
        end_ms: int,
        history: int = 600,
        *,
        open_at_end: bool = True,
    ) -> LiveBasket:
        """History up to (excluding) the bucket of `end_ms` (`LivePair.from_store`)."""
        from quanttui.store.queries import load_basket_bars

        bars = load_basket_bars(
            conn, list(params.symbols), params.timeframe, end_ms, max_gap_bars=params.max_gap_bars
        )
        lb = cls.from_bars(params, bars, history)
        if lb.builder.current is None and open_at_end:
            lb.builder.current = end_ms - end_ms % params.timeframe_ms
        return lb

    @classmethod
    def resume(
        cls, conn: sqlite3.Connection, params: BasketParams, end_ms: int, history: int = 600
    ) -> tuple[LiveBasket, set[tuple[str, int]]]:
        """`from_store` up to the bucket of `end_ms`, then that open bucket from its stored
        trades; returns the `(symbol, trade_id)` taken from it (`LivePair.resume`)."""
        from quanttui.store.queries import load_ticks

        lb = cls.from_store(conn, params, end_ms, history, open_at_end=end_ms > 0)
        if end_ms <= 0:
            return lb, set()
        open_bucket = load_ticks(conn, list(params.symbols), end_ms)
        lb.add(open_bucket)
        return lb, {(t.symbol, t.trade_id) for t in open_bucket}

    @property
    def diverged(self) -> int:
        """Late trades plus filled bars of a silence later skipped: a rise is the cue to
        recompute."""
        return self.builder.late + self.builder.retracted

    def _apply(self, bars: list[BasketBar]) -> list[BasketMetrics]:
        out = []
        for b in bars:
            out.append(self.update(b.ts_ms, b.closes))
            self.last_bar = b
        return out

    def add(self, ticks: Iterable[Tick]) -> list[BasketMetrics]:
        closed: list[BasketBar] = []
        for t in ticks:
            closed += self.builder.add(t)
        return self._apply(closed)

    def advance(self, now_ms: int, grace_ms: int = CLOSE_GRACE_MS) -> list[BasketMetrics]:
        return self._apply(self.builder.advance(now_ms - grace_ms))


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
class BasketBacktestResult:
    trades: list[BasketTrade]
    equity: np.ndarray
    bar_pnl: np.ndarray
    ts_ms: np.ndarray
    total_pnl: float
    fees: float
    return_on_notional: float | None
    sharpe: float | None
    max_drawdown: float
    win_rate: float | None
    exposure: float
    params: dict = field(default_factory=dict)
    funding: FundingOutcome | None = None

    @property
    def pnl_after_funding(self) -> float | None:
        return None if self.funding is None else self.total_pnl + self.funding.total


def _units(w: np.ndarray, p: np.ndarray, log_prices: bool) -> np.ndarray:
    """Quantities of one unit of the basket at prices `p` (module docstring)."""
    return w * p[0] / p if log_prices else w.copy()


def run_basket_backtest(
    ts_ms: np.ndarray,
    closes: np.ndarray,
    z: np.ndarray,
    weights: np.ndarray,
    params: BacktestParams,
    timeframe_ms: int,
    funding: Sequence[FundingSeries] | None = None,
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

    Raises `ValueError` on mismatched shapes."""
    ts = np.asarray(ts_ms, np.int64)
    px = np.asarray(closes, float)
    n = len(ts)
    if px.ndim != 2 or px.shape[0] != n or len(z) != n or np.shape(weights) != px.shape:
        raise ValueError("closes and weights must be bars x legs, z one per bar")
    if funding is not None and len(funding) != px.shape[1]:
        raise ValueError("funding needs one series per leg")
    fee = params.fee_bps / 1e4
    zs = np.asarray(z, float).tolist()
    w_all = np.asarray(weights, float)
    bar_pnl = np.zeros(n)
    trades: list[BasketTrade] = []
    open_t: BasketTrade | None = None
    open_q = np.zeros(px.shape[1])
    pending: tuple[str, np.ndarray | None] | None = None
    fees_total = gross = 0.0
    in_market = 0
    held: list[BasketTrade | None] = [None] * n
    for t in range(n):
        p = px[t]
        held[t] = open_t
        if open_t is not None and t > 0:
            bar_pnl[t] += float(open_q @ (p - px[t - 1]))
        if pending is not None:
            kind, w = pending
            pending = None
            if kind == "exit" and open_t is not None:
                cost = fee * float(np.abs(open_q) @ p)
                bar_pnl[t] -= cost
                fees_total += cost
                open_t.pnl += float(bar_pnl[t])
                open_t.exit_time, open_t.exit_prices = int(ts[t]), tuple(p.tolist())
                open_t.bars_held = t - open_t.entry_index
                trades.append(open_t)
                open_t = None
            elif kind in ("long", "short") and open_t is None and w is not None:
                sign = 1.0 if kind == "long" else -1.0
                open_q = sign * _units(w, p, params.log_hedge)
                open_t = BasketTrade(
                    int(ts[t]),
                    kind,
                    tuple(p.tolist()),
                    tuple(w.tolist()),
                    tuple(open_q.tolist()),
                    t,
                )
                notional = float(np.abs(open_q) @ p)
                cost = fee * notional
                gross += notional
                bar_pnl[t] -= cost
                fees_total += cost
                open_t.pnl = -cost
        elif open_t is not None and t > open_t.entry_index:
            open_t.pnl += float(bar_pnl[t])
        if open_t is not None:
            in_market += 1
        if t == n - 1:
            break
        zt, wt = zs[t], w_all[t]
        if not (math.isfinite(zt) and np.all(np.isfinite(wt))):
            continue
        if open_t is None:
            if zt >= params.entry_z:
                pending = ("short", wt)
            elif zt <= -params.entry_z:
                pending = ("long", wt)
        else:
            stop = params.stop_z is not None and abs(zt) >= params.stop_z
            if (
                stop
                or (open_t.side == "short" and zt <= params.exit_z)
                or (open_t.side == "long" and zt >= -params.exit_z)
            ):
                pending = ("exit", None)
    if open_t is not None:
        open_t.exit_time = None
        open_t.exit_prices = tuple(px[-1].tolist())
        open_t.bars_held = n - 1 - open_t.entry_index
        trades.append(open_t)
    outcome = None
    if funding is not None and n:
        outcome = _basket_funding(ts, px, held, timeframe_ms, funding)
    equity = np.cumsum(bar_pnl)
    total = float(equity[-1]) if n else 0.0
    closed = [tr for tr in trades if tr.exit_time is not None]
    sharpe = None
    if n > 2 and bar_pnl.std(ddof=1) > 0:
        sharpe = float(
            bar_pnl.mean() / bar_pnl.std(ddof=1) * math.sqrt(YEAR_S * 1000 / timeframe_ms)
        )
    peak = np.maximum.accumulate(np.r_[0.0, equity])[1:] if n else equity
    return BasketBacktestResult(
        trades=trades,
        equity=equity,
        bar_pnl=bar_pnl,
        ts_ms=ts,
        total_pnl=total,
        fees=fees_total,
        return_on_notional=total / gross if gross > 0 else None,
        sharpe=sharpe,
        max_drawdown=float((peak - equity).max()) if n else 0.0,
        win_rate=sum(tr.pnl > 0 for tr in closed) / len(closed) if closed else None,
        exposure=in_market / n if n else 0.0,
        params=asdict(params),
        funding=outcome,
    )


def _basket_funding(
    ts_ms: np.ndarray,
    closes: np.ndarray,
    held: list[BasketTrade | None],
    timeframe_ms: int,
    series: Sequence[FundingSeries],
) -> FundingOutcome:
    """Settlement flows of the positions in `held`, leg by leg (the pair backtest's
    `_funding` rules: settlement T is paid by the position over the bar with
    ``c_{t-1} < T <= c_t``; mark price, else that bar's close)."""
    closes_at = ts_ms + timeframe_ms
    lo, hi = int(closes_at[0]), int(closes_at[-1])
    bar = np.zeros(len(ts_ms))
    total = 0.0
    settlements = expected = missing = in_pos = proxy = 0
    for leg, s in enumerate(series):
        nominal = (s.ts_ms + MINUTE_MS // 2) // MINUTE_MS * MINUTE_MS
        seen: dict[int, int] = {}
        for k in np.flatnonzero((nominal > lo) & (nominal <= hi)).tolist():
            first = seen.setdefault(int(nominal[k]), k)
            if first != k and not np.isfinite(s.mark[first]):
                seen[int(nominal[k])] = k
        for when, k in seen.items():
            t = int(np.searchsorted(closes_at, when, side="left"))
            settlements += 1
            tr = held[t]
            if tr is None:
                continue
            mark = float(s.mark[k])
            if not np.isfinite(mark):
                mark = float(closes[t, leg])
                proxy += 1
            flow = -tr.qty[leg] * mark * float(s.rate[k])
            bar[t] += flow
            tr.funding += flow
            total += flow
        want = expected_settlements(lo, hi, s.interval_h)
        absent = want[match_settlements(s, want) < 0]
        expected += want.size
        missing += absent.size
        for when in absent.tolist():
            t = int(np.searchsorted(closes_at, when, side="left"))
            in_pos += held[t] is not None
    return FundingOutcome(total, bar, settlements, expected, missing, in_pos, proxy)


@dataclass(frozen=True, slots=True)
class BasketBacktestReport:
    """A backtest over a basket's stored bars (`backtest_basket`)."""

    result: BasketBacktestResult
    bars: int
    params: dict
    symbols: tuple[str, ...]

    def trades_json(self) -> list[dict]:
        from quanttui.model import iso_utc

        r = self.result
        out = []
        for t in r.trades:
            legs = self.symbols
            out.append(
                {
                    "entry_time": iso_utc(t.entry_time),
                    "exit_time": iso_utc(t.exit_time) if t.exit_time is not None else None,
                    "side": t.side,
                    "entry_prices": dict(zip(legs, t.entry_prices, strict=True)),
                    "exit_prices": dict(zip(legs, t.exit_prices, strict=True))
                    if t.exit_prices
                    else None,
                    "weights": dict(zip(legs, t.weights, strict=True)),
                    "qty": dict(zip(legs, t.qty, strict=True)),
                    "pnl": t.pnl,
                    "bars_held": t.bars_held,
                    "funding": t.funding if r.funding is not None else None,
                }
            )
        return out

    def as_json(self) -> dict:
        r, f = self.result, self.result.funding
        return {
            "trades": self.trades_json(),
            "total_pnl": r.total_pnl,
            "fees": r.fees,
            "return_on_notional": r.return_on_notional,
            "sharpe": r.sharpe,
            "max_drawdown": r.max_drawdown,
            "win_rate": r.win_rate,
            "exposure": r.exposure,
            "bars": self.bars,
            "params": self.params,
            "funding": None if f is None else f.total,
            "pnl_before_funding": r.total_pnl,
            "pnl_after_funding": r.pnl_after_funding,
            "funding_coverage": None if f is None else f.coverage,
            "funding_settlements": None if f is None else f.settlements,
            "funding_missing": None if f is None else f.missing,
            "funding_missing_in_position": None if f is None else f.missing_in_position,
            "funding_mark_from_close": None if f is None else f.mark_from_close,
        }


def backtest_basket(
    bars: BasketBars,
    basket: BasketParams,
    params: BacktestParams,
    start_ms: int | None = None,
    end_ms: int | None = None,
    funding: Sequence[FundingSeries] | None = None,
) -> BasketBacktestReport:
    """Run `BasketAnalytics` over all `bars`, then `run_basket_backtest` over the bars in
    ``[start_ms, end_ms]``; `params.log_hedge` is taken from the basket's `log_prices`.

    Raises `ValueError` when the range holds fewer than two bars or no z-score."""
    engine = basket.analytics(history=max(len(bars), 1))
    run_basket_bars(engine, bars)
    keep = [
        m
        for m in engine.history
        if (start_ms is None or m.ts_ms >= start_ms) and (end_ms is None or m.ts_ms <= end_ms)
    ]
    if len(keep) < 2 or not any(math.isfinite(m.zscore) for m in keep):
        raise ValueError(
            f"too little data for a backtest of {basket.key} at {basket.timeframe}: "
            f"{len(keep)} bars in range, z-scores need {2 * basket.window - 1} bars"
        )
    m_legs = len(basket.symbols)
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
    }
    return BasketBacktestReport(res, len(keep), meta, basket.symbols)
