"""Rolling co-moments of a pair of series, updated in O(1) per observation.

One accumulator serves every rolling statistic of the app: the OLS hedge ratio (prices or
log prices), the return correlation and return beta, the spread's mean and standard
deviation for the z-score, and the half-life regression. Keeping a single implementation
means one place to get the numerics right.

Numerics. Naive running sums of x and x^2 lose everything to cancellation when prices sit
near 1e5 and move by 1e-4 relative. We keep sums of *shifted* values, `x - Kx`, where
the shift K is the window mean at the last exact recompute, so the sums stay of the size
of the deviations. Every `window` updates the sums are recomputed exactly from the ring
buffer with `math.fsum` and a fresh shift; that bounds the drift of add-and-remove
rounding and costs O(1) amortised.
"""

from __future__ import annotations

import math
from collections import deque

NAN = float("nan")


class RollingCov:
    """Mean, variance, covariance and the OLS fit `y = alpha + beta*x` over the last
    `window` pairs.

    Parameters
    ----------
    window : int
        Number of most recent observations kept (>= 2).

    Notes
    -----
    With centred sums ``Cxx = sum (x - xbar)^2``, ``Cyy``, ``Cxy``:

    * ``beta = Cxy / Cxx``, ``alpha = ybar - beta * xbar``
    * ``r2 = Cxy^2 / (Cxx * Cyy)`` (OLS with intercept)
    * ``se(beta) = sqrt((Cyy - beta * Cxy) / (n - 2) / Cxx)``
    * ``corr = Cxy / sqrt(Cxx * Cyy)`` (Pearson)
    * ``var_x = Cxx / (n - 1)`` (ddof = 1)
    """

    __slots__ = ("window", "_xs", "_ys", "_n", "_head", "_kx", "_ky", "_sx", "_sy")
    __slots__ += ("_sxx", "_syy", "_sxy", "_since")

    def __init__(self, window: int) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window = window
        self._xs = [0.0] * window
        self._ys = [0.0] * window
        self.clear()

    def clear(self) -> None:
        self._n = 0
        self._head = 0
        self._kx = self._ky = 0.0
        self._sx = self._sy = self._sxx = self._syy = self._sxy = 0.0
        self._since = 0

    @property
    def n(self) -> int:
        return self._n

    @property
    def full(self) -> bool:
        return self._n == self.window

    def update(self, x: float, y: float) -> None:
        """Add one pair, dropping the oldest once the window is full."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"non-finite observation ({x!r}, {y!r})")
        if self._n == 0:
            self._kx, self._ky = x, y
        dx, dy = x - self._kx, y - self._ky
        head = self._head
        if self._n == self.window:
            ox, oy = self._xs[head] - self._kx, self._ys[head] - self._ky
            self._sx += dx - ox
            self._sy += dy - oy
            self._sxx += dx * dx - ox * ox
            self._syy += dy * dy - oy * oy
            self._sxy += dx * dy - ox * oy
        else:
            self._n += 1
            self._sx += dx
            self._sy += dy
            self._sxx += dx * dx
            self._syy += dy * dy
            self._sxy += dx * dy
        self._xs[head] = x
        self._ys[head] = y
        self._head = head + 1 if head + 1 < self.window else 0
        self._since += 1
        if self._since >= self.window:
            self._recompute()

    def _recompute(self) -> None:
        n = self._n
        xs, ys = self.values()
        kx = math.fsum(xs) / n
        ky = math.fsum(ys) / n
        dxs = [v - kx for v in xs]
        dys = [v - ky for v in ys]
        self._kx, self._ky = kx, ky
        self._sx = math.fsum(dxs)
        self._sy = math.fsum(dys)
        self._sxx = math.fsum(d * d for d in dxs)
        self._syy = math.fsum(d * d for d in dys)
        self._sxy = math.fsum(a * b for a, b in zip(dxs, dys, strict=True))
        self._since = 0

    def values(self) -> tuple[list[float], list[float]]:
        """The window's observations, oldest first."""
        if self._n < self.window:
            return self._xs[: self._n], self._ys[: self._n]
        h = self._head
        return self._xs[h:] + self._xs[:h], self._ys[h:] + self._ys[:h]

    @property
    def mean_x(self) -> float:
        return self._kx + self._sx / self._n

    @property
    def mean_y(self) -> float:
        return self._ky + self._sy / self._n

    @property
    def cxx(self) -> float:
        return max(self._sxx - self._sx * self._sx / self._n, 0.0)

    @property
    def cyy(self) -> float:
        return max(self._syy - self._sy * self._sy / self._n, 0.0)

    @property
    def cxy(self) -> float:
        return self._sxy - self._sx * self._sy / self._n

    @property
    def var_x(self) -> float:
        return self.cxx / (self._n - 1)

    @property
    def std_x(self) -> float:
        return math.sqrt(self.var_x)

    @property
    def beta(self) -> float:
        cxx = self.cxx
        return self.cxy / cxx if cxx > 0 else math.nan

    @property
    def alpha(self) -> float:
        return self.mean_y - self.beta * self.mean_x

    def residual(self, x: float, y: float) -> float:
        """``y - alpha - beta*x``, computed from deviations so no large terms cancel."""
        return (y - self.mean_y) - self.beta * (x - self.mean_x)

    @property
    def r2(self) -> float:
        d = self.cxx * self.cyy
        return self.cxy * self.cxy / d if d > 0 else math.nan

    @property
    def beta_se(self) -> float:
        cxx = self.cxx
        if self._n < 3 or cxx <= 0:
            return math.nan
        ssr = max(self.cyy - self.beta * self.cxy, 0.0)
        return math.sqrt(ssr / (self._n - 2) / cxx)

    @property
    def corr(self) -> float:
        d = self.cxx * self.cyy
        return self.cxy / math.sqrt(d) if d > 0 else math.nan


class SpreadZ:
    """The z-score and the half-life of a spread over its last `window` values, the one
    definition the pair and the basket share.

    * ``z_t = (s_t - mean(s)) / sd(s)`` over the last W spreads (ddof = 1), once W exist;
    * half-life ``= -ln 2 / k`` bars, ``k`` the OLS slope of ``ds_t = c + k s_{t-1}``
      over the last W - 1 steps, none when ``k >= 0`` (no mean reversion).

    A spread that is not finite (an undefined hedge or test) starts both windows again,
    and `keep` (the pair's window of spreads for the stationarity tests) with them.
    """

    __slots__ = ("_spreads", "_ar", "_prev", "_keep")

    def __init__(self, window: int, keep: deque[float] | None = None) -> None:
        self._spreads = RollingCov(window)
        self._ar = RollingCov(window - 1)
        self._prev = NAN
        self._keep = keep

    def clear(self) -> None:
        self._spreads.clear()
        self._ar.clear()
        if self._keep is not None:
            self._keep.clear()
        self._prev = NAN

    def update(self, spread: float) -> tuple[float, float, float]:
        """``(mean, z, half-life)`` after `spread`; NaN where not yet defined."""
        mean = z = half_life = NAN
        if not math.isfinite(spread):
            self.clear()
            return mean, z, half_life
        sp = self._spreads
        sp.update(spread, spread)
        if self._keep is not None:
            self._keep.append(spread)
        if math.isfinite(self._prev):
            self._ar.update(self._prev, spread - self._prev)
        self._prev = spread
        if sp.full:
            mean = sp.mean_x
            sd = sp.std_x
            z = (spread - mean) / sd if sd > 0 else NAN
            if self._ar.full:
                k = self._ar.beta
                half_life = -math.log(2) / k if k < 0 else NAN
        return mean, z, half_life
