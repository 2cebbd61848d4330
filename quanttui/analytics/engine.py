"""The pair's metrics, updated once per closed bar in O(1).

Every metric at bar t uses only bars up to t: the hedge ratio is re-estimated on the
window ending at t and applied to bar t alone, and the spread history keeps each bar's
spread as computed at its own time. Estimating beta on the whole sample and applying it
to the past (a look-ahead bug of the dashboards this replaces) is impossible by
construction.

Definitions (W = window in bars; see the README for the same list):

* hedge ``ols``: OLS with intercept of ``y`` on ``x`` over the last W closes,
  ``y = a_t + b_t x``; ``log`` does the same on log closes; ``kalman`` uses
  `KalmanHedge` on closes, and reports ``a_t, b_t`` after bar t's update.
* spread: ``s_t = y_t - a_t - b_t x_t`` (in log space for ``log``). In ``kalman`` mode
  it is the one-step-ahead forecast error ``s_t = y_t - (a_{t|t-1} + b_{t|t-1} x_t)``,
  with the state from before bar t's update (Chan 2013, ch. 3); ``kalman_q`` is its
  forecast variance ``Q_t`` and ``kalman_z = s_t / sqrt(Q_t)``. The first bar only
  seeds the filter and has no spread.
* z-score: ``z_t = (s_t - mean(s_{t-W+1..t})) / std(s_{t-W+1..t}, ddof=1)``, in every
  hedge mode; alerts and the backtest use it.
* correlation: Pearson correlation of one-bar log returns of x and y over the last W
  returns; the return beta and its R^2 come from the same window.
* half-life: OLS ``ds_t = c + k s_{t-1}`` over the W spreads of the z window
  (W - 1 differences); ``-ln 2 / k`` bars when ``k < 0``, else undefined.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from quanttui.analytics.kalman import KalmanHedge
from quanttui.analytics.rolling import RollingCov, SpreadZ

NAN = math.nan


@dataclass(frozen=True, slots=True)
class BarMetrics:
    """The metrics at one closed bar; `nan` while a window is filling."""

    ts_ms: int
    x: float
    y: float
    alpha: float
    beta: float
    r2: float
    beta_se: float
    spread: float
    spread_mean: float
    zscore: float
    corr: float
    return_beta: float
    return_r2: float
    return_beta_se: float
    half_life_bars: float
    kalman_q: float = NAN
    kalman_z: float = NAN


def _nz(v: float) -> float:
    return v if math.isfinite(v) else NAN


class PairAnalytics:
    """Streaming estimator over pair closes: call `update(ts_ms, x, y)` once per bar.

    It also keeps, in bounded buffers, the last W transformed closes and spreads that the
    stationarity tests need, and the last `history` bar metrics for the charts.
    """

    def __init__(
        self,
        window: int,
        hedge: str = "ols",
        *,
        kalman_delta: float = 1e-8,
        kalman_obs_var: float = 1e-5,
        history: int = 600,
    ) -> None:
        if window < 3:
            raise ValueError(f"window must be >= 3, got {window}")
        if hedge not in ("ols", "log", "kalman"):
            raise ValueError(f"unknown hedge mode {hedge!r}")
        self.window = window
        self.hedge = hedge
        self.bars = 0
        self._fit = RollingCov(window)
        self._kalman = KalmanHedge(kalman_delta, kalman_obs_var) if hedge == "kalman" else None
        self._ret = RollingCov(window)
        self._prev_x = NAN
        self._prev_y = NAN
        self.history: deque[BarMetrics] = deque(maxlen=max(history, 1))
        self.window_x: deque[float] = deque(maxlen=window)
        self.window_y: deque[float] = deque(maxlen=window)
        self.window_spread: deque[float] = deque(maxlen=window)
        self._z = SpreadZ(window, keep=self.window_spread)

    @property
    def last(self) -> BarMetrics | None:
        return self.history[-1] if self.history else None

    def update(self, ts_ms: int, x: float, y: float) -> BarMetrics:
        if not (x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"closes must be positive and finite, got ({x!r}, {y!r})")
        self.bars += 1
        hx, hy = (math.log(x), math.log(y)) if self.hedge == "log" else (x, y)
        self.window_x.append(hx)
        self.window_y.append(hy)

        alpha = beta = r2 = se = spread = kq = kz = NAN
        if self._kalman is not None:
            k = self._kalman
            spread, kq = k.update(hx, hy)
            alpha, beta, se = k.alpha, k.beta, k.beta_se
            if kq > 0:
                kz = spread / math.sqrt(kq)
        else:
            fit = self._fit
            fit.update(hx, hy)
            if fit.full:
                beta = fit.beta
                if math.isfinite(beta):
                    alpha, r2, se = fit.alpha, _nz(fit.r2), _nz(fit.beta_se)
                    spread = fit.residual(hx, hy)

        spread_mean, z, half_life = self._z.update(spread)

        corr = rbeta = rr2 = rse = NAN
        if math.isfinite(self._prev_x):
            ret = self._ret
            ret.update(math.log(x / self._prev_x), math.log(y / self._prev_y))
            if ret.full:
                corr, rbeta, rr2, rse = _nz(ret.corr), _nz(ret.beta), _nz(ret.r2), _nz(ret.beta_se)
        self._prev_x, self._prev_y = x, y

        m = BarMetrics(
            ts_ms,
            x,
            y,
            alpha,
            beta,
            r2,
            se,
            spread,
            spread_mean,
            z,
            corr,
            rbeta,
            rr2,
            rse,
            half_life,
            kq,
            kz,
        )
        self.history.append(m)
        return m
