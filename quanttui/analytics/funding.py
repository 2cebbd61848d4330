"""Perpetual-futures carry of a pair: basis, funding and what the signalled position earns.

Pure (no I/O): `FundingState` takes the `MarkPrice` updates of both legs and answers the
metrics table's numbers; `carry_matrix` does the same carry for every pair of a scanner
at once (through the same `_carry`); `FundingSeries` and `expected_settlements` are what the backtest needs.

Conventions (the README's "Funding and carry" repeats them)
------------------------------------------------------------
Funding rate ``r`` is Binance's: a fraction per settlement (0.0001 = 0.01%). At each
settlement a position of signed quantity ``q`` (contracts of the base asset, ``q > 0``
long) receives the cash flow

.. math:: F = -q \\cdot M \\cdot r

where ``M`` is the mark price at the settlement: **a long pays when r > 0** and receives
when ``r < 0``; a short the reverse [1]_. A leg settles every ``I`` hours (its fundingInfo
interval, 8 by default), so ``24 / I`` times a day.

Basis of a leg, in basis points of the index: ``1e4 * (mark - index) / index``.

The pair's position follows the z-score's sign (the side an entry would take):
``z > 0`` short the spread = short 1 Y, long ``h`` X; ``z < 0`` long the spread = long
1 Y, short ``h`` X; ``z = 0`` or undefined: no side. ``h = b`` with a price hedge
(``ols``, ``kalman``) and ``h = b * M_y / M_x`` with ``log`` (the same value hedge the
backtest uses). With ``s = +1`` long and ``-1`` short, ``q_y = s`` and ``q_x = -s h``.

Gross notional ``G = |q_y| M_y + |q_x| M_x`` at mark prices. Carry, in bps of gross
notional per day, assuming the current rates hold for a day:

.. math:: C = \\frac{10^4}{G}\\left(-q_y M_y r_y \\frac{24}{I_y}
          - q_x M_x r_x \\frac{24}{I_x}\\right)

Positive carry means the position *receives* funding. ``C`` of the long side is ``-C``
of the short side.

References
----------
.. [1] Binance, "Introduction to Binance Futures Funding Rates" (USD-M perpetuals):
   positive funding, longs pay shorts; the payment is position notional (at the mark
   price) times the rate, at each funding time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from quanttui.model import DEFAULT_FUNDING_INTERVAL_H, FundingMetrics, LegFunding, MarkPrice

HOUR_MS = 3_600_000
DAY_H = 24.0


def basis_bps(mark: float, index: float) -> float:
    """``1e4 * (mark - index) / index``; raises `ValueError` for a non-positive index."""
    if not index > 0:
        raise ValueError("index price must be positive")
    return 1e4 * (mark - index) / index


def daily_rate(rate: np.ndarray | float, interval_h: np.ndarray | float) -> np.ndarray | float:
    """A per-settlement rate as a rate per day: ``rate * 24 / interval_h``."""
    return np.asarray(rate, float) * DAY_H / np.asarray(interval_h, float)


def signal_side(zscore: float | None) -> str | None:
    """``"short"`` for z > 0 (short the spread), ``"long"`` for z < 0, else None."""
    if zscore is None or not math.isfinite(zscore) or zscore == 0:
        return None
    return "short" if zscore > 0 else "long"


def _carry(
    s: np.ndarray | float,
    h: np.ndarray | float,
    mark_x: np.ndarray | float,
    mark_y: np.ndarray | float,
    f_x: np.ndarray | float,
    f_y: np.ndarray | float,
) -> np.ndarray | float:
    """``C`` of the module docstring, the one formula every view uses: side ``s`` (+1
    long the spread, -1 short), ``h`` units of X per unit of Y, rates per day ``f``
    (`daily_rate`). Element-wise; NaN in, NaN out."""
    qy, qx = s, -s * h
    gross = np.abs(qy) * mark_y + np.abs(qx) * mark_x
    flow = -qy * mark_y * f_y - qx * mark_x * f_x
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1e4 * flow / gross


def _hedge_units(
    beta: np.ndarray | float,
    mark_x: np.ndarray | float,
    mark_y: np.ndarray | float,
    log_hedge: bool,
) -> np.ndarray | float:
    """Units of X per unit of Y: ``b`` for a price hedge, ``b * M_y / M_x`` for ``log``."""
    return beta * mark_y / mark_x if log_hedge else beta


def pair_carry_bps_day(
    side: str,
    beta: float,
    mark_x: float,
    mark_y: float,
    rate_x: float,
    rate_y: float,
    interval_x_h: float = DEFAULT_FUNDING_INTERVAL_H,
    interval_y_h: float = DEFAULT_FUNDING_INTERVAL_H,
    *,
    log_hedge: bool = False,
) -> float:
    """Carry ``C`` of the module docstring, bps of gross notional per day; positive =
    the position receives funding. Raises `ValueError` for a bad side or price."""
    if side not in ("long", "short"):
        raise ValueError(f"side must be long or short, got {side!r}")
    if not (mark_x > 0 and mark_y > 0):
        raise ValueError("mark prices must be positive")
    if not (interval_x_h > 0 and interval_y_h > 0):
        raise ValueError("funding intervals must be positive")
    s = 1.0 if side == "long" else -1.0
    h = _hedge_units(beta, mark_x, mark_y, log_hedge)
    fx, fy = rate_x * DAY_H / interval_x_h, rate_y * DAY_H / interval_y_h
    return float(_carry(s, h, mark_x, mark_y, fx, fy))


def _side_sign(zscore: np.ndarray) -> np.ndarray:
    """The position `signal_side` takes, as +1 long / -1 short: ``-sign(z)``, NaN where
    z is 0 or undefined."""
    z = np.asarray(zscore, float)
    s = -np.sign(z)
    s[~np.isfinite(z) | (z == 0)] = np.nan
    return s


def carry_matrix(
    zscore: np.ndarray,
    beta: np.ndarray,
    rates_per_day: np.ndarray,
) -> np.ndarray:
    """The scanner's carry column: ``C`` of the module docstring for every ordered pair,
    bps of gross notional per day, for the side each pair's z points to.

    Index convention of `quanttui.analytics.scan`: ``[i, j]`` is Y = symbol i regressed
    on X = symbol j, ``log y = alpha + beta log x``. That ``beta`` is a log hedge
    (``h = beta M_y / M_x`` units of X per Y, the backtest's value hedge), so the
    notionals are ``M_y`` and ``|beta| M_y`` and the prices cancel:

    .. math:: C_{ij} = 10^4 \\, s_{ij} \\frac{\\beta_{ij} f_j - f_i}{1 + |\\beta_{ij}|}

    with ``s = -sign(z)`` (+1 long the spread, -1 short) and ``f = r * 24 / I`` each
    symbol's rate per day (`daily_rate`). It is `pair_carry_bps_day` with unit marks and
    ``log_hedge``, computed by the same function. NaN where z is 0 or NaN, where
    ``beta`` is NaN, where either leg's rate is NaN (never 0 for a missing rate), and on
    the diagonal."""
    f = np.asarray(rates_per_day, float)
    b = np.asarray(beta, float)
    z = np.asarray(zscore, float)
    n = f.shape[0]
    if f.ndim != 1 or b.shape != (n, n) or z.shape != (n, n):
        raise ValueError("rates_per_day must be (n,), beta and zscore (n, n)")
    c = np.asarray(_carry(_side_sign(z), b, 1.0, 1.0, f[None, :], f[:, None]), float)
    np.fill_diagonal(c, np.nan)
    return c


class FundingState:
    """The latest `MarkPrice` of each leg of one pair, and the metrics they give.

    Feed it every update of either leg (`update`); ask `metrics(beta, zscore, now_ms)`
    when a snapshot is built. `update` returns the funding time a leg has just passed
    (its ``T`` moved on) so the caller can fetch that settlement over REST; the
    stream's ``r`` is the rate *predicted* for ``T``, the settled one comes from
    ``/fapi/v1/fundingRate``. Updates older than the stored one are ignored.
    """

    def __init__(
        self,
        symbol_x: str,
        symbol_y: str,
        interval_x_h: int = DEFAULT_FUNDING_INTERVAL_H,
        interval_y_h: int = DEFAULT_FUNDING_INTERVAL_H,
        *,
        log_hedge: bool = False,
    ) -> None:
        self.symbols = (symbol_x, symbol_y)
        self.intervals = {symbol_x: interval_x_h, symbol_y: interval_y_h}
        self.log_hedge = log_hedge
        self.latest: dict[str, MarkPrice] = {}
        self.updates = 0

    @classmethod
    def from_marks(
        cls,
        symbol_x: str,
        symbol_y: str,
        marks: Iterable[MarkPrice],
        intervals: Mapping[str, int],
        *,
        log_hedge: bool = False,
    ) -> FundingState:
        """A state primed with stored updates (`quanttui.store.queries.load_marks`) and
        intervals (`funding_intervals`)."""
        state = cls(symbol_x, symbol_y, log_hedge=log_hedge)
        state.set_intervals(intervals)
        for mp in marks:
            state.update(mp)
        return state

    def set_intervals(self, intervals: Mapping[str, int]) -> None:
        """Intervals (hours) from ``funding_info``; symbols missing keep theirs."""
        for s in self.symbols:
            if s in intervals:
                if not intervals[s] > 0:
                    raise ValueError(f"funding interval of {s} must be positive")
                self.intervals[s] = int(intervals[s])

    def update(self, mp: MarkPrice) -> int | None:
        """Take one update; returns the previous next-funding time when this update
        moved past it (a settlement happened), else None. Other symbols are ignored."""
        if mp.symbol not in self.symbols:
            return None
        prev = self.latest.get(mp.symbol)
        if prev is not None and mp.event_ms < prev.event_ms:
            return None
        self.latest[mp.symbol] = mp
        self.updates += 1
        if prev is not None and mp.next_funding_ms > prev.next_funding_ms:
            return prev.next_funding_ms
        return None

    def leg(self, symbol: str, now_ms: int) -> LegFunding | None:
        mp = self.latest.get(symbol)
        if mp is None:
            return None
        return LegFunding(
            symbol,
            mp.mark,
            mp.index,
            basis_bps(mp.mark, mp.index),
            mp.rate,
            self.intervals[symbol],
            mp.next_funding_ms,
            max(0.0, (mp.next_funding_ms - now_ms) / 1000),
            mp.event_ms,
        )

    def metrics(self, beta: float | None, zscore: float | None, now_ms: int) -> FundingMetrics:
        """Legs as last updated, countdowns at `now_ms`, and the carry of the side the
        z-score points to with hedge ratio `beta` (None until both legs and a finite
        beta are known)."""
        x, y = (self.leg(s, now_ms) for s in self.symbols)
        side = signal_side(zscore)
        carry = None
        if side is not None and x is not None and y is not None:
            if beta is not None and math.isfinite(beta):
                carry = pair_carry_bps_day(
                    side,
                    beta,
                    x.mark,
                    y.mark,
                    x.rate,
                    y.rate,
                    x.interval_h,
                    y.interval_h,
                    log_hedge=self.log_hedge,
                )
        return FundingMetrics(x, y, side, carry)


@dataclass(frozen=True, slots=True)
class FundingSeries:
    """One leg's stored settlements, oldest first: ``ts_ms`` (funding times), ``rate``
    and ``mark`` (NaN where not stored), and the leg's interval in hours."""

    ts_ms: np.ndarray
    rate: np.ndarray
    mark: np.ndarray
    interval_h: int = DEFAULT_FUNDING_INTERVAL_H

    def __post_init__(self) -> None:
        n = len(self.ts_ms)
        if len(self.rate) != n or len(self.mark) != n:
            raise ValueError("ts_ms, rate and mark must have the same length")
        if n > 1 and np.any(np.diff(self.ts_ms) <= 0):
            raise ValueError("funding times must be strictly increasing")
        if not self.interval_h > 0:
            raise ValueError("interval_h must be positive")

    @classmethod
    def empty(cls, interval_h: int = DEFAULT_FUNDING_INTERVAL_H) -> FundingSeries:
        return cls(np.empty(0, np.int64), np.empty(0), np.empty(0), interval_h)


def expected_settlements(start_ms: int, end_ms: int, interval_h: int) -> np.ndarray:
    """The settlement times in ``(start_ms, end_ms]`` of a leg that settles every
    `interval_h` hours: multiples of the interval since the epoch (Binance settles on
    the UTC hour, 00:00 included, and 24 is a multiple of 1, 2, 4 and 8)."""
    step = interval_h * HOUR_MS
    first = (start_ms // step + 1) * step
    if first > end_ms:
        return np.empty(0, np.int64)
    return np.arange(first, end_ms + 1, step, dtype=np.int64)


def match_settlements(series: FundingSeries, expected: np.ndarray) -> np.ndarray:
    """For each expected settlement time, the index into `series` of the stored one
    (the same slot: ``round(t / interval)``, so a ``fundingTime`` a few ms after the hour
    matches), or -1 where none is stored."""
    step = series.interval_h * HOUR_MS
    if series.ts_ms.size == 0 or expected.size == 0:
        return np.full(expected.size, -1, np.int64)
    slots = np.rint(series.ts_ms / step).astype(np.int64)
    want = np.rint(expected / step).astype(np.int64)
    pos = np.searchsorted(slots, want)
    pos_c = np.minimum(pos, slots.size - 1)
    found = slots[pos_c] == want
    return np.where(found, pos_c, -1)


def last_settled(series: FundingSeries, ts_ms: np.ndarray) -> np.ndarray:
    """At each time, the rate of the latest stored settlement at or before it (NaN
    before the first one): Binance's "last funding rate"."""
    idx = np.searchsorted(series.ts_ms, np.asarray(ts_ms, np.int64), side="right") - 1
    out = np.full(idx.shape, np.nan)
    ok = idx >= 0
    out[ok] = series.rate[idx[ok]]
    return out


def carry_bps_day_array(
    zscore: np.ndarray,
    beta: np.ndarray,
    mark_x: np.ndarray,
    mark_y: np.ndarray,
    rate_x: np.ndarray,
    rate_y: np.ndarray,
    interval_x_h: float,
    interval_y_h: float,
    *,
    log_hedge: bool = False,
) -> np.ndarray:
    """`pair_carry_bps_day` element-wise, the side from the sign of `zscore`; NaN where
    z is 0 or NaN or any input is NaN."""
    mx, my = np.asarray(mark_x, float), np.asarray(mark_y, float)
    h = _hedge_units(np.asarray(beta, float), mx, my, log_hedge)
    fx = daily_rate(rate_x, interval_x_h)
    fy = daily_rate(rate_y, interval_y_h)
    return np.asarray(_carry(_side_sign(zscore), h, mx, my, fx, fy), float)


def funding_columns(
    ts_ms: np.ndarray,
    close_x: np.ndarray,
    close_y: np.ndarray,
    beta: np.ndarray,
    zscore: np.ndarray,
    x: FundingSeries,
    y: FundingSeries,
    *,
    log_hedge: bool = False,
) -> dict[str, np.ndarray]:
    """The funding metrics of each stored bar, for the analytics CSV: ``funding_x``/
    ``funding_y`` the last settled rate at the bar (`last_settled`; the live metric is
    the rate predicted for the next settlement, which is not stored per bar),
    ``carry_bps_day`` the carry of the side z points to with those rates and the bar's
    closes as marks, ``basis_x``/``basis_y`` NaN (index prices are not stored per bar)."""
    fx, fy = last_settled(x, ts_ms), last_settled(y, ts_ms)
    carry = carry_bps_day_array(
        zscore, beta, close_x, close_y, fx, fy, x.interval_h, y.interval_h, log_hedge=log_hedge
    )
    nan = np.full(len(ts_ms), np.nan)
    return {
        "funding_x": fx,
        "funding_y": fy,
        "carry_bps_day": carry,
        "basis_x": nan,
        "basis_y": nan.copy(),
    }
