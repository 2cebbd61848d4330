"""Kalman-filter hedge ratio: a dynamic (alpha, beta) that follows a random walk.

Unlike rolling OLS it needs no window and adapts bar by bar, at the price of two tuning
constants. The filter is the textbook linear-Gaussian one of E. Chan, *Algorithmic
Trading* (2013), ch. 3 (Example 3.3), written out for the 2-state case so one update is a
few dozen float operations with no numpy overhead.

The spread it reports is Chan's *measurement prediction error*: the one-step-ahead
forecast error of ``y_t`` from the state estimated on bars before t. The residual after
bar t's own update is close to zero by construction (the filter has just fitted that
bar), so it carries no signal and is not reported.

The filter runs on prices divided by the first closes, ``x_t / x_1`` and ``y_t / y_1``,
so its two constants mean the same for a pair priced near 1e5 as for one priced near 1:
in raw units the state noise of beta would have to shrink with ``x^2``, and one default
could not fit both. Everything reported (alpha, beta, spread, forecast variance) is
converted back to price units.
"""

from __future__ import annotations

import math


class KalmanHedge:
    r"""Online estimate of ``y_t = alpha_t + beta_t * x_t + v_t``.

    With ``u_t = x_t / x_1`` and ``w_t = y_t / y_1`` (``x_1``, ``y_1`` the first
    observation), the filtered model is ``w_t = F_t theta_t + eps_t``, ``F_t = (u_t, 1)``,
    ``theta_t = (beta'_t, alpha'_t)``. The state follows a random walk
    ``theta_t = theta_{t-1} + eta_t``, ``eta_t ~ N(0, V_w)``, ``V_w = q I`` with
    ``q = delta / (1 - delta)``; the observation noise is ``eps_t ~ N(0, V_e)``,
    ``V_e = obs_var``. The first bar seeds
    ``theta = (1, 0)`` and ``P = 0``. Then, per bar (Chan 2013, ch. 3, Example 3.3):

    * state prediction: ``theta_{t|t-1} = theta_{t-1|t-1}``, ``P_{t|t-1} = P_{t-1|t-1} + V_w``
    * measurement prediction: ``w^_t = F_t theta_{t|t-1}``
    * forecast error: ``e_t = w_t - w^_t``; forecast variance ``Q_t = F_t P_{t|t-1} F_t' + V_e``
    * gain ``K_t = P_{t|t-1} F_t' / Q_t``; update ``theta_{t|t} = theta_{t|t-1} + K_t e_t``,
      ``P_{t|t} = P_{t|t-1} - K_t F_t P_{t|t-1}``

    In price units ``beta = beta' y_1 / x_1``, ``alpha = alpha' y_1``, and the reported
    forecast error and variance are ``y_1 e_t`` and ``y_1^2 Q_t``, so that
    ``y_t - (alpha_{t|t-1} + beta_{t|t-1} x_t) = y_1 e_t``. The whole filter is Chan's
    in price units with ``V_w = q diag((y_1/x_1)^2, y_1^2)`` and ``V_e = obs_var y_1^2``.

    Parameters
    ----------
    delta : float
        State noise scale, ``0 < delta < 1``, relative to the first closes. Larger adapts
        faster and is noisier.
    obs_var : float
        Observation variance ``V_e > 0`` of ``y_t / y_1`` (a relative noise of 0.3% is about 1e-5).

    References
    ----------
    E. P. Chan, *Algorithmic Trading: Winning Strategies and Their Rationale*, Wiley
    (2013), ch. 3, "Kalman Filter as Dynamic Linear Regression".
    """

    __slots__ = ("delta", "obs_var", "_q", "_b", "_a", "_p00", "_p01", "_p11", "_sx", "_sy", "n")

    def __init__(self, delta: float = 1e-8, obs_var: float = 1e-5) -> None:
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if not obs_var > 0:
            raise ValueError(f"obs_var must be > 0, got {obs_var}")
        self.delta = delta
        self.obs_var = obs_var
        self._q = delta / (1 - delta)
        self._b = 1.0
        self._a = 0.0
        self._p00 = self._p01 = self._p11 = 0.0
        self._sx = self._sy = 1.0
        self.n = 0

    def update(self, x: float, y: float) -> tuple[float, float]:
        """Take bar t's observation; return ``(e_t, Q_t)`` in price units, the forecast
        error and its variance from the state before this update (`nan` for the first
        bar, which only seeds the state)."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"non-finite observation ({x!r}, {y!r})")
        if self.n == 0:
            if x == 0 or y == 0:
                raise ValueError(f"the first observation must be non-zero, got ({x!r}, {y!r})")
            self._sx, self._sy = x, y
        self.n += 1
        u, w = x / self._sx, y / self._sy
        p00 = self._p00 + self._q
        p01 = self._p01
        p11 = self._p11 + self._q
        e = w - (self._b * u + self._a)
        pf0 = p00 * u + p01
        pf1 = p01 * u + p11
        s = u * pf0 + pf1 + self.obs_var
        k0, k1 = pf0 / s, pf1 / s
        self._b += k0 * e
        self._a += k1 * e
        self._p00 = p00 - k0 * pf0
        self._p01 = p01 - k0 * pf1
        self._p11 = p11 - k1 * pf1
        if self.n == 1:
            return math.nan, math.nan
        return e * self._sy, s * self._sy * self._sy

    @property
    def beta(self) -> float:
        """beta_{t|t}, after the last update, in price units."""
        return self._b * self._sy / self._sx

    @property
    def alpha(self) -> float:
        """alpha_{t|t}, after the last update, in price units."""
        return self._a * self._sy

    @property
    def beta_se(self) -> float:
        """Posterior standard deviation of beta, ``sqrt(P_{t|t}[0, 0])`` in price units."""
        return math.sqrt(max(self._p00, 0.0)) * abs(self._sy / self._sx)
