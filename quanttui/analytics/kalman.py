"""Kalman-filter hedge ratio: a dynamic (alpha, beta) that follows a random walk.

Unlike rolling OLS it needs no window and adapts bar by bar, at the price of two tuning
constants. The update is the textbook linear-Gaussian filter, as in E. Chan, *Algorithmic
Trading* (2013), ch. 3, written out for the 2-state case so one update is a few dozen
float operations with no numpy overhead.
"""

from __future__ import annotations

import math


class KalmanHedge:
    r"""Online estimate of ``y_t = alpha_t + beta_t * x_t + v_t``.

    State ``theta_t = (beta_t, alpha_t)`` evolves as a random walk
    ``theta_t = theta_{t-1} + w_t`` with ``w_t ~ N(0, Q)``, ``Q = delta / (1 - delta) * I``;
    the observation noise is ``v_t ~ N(0, R)`` with ``R = obs_var``.

    Per observation, with ``F = (x_t, 1)``:

    * predict: ``P <- P + Q``
    * innovation: ``e = y_t - F theta``, ``S = F P F' + R``
    * gain: ``K = P F' / S``; update ``theta <- theta + K e``, ``P <- P - K F P``

    Parameters
    ----------
    delta : float
        State noise scale, ``0 < delta < 1``. Larger adapts faster and is noisier.
    obs_var : float
        Observation variance ``R > 0``, in squared units of y.
    """

    __slots__ = ("delta", "obs_var", "_q", "beta", "alpha", "_p00", "_p01", "_p11", "n")

    def __init__(self, delta: float = 1e-4, obs_var: float = 1e-3) -> None:
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if not obs_var > 0:
            raise ValueError(f"obs_var must be > 0, got {obs_var}")
        self.delta = delta
        self.obs_var = obs_var
        self._q = delta / (1 - delta)
        self.beta = 0.0
        self.alpha = 0.0
        self._p00 = self._p01 = self._p11 = 0.0
        self.n = 0

    def update(self, x: float, y: float) -> None:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"non-finite observation ({x!r}, {y!r})")
        if self.n == 0:
            self.beta = y / x if x != 0 else 0.0
            self.alpha = 0.0
        self.n += 1
        p00 = self._p00 + self._q
        p01 = self._p01
        p11 = self._p11 + self._q
        e = y - (self.beta * x + self.alpha)
        pf0 = p00 * x + p01
        pf1 = p01 * x + p11
        s = x * pf0 + pf1 + self.obs_var
        k0, k1 = pf0 / s, pf1 / s
        self.beta += k0 * e
        self.alpha += k1 * e
        self._p00 = p00 - k0 * pf0
        self._p01 = p01 - k0 * pf1
        self._p11 = p11 - k1 * pf1

    @property
    def beta_se(self) -> float:
        return math.sqrt(max(self._p00, 0.0))
