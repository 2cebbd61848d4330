"""Backtest of the z-score mean-reversion strategy, bar by bar, with no look-ahead.

Rules (the README repeats them):

* Signals use z_t and b_t from `PairAnalytics`, which see bars up to t only.
* Flat: short the spread when ``z_t >= entry``; long it when ``z_t <= -entry``.
* Short exits when ``z_t <= exit``; long exits when ``z_t >= -exit``; with a stop, either
  side also exits when ``|z_t| >= stop``.
* A decision at bar t fills at the close of bar t+1; a decision on the last bar has no
  fill. Fills happen before decisions, so the position changes at most once per bar, and
  after an exit fill the strategy may decide to enter again on that bar (filling on the
  next).
* Position: one unit of Y against ``b`` units of X, with ``b = b_t`` of the signal bar
  fixed for the trade (long spread: +1 Y, -b X). In ``log`` mode ``b`` is an elasticity,
  so the X quantity is ``b * y / x`` at the fill, which is the same value hedge.
* Fees: ``fee_bps / 1e4`` times the traded notional of each leg, at entry and at exit.
* PnL in quote currency, marked to market every bar. A trade still open at the end is
  marked at the last close and pays no exit fee.
* Sharpe: mean / std (ddof=1) of per-bar PnL times ``sqrt(bars per year)``, with a year
  of 365 days (crypto trades around the clock). It is a PnL Sharpe, not a return Sharpe.

Funding (USD-M perpetuals; with the legs' stored settlements, `FundingSeries`):

* Bar t closes at ``c_t = ts_t + tf``. A settlement at time T with ``c_{t-1} < T <= c_t``
  is paid by the position held over bar t, the one before bar t's fills: a position
  entered at the close at T does not pay the settlement at T, one exited then does.
  T is the nominal time, the stored ``funding_ms`` rounded to the minute (Binance's
  are on the hour, sometimes a few ms late); two stored rows in the same minute are one
  settlement.
* Each leg with quantity q (``q > 0`` long) receives ``-q * M * r``: a long pays when
  ``r > 0``. M is the stored mark price at the settlement, else (archive rows have
  none) the close of bar t, the first close at or after T.
* ``funding`` is the sum over both legs, signed (positive = received), booked on bar t
  and on the trade then open. ``total_pnl``, equity, Sharpe, drawdown, win rate and
  return on notional stay *before* funding; ``pnl_after_funding = total_pnl + funding``.
* Coverage: each leg should settle at every multiple of its interval (fundingInfo, 8 h
  by default) in ``(c_0, c_{n-1}]``. ``funding_coverage`` is the share of those
  expected settlements, both legs together, that are stored (1.0 when none is
  expected); ``funding_missing`` counts the others and ``funding_missing_in_position``
  those of them that fell while a position was open, whose flows are unknown and *not*
  in ``funding``. Without funding data at all (`funding` None) these are all None.
  Coverage assumes today's interval over the whole range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

from quanttui.analytics.funding import FundingSeries, expected_settlements, match_settlements

if TYPE_CHECKING:
    from quanttui.analytics.bars import PairBars
    from quanttui.analytics.live import PairParams

YEAR_S = 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class BacktestParams:
    entry_z: float = 2.0
    exit_z: float = 0.0
    stop_z: float | None = None
    fee_bps: float = 4.0
    log_hedge: bool = False

    def __post_init__(self) -> None:
        if not self.entry_z > 0:
            raise ValueError("entry_z must be > 0")
        if not 0 <= self.exit_z < self.entry_z:
            raise ValueError("exit_z must be >= 0 and below entry_z")
        if self.stop_z is not None and not self.stop_z > self.entry_z:
            raise ValueError("stop_z must exceed entry_z")
        if self.fee_bps < 0:
            raise ValueError("fee_bps must be >= 0")


@dataclass(slots=True)
class Trade:
    entry_time: int
    side: str
    entry_x: float
    entry_y: float
    beta: float
    qx: float
    qy: float
    entry_index: int
    exit_time: int | None = None
    exit_x: float | None = None
    exit_y: float | None = None
    pnl: float = 0.0
    bars_held: int = 0
    funding: float = 0.0


T = TypeVar("T")


@dataclass(slots=True)
class StrategyResult(Generic[T]):
    """What a backtest of a pair (`BacktestResult`) or of a basket gives; `trades` are
    that backtest's trades."""

    trades: list[T]
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


@dataclass(slots=True)
class BacktestResult(StrategyResult[Trade]):
    """A pair's backtest (`run_backtest`)."""


@dataclass(frozen=True, slots=True)
class FundingOutcome:
    """The funding part of a backtest (module docstring): `total` signed, received
    positive; `bar` per bar; `expected`/`missing` settlements over the range (both legs),
    `missing_in_position` of those while a position was open, `mark_from_close` flows
    valued at a bar close for want of a stored mark price."""

    total: float
    bar: np.ndarray
    settlements: int
    expected: int
    missing: int
    missing_in_position: int
    mark_from_close: int

    @property
    def coverage(self) -> float:
        return 1.0 if self.expected == 0 else (self.expected - self.missing) / self.expected


class Position(Protocol):
    """What `simulate` needs of a trade: a pair's `Trade` or a basket's."""

    entry_time: int
    side: str
    entry_index: int
    exit_time: int | None
    pnl: float
    bars_held: int
    funding: float


class _BarMetrics(Protocol):
    @property
    def ts_ms(self) -> int: ...

    @property
    def zscore(self) -> float: ...


P = TypeVar("P", bound=Position)
H = TypeVar("H")
M = TypeVar("M", bound=_BarMetrics)


class Book(Generic[P, H]):
    """The leg arithmetic of a position, for `simulate`: a pair's (`PairBook`) or a
    basket's (`quanttui.analytics.basket.BasketBook`). `H` is the hedge fixed at the
    signal bar (a pair's ``b``, a basket's weights); legs are numbered as the funding
    series are given."""

    def enter(self, t: int, side: str, hedge: H) -> tuple[P, float]:
        """Open `side` at bar t's close: the trade and the notional traded."""
        raise NotImplementedError

    def mark(self, pos: P, t: int) -> float:
        """The position's PnL over bar t (close t-1 to close t)."""
        raise NotImplementedError

    def close(self, pos: P, t: int) -> float:
        """Record bar t's closes as the exit prices; returns the notional an exit there
        trades."""
        raise NotImplementedError

    def qty(self, pos: P, leg: int) -> float:
        raise NotImplementedError

    def price(self, leg: int, t: int) -> float:
        raise NotImplementedError


class PairBook(Book[Trade, float]):
    """One unit of Y against ``b`` units of X (``b y / x`` with `log_hedge`); legs (X, Y)."""

    def __init__(self, ts: np.ndarray, xs: list[float], ys: list[float], log_hedge: bool) -> None:
        self.ts, self.xs, self.ys, self.log_hedge = ts, xs, ys, log_hedge

    def enter(self, t: int, side: str, hedge: float) -> tuple[Trade, float]:
        px, py = self.xs[t], self.ys[t]
        hx = hedge * py / px if self.log_hedge else hedge
        sign = 1.0 if side == "long" else -1.0
        return Trade(int(self.ts[t]), side, px, py, hedge, -sign * hx, sign, t), py + abs(hx) * px

    def mark(self, pos: Trade, t: int) -> float:
        xs, ys = self.xs, self.ys
        return pos.qy * (ys[t] - ys[t - 1]) + pos.qx * (xs[t] - xs[t - 1])

    def close(self, pos: Trade, t: int) -> float:
        pos.exit_x, pos.exit_y = self.xs[t], self.ys[t]
        return abs(pos.qy) * pos.exit_y + abs(pos.qx) * pos.exit_x

    def qty(self, pos: Trade, leg: int) -> float:
        return pos.qy if leg else pos.qx

    def price(self, leg: int, t: int) -> float:
        return self.ys[t] if leg else self.xs[t]


def simulate(
    ts: np.ndarray,
    z: list[float],
    hedges: Sequence[H],
    usable: np.ndarray,
    params: BacktestParams,
    timeframe_ms: int,
    book: Book[P, H],
    funding: Sequence[FundingSeries] | None = None,
    entry_ok: np.ndarray | None = None,
) -> dict[str, Any]:
    """The strategy of the module docstring over bars `ts` (int64 open times), the one
    loop of a pair's and a basket's backtest: `usable` marks the bars whose z and hedge
    are defined, `entry_ok` (all when None) those on which a flat book may decide to
    enter; exits are never held back. `funding` has one series per leg of `book`.

    Returns the fields of a result (`BacktestResult`) but `ts_ms` and `params`."""
    n = len(ts)
    fee = params.fee_bps / 1e4
    ok = usable.tolist()
    gate = None if entry_ok is None else entry_ok.tolist()
    bar_pnl = np.zeros(n)
    trades: list[P] = []
    open_t: P | None = None
    pending: tuple[str, H | None] | None = None
    fees_total = gross = 0.0
    in_market = 0
    held: list[P | None] = [None] * n
    for t in range(n):
        held[t] = open_t
        if open_t is not None and t > 0:
            bar_pnl[t] += book.mark(open_t, t)
        if pending is not None:
            side, h = pending
            pending = None
            if side == "exit" and open_t is not None:
                cost = fee * book.close(open_t, t)
                bar_pnl[t] -= cost
                fees_total += cost
                open_t.pnl += float(bar_pnl[t])
                open_t.exit_time = int(ts[t])
                open_t.bars_held = t - open_t.entry_index
                trades.append(open_t)
                open_t = None
            elif side in ("long", "short") and open_t is None and h is not None:
                open_t, notional = book.enter(t, side, h)
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
        if not ok[t]:
            continue
        zt = z[t]
        if open_t is None:
            if gate is not None and not gate[t]:
                continue
            if zt >= params.entry_z:
                pending = ("short", hedges[t])
            elif zt <= -params.entry_z:
                pending = ("long", hedges[t])
        else:
            stop = params.stop_z is not None and abs(zt) >= params.stop_z
            if (
                stop
                or (open_t.side == "short" and zt <= params.exit_z)
                or (open_t.side == "long" and zt >= -params.exit_z)
            ):
                pending = ("exit", None)
    if open_t is not None:
        book.close(open_t, n - 1)
        open_t.exit_time = None
        open_t.bars_held = n - 1 - open_t.entry_index
        trades.append(open_t)
    outcome = None
    if funding is not None and n:
        outcome = _funding(ts, held, timeframe_ms, funding, book)
    equity = np.cumsum(bar_pnl)
    total = float(equity[-1]) if n else 0.0
    closed = [tr for tr in trades if tr.exit_time is not None]
    sharpe = None
    if n > 2 and bar_pnl.std(ddof=1) > 0:
        sharpe = float(
            bar_pnl.mean() / bar_pnl.std(ddof=1) * math.sqrt(YEAR_S * 1000 / timeframe_ms)
        )
    peak = np.maximum.accumulate(np.r_[0.0, equity])[1:] if n else equity
    return {
        "trades": trades,
        "equity": equity,
        "bar_pnl": bar_pnl,
        "total_pnl": total,
        "fees": fees_total,
        "return_on_notional": total / gross if gross > 0 else None,
        "sharpe": sharpe,
        "max_drawdown": float((peak - equity).max()) if n else 0.0,
        "win_rate": sum(tr.pnl > 0 for tr in closed) / len(closed) if closed else None,
        "exposure": in_market / n if n else 0.0,
        "funding": outcome,
    }


def run_backtest(
    ts_ms: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    beta: np.ndarray,
    params: BacktestParams,
    timeframe_ms: int,
    funding: tuple[FundingSeries, FundingSeries] | None = None,
) -> BacktestResult:
    """The strategy over the bars (module docstring); with `funding` (X's and Y's
    stored settlements) the result also has the funding flows and their coverage."""
    n = len(ts_ms)
    if not (len(x) == len(y) == len(z) == len(beta) == n):
        raise ValueError("all series must have the same length")
    ts = np.asarray(ts_ms, np.int64)
    book = PairBook(ts, x.tolist(), y.tolist(), params.log_hedge)
    usable = np.isfinite(z) & np.isfinite(beta)
    fields = simulate(ts, z.tolist(), beta.tolist(), usable, params, timeframe_ms, book, funding)
    return BacktestResult(**fields, ts_ms=np.asarray(ts_ms), params=asdict(params))


MINUTE_MS = 60_000


def _funding(
    ts_ms: np.ndarray,
    held: Sequence[P | None],
    timeframe_ms: int,
    series: Sequence[FundingSeries],
    book: Book[P, Any],
) -> FundingOutcome:
    """Settlement cash flows of the positions in `held` (the position over each bar), leg
    by leg in the order of `series` (module docstring)."""
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
                seen[int(nominal[k])] = k  # a duplicate that has the mark price wins
        for when, k in seen.items():
            t = int(np.searchsorted(closes_at, when, side="left"))
            settlements += 1
            tr = held[t]
            if tr is None:
                continue
            mark = float(s.mark[k])
            if not np.isfinite(mark):
                mark = book.price(leg, t)
                proxy += 1
            flow = -book.qty(tr, leg) * mark * float(s.rate[k])
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


TRADE_FIELDS = (
    "entry_time",
    "exit_time",
    "side",
    "entry_x",
    "entry_y",
    "exit_x",
    "exit_y",
    "beta",
    "pnl",
    "bars_held",
    "funding",
)


@dataclass(frozen=True, slots=True)
class BacktestReport:
    """A backtest over a pair's stored bars; the CLI, the app and the CSV export share it."""

    result: BacktestResult
    bars: int
    params: dict

    def trades_json(self) -> list[dict]:
        funded = self.result.funding is not None
        legs = ("entry_x", "entry_y", "exit_x", "exit_y", "beta")
        return [
            trade_json(t, funded, **{k: getattr(t, k) for k in legs}) for t in self.result.trades
        ]

    def as_json(self) -> dict:
        return report_json(self.result, self.trades_json(), self.bars, self.params)

    def funding_json(self) -> dict:
        """The funding keys of `--json` (None throughout when no funding was loaded)."""
        return _funding_json(self.result)


def trade_json(t: Position, funded: bool, **legs: object) -> dict:
    """One trade of `backtest --json`: its times and side, the `legs` fields (prices,
    hedge), then its PnL, bars held and funding (None when no funding was loaded)."""
    from quanttui.model import iso_utc

    return {
        "entry_time": iso_utc(t.entry_time),
        "exit_time": iso_utc(t.exit_time) if t.exit_time is not None else None,
        "side": t.side,
        **legs,
        "pnl": t.pnl,
        "bars_held": t.bars_held,
        "funding": t.funding if funded else None,
    }


def report_json(r: StrategyResult, trades: list[dict], bars: int, params: dict) -> dict:
    """`backtest --json` of a pair or a basket: the result's summary with `trades`."""
    return {
        "trades": trades,
        "total_pnl": r.total_pnl,
        "fees": r.fees,
        "return_on_notional": r.return_on_notional,
        "sharpe": r.sharpe,
        "max_drawdown": r.max_drawdown,
        "win_rate": r.win_rate,
        "exposure": r.exposure,
        "bars": bars,
        "params": params,
        **_funding_json(r),
    }


def _funding_json(r: StrategyResult) -> dict:
    f = r.funding
    return {
        "funding": None if f is None else f.total,
        "pnl_before_funding": r.total_pnl,
        "pnl_after_funding": r.pnl_after_funding,
        "funding_coverage": None if f is None else f.coverage,
        "funding_settlements": None if f is None else f.settlements,
        "funding_missing": None if f is None else f.missing,
        "funding_missing_in_position": None if f is None else f.missing_in_position,
        "funding_mark_from_close": None if f is None else f.mark_from_close,
    }


def bars_in_range(
    history: Iterable[M],
    start_ms: int | None,
    end_ms: int | None,
    name: str,
    timeframe: str,
    window: int,
) -> list[M]:
    """The metrics of `history` with ``start_ms <= ts_ms <= end_ms`` (either bound open
    when None): the bars a backtest trades. Raises `ValueError` when they are fewer than
    two or have no z-score."""
    keep = [
        m
        for m in history
        if (start_ms is None or m.ts_ms >= start_ms) and (end_ms is None or m.ts_ms <= end_ms)
    ]
    if len(keep) < 2 or not any(math.isfinite(m.zscore) for m in keep):
        raise ValueError(
            f"too little data for a backtest of {name} at {timeframe}: "
            f"{len(keep)} bars in range, z-scores need {2 * window - 1} bars"
        )
    return keep


def backtest_bars(
    bars: PairBars,
    pair: PairParams,
    params: BacktestParams,
    start_ms: int | None = None,
    end_ms: int | None = None,
    funding: tuple[FundingSeries, FundingSeries] | None = None,
) -> BacktestReport:
    """Run the analytics over all `bars` (so the first bars in range already have a full
    window), then the strategy over the bars in ``[start_ms, end_ms]``, with the X and Y
    `funding` settlements when given (`quanttui.store.queries.load_funding_series`).

    Raises `ValueError` when the range holds fewer than two bars or no z-score."""
    from quanttui.analytics.snapshot import run_bars

    engine = pair.analytics(history=max(len(bars), 1))
    run_bars(engine, bars)
    keep = bars_in_range(engine.history, start_ms, end_ms, pair.pair, pair.timeframe, pair.window)

    def col(name: str) -> np.ndarray:
        return np.fromiter((getattr(m, name) for m in keep), float, len(keep))

    res = run_backtest(
        np.fromiter((m.ts_ms for m in keep), np.int64, len(keep)),
        col("x"),
        col("y"),
        col("zscore"),
        col("beta"),
        params,
        pair.timeframe_ms,
        funding,
    )
    meta = {
        **res.params,
        "symbol_x": pair.symbol_x,
        "symbol_y": pair.symbol_y,
        "timeframe": pair.timeframe,
        "window": pair.window,
        "hedge": pair.hedge,
    }
    return BacktestReport(res, len(keep), meta)
