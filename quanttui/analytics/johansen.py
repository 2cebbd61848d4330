"""Johansen cointegration test of a basket of legs, batch and rolling (issue 32).

The test reproduces ``statsmodels.tsa.vector_ar.vecm.coint_johansen(endog, det_order,
k_ar_diff)`` (Johansen 1991; Lütkepohl 2005, sec. 8.2) from moment matrices, so a rolling
window can be updated in O(p^2) per bar instead of refitting.

Definitions. Window of ``n`` levels ``y_0..y_{n-1}`` (m legs), ``k = k_ar_diff``. Rows
``t = k+1..n-1`` (``T = n-1-k`` of them) carry

* ``d_t = dy_t = y_t - y_{t-1}`` (m),
* ``l_t = y_{t-k}`` (m; statsmodels' ``lx``, the level lagged k bars),
* ``z_t = (dy_{t-1}, ..., dy_{t-k})`` (mk).

Deterministic terms, as statsmodels applies them:

* ``det_order = -1``: nothing is removed; moments are raw cross-products.
* ``det_order = 0``: statsmodels demeans the levels over the window, then demeans
  ``d``, ``l`` and ``z`` again over the T rows. The first step cancels in the second, so
  the moments are the centred cross-products over the T rows.
* ``det_order = 1``: statsmodels removes an OLS line ``a + b*tau`` from the levels over the
  whole window (n rows), then demeans d, l, z over the T rows. In ``d`` and ``z`` the slope
  is a constant and cancels; in ``l`` it leaves ``l_t - b*tau_t`` with
  ``b = sum_j (tau_j - taubar)(y_j - ybar) / sum_j (tau_j - taubar)^2`` over the n window
  levels. With ``tau_t`` (the bar index) appended to each row, the centred moments of
  ``(d, l - b tau, z)`` are ``P G P'`` with ``G`` the centred moments of ``(d, l, z, tau)``
  and ``P`` the linear map; ``b`` needs the window sums ``sum y_j`` and ``sum tau_j y_j``.

Residual moments (partialling out z, a Schur complement):
``S_ij = (G_ij - G_iz G_zz^{-1} G_zj) / T`` for i, j in {0 (d), k (l)}.
Eigenproblem: ``|lambda S_kk - S_k0 S_00^{-1} S_0k| = 0``, eigenvalues
``1 > lambda_1 >= ... >= lambda_m``, eigenvectors ``v`` normalised ``v' S_kk v = 1``.
Statistics: trace ``LR_tr(r) = -T sum_{i>r} ln(1 - lambda_i)``, max-eigen
``LR_max(r) = -T ln(1 - lambda_{r+1})``. H0 of row r: cointegration rank <= r (trace) or
== r (max-eigen). Critical values: statsmodels' ``c_sjt`` / ``c_sja`` (Osterwald-Lenum /
MacKinnon-Haug-Michelis tables) for 90/95/99 %.

Numerics. Levels are shifted by a reference vector (for det_order 0/1, where the shift
cancels) and tau by a reference bar, both reset at each exact recompute, which happens every
``window`` bars from the ring buffer; that bounds add-and-remove rounding. For
``det_order = -1`` the shift does not cancel, so levels are not shifted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .rolling import RollingCov

__all__ = [
    "JohansenResult",
    "RollingJohansen",
    "basket_spread",
    "check_params",
    "johansen",
    "spread_stats",
]


@dataclass(frozen=True, slots=True)
class JohansenResult:
    """One Johansen test.

    Attributes
    ----------
    trace, max_eig : ndarray (m,)
        ``lr1`` and ``lr2`` of statsmodels; row r tests H0 rank <= r (trace) / == r.
    trace_cv, max_cv : ndarray (m, 3)
        Critical values at 90, 95, 99 % (``cvt``, ``cvm``).
    eig : ndarray (m,)
        Eigenvalues, descending.
    evec : ndarray (m, m)
        Eigenvectors in columns, ``evec' S_kk evec = I`` (sign arbitrary per column).
    weights : ndarray (m,)
        First eigenvector scaled so leg 0 has weight 1 (the basket spread is
        ``weights @ y``).
    rank : int
        Sequential trace test at 95 %: the first r whose trace stat is below its critical
        value (m if all reject).
    nobs : int
        T, rows in the regression.
    """

    trace: np.ndarray
    max_eig: np.ndarray
    trace_cv: np.ndarray
    max_cv: np.ndarray
    eig: np.ndarray
    evec: np.ndarray
    weights: np.ndarray
    rank: int
    nobs: int


_CV_CACHE: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _crit(m: int, det_order: int) -> tuple[np.ndarray, np.ndarray]:
    key = (m, det_order)
    if key not in _CV_CACHE:
        from statsmodels.tsa.coint_tables import c_sja, c_sjt

        cvt = np.array([c_sjt(m - i, det_order) for i in range(m)], float)
        cvm = np.array([c_sja(m - i, det_order) for i in range(m)], float)
        _CV_CACHE[key] = (cvt, cvm)
    return _CV_CACHE[key]


def check_params(n_legs: int, window: int, det_order: int, k_ar_diff: int) -> None:
    """Raise `ValueError` unless the test is defined: 2..12 legs, det_order in {-1, 0, 1},
    k_ar_diff >= 0 and a window of at least ``m (k + 2) + k + 4`` bars."""
    if isinstance(n_legs, bool) or not isinstance(n_legs, int) or not 2 <= n_legs <= 12:
        raise ValueError(f"n_legs must be an int in 2..12 (critical-value tables), got {n_legs!r}")
    if det_order not in (-1, 0, 1) or isinstance(det_order, bool):
        raise ValueError(f"det_order must be -1, 0 or 1, got {det_order!r}")
    if isinstance(k_ar_diff, bool) or not isinstance(k_ar_diff, int) or k_ar_diff < 0:
        raise ValueError(f"k_ar_diff must be an int >= 0, got {k_ar_diff!r}")
    need = n_legs * (k_ar_diff + 2) + k_ar_diff + 4
    if isinstance(window, bool) or not isinstance(window, int) or window < need:
        raise ValueError(
            f"window must be an int >= {need} for {n_legs} legs and k_ar_diff={k_ar_diff}, "
            f"got {window!r}"
        )


def _rows(levels: np.ndarray, k: int, tau0: float, with_tau: bool) -> np.ndarray:
    """Regression rows ``(d_t, l_t, z_t[, tau_t])`` for t = k+1..n-1 of a level block."""
    n, m = levels.shape
    dy = np.diff(levels, axis=0)  # dy[i] = y_{i+1} - y_i
    t = np.arange(k + 1, n)
    cols = [dy[t - 1], levels[t - k]]
    cols += [dy[t - 1 - j] for j in range(1, k + 1)]
    if with_tau:
        cols.append((t - tau0)[:, None].astype(float))
    return np.hstack(cols)


def _solve(
    sx: np.ndarray,
    sxx: np.ndarray,
    sly: np.ndarray,
    stly: np.ndarray,
    n: int,
    m: int,
    k: int,
    det_order: int,
    tau0: float,
    start: int,
) -> JohansenResult:
    """Result from the moment sums of the rows (``sx``, ``sxx``) and, for det_order 1, the
    window level sums ``sum y_j`` (``sly``) and ``sum (j - tau0) y_j`` (``stly``); window
    bars are ``start..start+n-1``; shifted levels are used throughout."""
    T = n - 1 - k
    if det_order == -1:
        g = sxx
    else:
        g = sxx - np.outer(sx, sx) / T
    if det_order == 1:
        # full-window OLS slope of each (shifted) level on tau
        taus = np.arange(start, start + n) - tau0
        tbar = taus.mean()
        ctt = float(((taus - tbar) ** 2).sum())
        b = (stly - tbar * sly) / ctt
        p = g.shape[0]
        P = np.eye(p)[:-1]
        P[m : 2 * m, -1] = -b
        g = P @ g @ P.T
    q = 2 * m
    a = g[:q, :q]
    if k:
        gz = g[q:, q:]
        gc = g[:q, q:]
        try:
            a = a - gc @ np.linalg.solve(gz, gc.T)
        except np.linalg.LinAlgError:
            a = a - gc @ np.linalg.pinv(gz) @ gc.T
    s = a / T
    s00, s0k, skk = s[:m, :m], s[:m, m:], s[m:, m:]
    sig = s0k.T @ np.linalg.solve(s00, s0k)
    L = np.linalg.cholesky(skk)
    li = np.linalg.inv(L)
    c = li @ sig @ li.T
    lam, v = np.linalg.eigh((c + c.T) / 2)
    order = np.argsort(lam)[::-1]
    lam = lam[order]
    evec = li.T @ v[:, order]
    if evec[0, 0] != 0:
        evec = evec * np.sign(evec[0, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        lg = np.log1p(-lam)  # NaN/inf when lambda >= 1: a degenerate window
    trace = -T * np.cumsum(lg[::-1])[::-1]
    max_eig = -T * lg
    cvt, cvm = _crit(m, det_order)
    rank = m
    for r in range(m):
        if trace[r] < cvt[r, 1]:
            rank = r
            break
    w0 = evec[0, 0]
    weights = evec[:, 0] / w0 if w0 != 0 else np.full(m, math.nan)
    return JohansenResult(
        trace=trace,
        max_eig=max_eig,
        trace_cv=cvt,
        max_cv=cvm,
        eig=lam,
        evec=evec,
        weights=weights,
        rank=rank,
        nobs=T,
    )


def _as_levels(prices: object, log: bool) -> np.ndarray:
    arr = np.asarray(prices, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"prices must be a 2-D array (bars x legs), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("prices contain NaN or inf")
    if log:
        if np.any(arr <= 0):
            raise ValueError("log prices need prices > 0")
        arr = np.log(arr)
    return arr


def _moments(
    levels: np.ndarray, k: int, det_order: int, start: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Exact sums over a full window (the recompute path)."""
    n, _ = levels.shape
    shift = levels.mean(axis=0) if det_order >= 0 else np.zeros(levels.shape[1])
    tau0 = float(start + n // 2)
    lv = levels - shift
    x = _rows(lv, k, tau0 - start, det_order == 1)
    sx = x.sum(axis=0)
    sxx = x.T @ x
    taus = np.arange(start, start + n) - tau0
    sly = lv.sum(axis=0)
    stly = taus @ lv
    return sx, sxx, sly, stly, shift, tau0


def johansen(
    prices: Sequence[Sequence[float]] | np.ndarray,
    det_order: int = 0,
    k_ar_diff: int = 1,
    *,
    log: bool = False,
) -> JohansenResult:
    """Johansen cointegration test of one window of basket prices.

    Equals ``coint_johansen(prices, det_order, k_ar_diff)`` of statsmodels (``log=False``)
    or of ``np.log(prices)`` (``log=True``). See the module docstring for the equations.

    H0 of row r: the cointegration rank is at most r (trace) / exactly r (max-eigen).

    Parameters
    ----------
    prices : array_like (n, m)
        Bars x legs, oldest first.
    det_order : {-1, 0, 1}
        No deterministic term, constant, linear trend (statsmodels' meaning).
    k_ar_diff : int
        Number of lagged differences.
    log : bool
        Test log prices (like the pairs' ``log`` hedge mode) instead of raw prices.

    Raises
    ------
    ValueError
        Bad shape, non-finite or (with ``log``) non-positive prices, bad parameters.

    References
    ----------
    Johansen, S. (1991), Econometrica 59(6), 1551-1580; statsmodels ``coint_johansen``.
    """
    lv = _as_levels(prices, log)
    n, m = lv.shape
    check_params(m, n, det_order, k_ar_diff)
    sx, sxx, sly, stly, _shift, tau0 = _moments(lv, k_ar_diff, det_order, 0)
    return _solve(sx, sxx, sly, stly, n, m, k_ar_diff, det_order, tau0, 0)


class RollingJohansen:
    """Johansen test over the last ``window`` bars, updated per bar from moment sums.

    Per bar: add the new regression row's outer product and subtract the one leaving the
    window (O(p^2), ``p = m (k + 2) + 1``), then solve the m x m eigenproblem. Every
    ``window`` bars the sums are recomputed exactly from the ring buffer with a fresh shift
    (:func:`johansen`'s path), which keeps agreement with statsmodels to ~1e-10.

    Parameters
    ----------
    n_legs : int
        Legs in the basket, 2..12.
    window : int
        Bars per test (n), at least ``m (k + 2) + k + 4``.
    det_order, k_ar_diff, log
        As in :func:`johansen`.
    """

    __slots__ = ("n_legs", "window", "det_order", "k_ar_diff", "log", "_buf", "_count")
    __slots__ += ("_sx", "_sxx", "_sly", "_stly", "_shift", "_tau0", "_since")

    def __init__(
        self, n_legs: int, window: int, det_order: int = 0, k_ar_diff: int = 1, *, log: bool = False
    ) -> None:
        check_params(n_legs, window, det_order, k_ar_diff)
        self.n_legs = n_legs
        self.window = window
        self.det_order = det_order
        self.k_ar_diff = k_ar_diff
        self.log = bool(log)
        self._buf = np.zeros((window, n_legs))  # ring of levels, indexed by bar % window
        self._count = 0
        self._since = 0

    @property
    def full(self) -> bool:
        return self._count >= self.window

    def levels(self) -> np.ndarray:
        """The window's levels (log prices if ``log``), oldest first."""
        n = min(self._count, self.window)
        idx = np.arange(self._count - n, self._count) % self.window
        return self._buf[idx]

    def _row(self, t: int) -> np.ndarray:
        """Row for bar t from the ring (bars t-k-1..t must be in it), shifted."""
        k, w, sh = self.k_ar_diff, self.window, self._shift
        b = self._buf
        dy = [b[(t - j) % w] - b[(t - j - 1) % w] for j in range(k + 1)]
        parts = [dy[0], b[(t - k) % w] - sh, *dy[1:]]
        if self.det_order == 1:
            parts.append(np.array([t - self._tau0]))
        return np.concatenate(parts)

    def update(self, prices_row: Sequence[float] | np.ndarray) -> JohansenResult | None:
        """Add one bar (one price per leg); the test on the last ``window`` bars, or None
        until the window is full.

        Raises ValueError on a wrong length, non-finite or (with ``log``) non-positive
        price; the state is unchanged then."""
        row = np.asarray(prices_row, dtype=float)
        if row.shape != (self.n_legs,):
            raise ValueError(f"expected {self.n_legs} prices, got shape {row.shape}")
        if not np.all(np.isfinite(row)):
            raise ValueError("prices contain NaN or inf")
        if self.log:
            if np.any(row <= 0):
                raise ValueError("log prices need prices > 0")
            row = np.log(row)
        w, k, t = self.window, self.k_ar_diff, self._count
        if t < w:
            self._buf[t] = row
            self._count = t + 1
            if self._count == w:
                self._recompute()
                return self._result()
            return None
        # bar t enters, bar t-w leaves; the leaving row is bar t-w+k+1 (oldest row)
        old = self._row(t - w + k + 1)
        old_y = self._buf[t % w] - self._shift
        self._buf[t % w] = row
        self._count = t + 1
        self._since += 1
        if self._since >= w:
            self._recompute()
            return self._result()
        new = self._row(t)
        self._sx += new - old
        self._sxx += np.outer(new, new) - np.outer(old, old)
        new_y = row - self._shift
        self._sly += new_y - old_y
        self._stly += (t - self._tau0) * new_y - (t - w - self._tau0) * old_y
        return self._result()

    def _recompute(self) -> None:
        start = self._count - self.window
        sx, sxx, sly, stly, shift, tau0 = _moments(
            self.levels(), self.k_ar_diff, self.det_order, start
        )
        self._sx, self._sxx, self._sly, self._stly = sx, sxx, sly, stly
        self._shift, self._tau0 = shift, tau0
        self._since = 0

    def _result(self) -> JohansenResult:
        start = self._count - self.window
        return _solve(
            self._sx,
            self._sxx,
            self._sly,
            self._stly,
            self.window,
            self.n_legs,
            self.k_ar_diff,
            self.det_order,
            self._tau0,
            start,
        )


def basket_spread(
    prices: Sequence[Sequence[float]] | np.ndarray,
    weights: Sequence[float] | np.ndarray,
    *,
    log: bool = False,
) -> np.ndarray:
    """Basket spread ``s_t = sum_i w_i y_{t,i}`` (y = log prices if ``log``).

    ``prices`` is bars x legs (or one row); raises ValueError on mismatched shapes or bad
    prices."""
    arr = np.asarray(prices, dtype=float)
    one = arr.ndim == 1
    lv = _as_levels(arr[None, :] if one else arr, log)
    w = np.asarray(weights, dtype=float)
    if w.shape != (lv.shape[1],) or not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be {lv.shape[1]} finite numbers, got shape {w.shape}")
    s = lv @ w
    return s[0] if one else s


def spread_stats(spread: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """``(z, half_life_bars)`` of the last value of a spread window.

    Same definitions as the pair engine, through the same accumulator
    (:class:`~quanttui.analytics.rolling.RollingCov`): ``z = (s_t - mean) / std``
    (ddof 1) over the window; half-life ``-ln 2 / k`` from the OLS ``ds_t = c + k s_{t-1}``
    over the window (NaN unless ``k < 0``)."""
    s = np.asarray(spread, dtype=float)
    if s.ndim != 1 or len(s) < 3 or not np.all(np.isfinite(s)):
        raise ValueError("spread must be a 1-D finite window of >= 3 values")
    n = len(s)
    level = RollingCov(n)
    ar = RollingCov(n - 1)
    for v in s:
        level.update(float(v), float(v))
    for a, b in zip(s[:-1], s[1:], strict=True):
        ar.update(float(a), float(b - a))
    sd = level.std_x
    z = (float(s[-1]) - level.mean_x) / sd if sd > 0 else math.nan
    kk = ar.beta
    hl = -math.log(2) / kk if kk < 0 else math.nan
    return z, hl
