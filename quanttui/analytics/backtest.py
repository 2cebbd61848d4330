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
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

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


@dataclass(slots=True)
class BacktestResult:
    trades: list[Trade]
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
    fee = params.fee_bps / 1e4
    xs, ys, zs, bs = x.tolist(), y.tolist(), z.tolist(), beta.tolist()
    bar_pnl = np.zeros(n)
    trades: list[Trade] = []
    open_t: Trade | None = None
    pending: tuple[str, float] | None = None  # ("long"/"short", beta) or ("exit", nan)
    fees_total = 0.0
    gross = 0.0
    in_market = 0
    held: list[Trade | None] = [None] * n
    for t in range(n):
        px, py = xs[t], ys[t]
        held[t] = open_t
        if open_t is not None and t > 0:
            bar_pnl[t] += open_t.qy * (py - ys[t - 1]) + open_t.qx * (px - xs[t - 1])
        if pending is not None:
            kind, b = pending
            pending = None
            if kind == "exit" and open_t is not None:
                cost = fee * (abs(open_t.qy) * py + abs(open_t.qx) * px)
                bar_pnl[t] -= cost
                fees_total += cost
                open_t.pnl += float(bar_pnl[t])
                open_t.exit_time, open_t.exit_x, open_t.exit_y = int(ts_ms[t]), px, py
                open_t.bars_held = t - open_t.entry_index
                trades.append(open_t)
                open_t = None
            elif kind in ("long", "short") and open_t is None:
                hx = b * py / px if params.log_hedge else b
                sign = 1.0 if kind == "long" else -1.0
                open_t = Trade(int(ts_ms[t]), kind, px, py, b, -sign * hx, sign, t)
                cost = fee * (py + abs(hx) * px)
                gross += py + abs(hx) * px
                bar_pnl[t] -= cost
                fees_total += cost
                open_t.pnl = -cost
        elif open_t is not None and t > open_t.entry_index:
            open_t.pnl += float(bar_pnl[t])
        if open_t is not None:
            in_market += 1
        if t == n - 1:
            break
        zt, bt = zs[t], bs[t]
        if not (math.isfinite(zt) and math.isfinite(bt)):
            continue
        if open_t is None:
            if zt >= params.entry_z:
                pending = ("short", bt)
            elif zt <= -params.entry_z:
                pending = ("long", bt)
        else:
            stop = params.stop_z is not None and abs(zt) >= params.stop_z
            if (
                stop
                or (open_t.side == "short" and zt <= params.exit_z)
                or (open_t.side == "long" and zt >= -params.exit_z)
            ):
                pending = ("exit", math.nan)
    if open_t is not None:
        open_t.exit_time = None
        open_t.exit_x, open_t.exit_y = xs[-1], ys[-1]
        open_t.bars_held = n - 1 - open_t.entry_index
        trades.append(open_t)
    outcome = None
    if funding is not None and n:
        outcome = _funding(np.asarray(ts_ms, np.int64), xs, ys, held, timeframe_ms, *funding)
    equity = np.cumsum(bar_pnl)
    total = float(equity[-1]) if n else 0.0
    closed = [tr for tr in trades if tr.exit_time is not None]
    sharpe = None
    if n > 2 and bar_pnl.std(ddof=1) > 0:
        sharpe = float(
            bar_pnl.mean() / bar_pnl.std(ddof=1) * math.sqrt(YEAR_S * 1000 / timeframe_ms)
        )
    peak = np.maximum.accumulate(np.r_[0.0, equity])[1:] if n else equity
    return BacktestResult(
        trades=trades,
        equity=equity,
        bar_pnl=bar_pnl,
        ts_ms=np.asarray(ts_ms),
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


MINUTE_MS = 60_000


def _funding(
    ts_ms: np.ndarray,
    xs: list[float],
    ys: list[float],
    held: list[Trade | None],
    timeframe_ms: int,
    fx: FundingSeries,
    fy: FundingSeries,
) -> FundingOutcome:
    """Settlement cash flows of the positions in `held` (the position over each bar)."""
    closes_at = ts_ms + timeframe_ms
    lo, hi = int(closes_at[0]), int(closes_at[-1])
    bar = np.zeros(len(ts_ms))
    total = 0.0
    settlements = expected = missing = in_pos = proxy = 0
    for series, closes, leg in ((fx, xs, "x"), (fy, ys, "y")):
        nominal = (series.ts_ms + MINUTE_MS // 2) // MINUTE_MS * MINUTE_MS
        seen: dict[int, int] = {}
        for k in np.flatnonzero((nominal > lo) & (nominal <= hi)).tolist():
            first = seen.setdefault(int(nominal[k]), k)
            if first != k and not np.isfinite(series.mark[first]):
                seen[int(nominal[k])] = k  # a duplicate that has the mark price wins
        for when, k in seen.items():
            t = int(np.searchsorted(closes_at, when, side="left"))
            settlements += 1
            tr = held[t]
            if tr is None:
                continue
            mark = float(series.mark[k])
            if not np.isfinite(mark):
                mark = closes[t]
                proxy += 1
            q = tr.qx if leg == "x" else tr.qy
            flow = -q * mark * float(series.rate[k])
            bar[t] += flow
            tr.funding += flow
            total += flow
        want = expected_settlements(lo, hi, series.interval_h)
        absent = want[match_settlements(series, want) < 0]
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
        from quanttui.model import iso_utc

        out = []
        r = self.result
        for t in r.trades:
            out.append(
                {
                    "entry_time": iso_utc(t.entry_time),
                    "exit_time": iso_utc(t.exit_time) if t.exit_time is not None else None,
                    "side": t.side,
                    "entry_x": t.entry_x,
                    "entry_y": t.entry_y,
                    "exit_x": t.exit_x,
                    "exit_y": t.exit_y,
                    "beta": t.beta,
                    "pnl": t.pnl,
                    "bars_held": t.bars_held,
                    "funding": t.funding if r.funding is not None else None,
                }
            )
        return out

    def as_json(self) -> dict:
        r = self.result
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
            **self.funding_json(),
        }

    def funding_json(self) -> dict:
        """The funding keys of `--json` (None throughout when no funding was loaded)."""
        r, f = self.result, self.result.funding
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
    keep = [
        m
        for m in engine.history
        if (start_ms is None or m.ts_ms >= start_ms) and (end_ms is None or m.ts_ms <= end_ms)
    ]
    if len(keep) < 2 or not any(math.isfinite(m.zscore) for m in keep):
        raise ValueError(
            f"too little data for a backtest of {pair.pair} at {pair.timeframe}: "
            f"{len(keep)} bars in range, z-scores need {2 * pair.window - 1} bars"
        )

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
