"""ADF and Engle-Granger cointegration tests on the current window.

statsmodels is imported inside the functions: it costs about a second to import, and the
app must draw its first frame before that. Callers run these in a worker thread, at most
once per closed bar.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from quanttui.analytics.scan import SQRTEPS


@dataclass(frozen=True, slots=True)
class Stationarity:
    adf_stat: float | None = None
    adf_p: float | None = None
    adf_lag: int | None = None
    adf_crit: dict[str, float] | None = None
    coint_p: float | None = None
    error: str | None = None


def adf(spreads: Sequence[float]) -> tuple[float, float, int, dict[str, float]]:
    """Augmented Dickey-Fuller test of the spread window.

    Fits ``ds_t = c + gamma s_{t-1} + sum_i phi_i ds_{t-i} + e_t`` with the lag count chosen
    by AIC (statsmodels ``adfuller(x, regression='c', autolag='AIC')``, the same numbers:
    `_adf_tau` says how).

    H0: the spread has a unit root (``gamma = 0``), i.e. it does not mean-revert. A small
    p-value (< 0.05) rejects H0: the spread is stationary.

    Returns ``(statistic, p-value, lags used, critical values)``.

    References: Said & Dickey (1984); MacKinnon (1994, 2010) for the p-values.
    """
    from statsmodels.tsa.adfvalues import mackinnoncrit, mackinnonp

    x = np.asarray(spreads, float)
    fast = _adf_tau(x, trend=True)
    if fast is None:
        return _adf_statsmodels(x)
    stat, lag, nobs = fast
    crit = mackinnoncrit(N=1, regression="c", nobs=nobs)
    return (
        stat,
        float(mackinnonp(stat, regression="c", N=1)),
        lag,
        {"1%": float(crit[0]), "5%": float(crit[1]), "10%": float(crit[2])},
    )


def _adf_statsmodels(x: np.ndarray) -> tuple[float, float, int, dict[str, float]]:
    from statsmodels.tsa.stattools import adfuller

    kw = (
        {"result_object": False}
        if "result_object" in inspect.signature(adfuller).parameters
        else {}
    )
    res = adfuller(x, regression="c", autolag="AIC", **kw)
    stat, p, lag, _nobs, crit = res[:5]
    return float(stat), float(p), int(lag), {k: float(v) for k, v in crit.items()}


def coint_p(y: Sequence[float], x: Sequence[float]) -> float:
    """Engle-Granger two-step cointegration test of ``y`` on ``x`` (statsmodels ``coint``,
    constant term, lag by AIC; the same numbers). H0: no cointegration. Returns the
    MacKinnon p-value.

    Step 1 is the OLS ``y = a + b x + e``, solved by statsmodels' own pseudo-inverse: on
    price levels the residuals are small differences of large numbers, and any other
    solver changes them in the ninth digit. Step 2 the ADF regression of its residuals
    with no constant, lags by AIC, whose t-value takes the MacKinnon p-value for two
    series with a constant (``N = 2``)."""
    from statsmodels.tsa.adfvalues import mackinnonp

    yv, xv = np.asarray(y, float), np.asarray(x, float)
    if yv.shape == xv.shape and yv.ndim == 1 and yv.size > 2:
        from statsmodels.tools.tools import pinv_extended

        design = np.column_stack([xv, np.ones_like(xv)])
        resid = yv - design @ (pinv_extended(design)[0] @ yv)
        tss = float(((yv - yv.mean()) ** 2).sum())
        r2 = 1.0 - float(resid @ resid) / tss if tss > 0 else math.nan
        if r2 < 1 - 100 * SQRTEPS - COLLINEAR_MARGIN:
            fast = _adf_tau(resid, trend=False)
            if fast is not None:
                return float(mackinnonp(fast[0], regression="c", N=2))
    from statsmodels.tsa.stattools import coint

    return float(coint(yv, xv, trend="c", autolag="aic")[1])


COLLINEAR_MARGIN = 1e-9
"""How far inside statsmodels' collinearity cut-off (``R^2 >= 1 - 100 sqrt(eps)``) the
fast path stays; nearer it, statsmodels itself decides."""
MIN_SV_RATIO = 1e-9
"""The fast path's smallest singular value over its largest, well above the ratio
(``max(n, k) eps``) at which statsmodels would count a design as rank-deficient."""
AIC_TIE = 1e-8
"""Two lag counts whose AICs are this close (relatively) are left to statsmodels to
choose between, so rounding cannot pick a different lag than it would."""


def _adf_tau(x: np.ndarray, *, trend: bool) -> tuple[float, int, int] | None:
    """ADF t-statistic as statsmodels' ``adfuller(x, regression='c' or 'n',
    autolag='AIC')`` computes it, or None where only statsmodels can promise its own
    answer (a constant or too-short series, a nearly rank-deficient design, a near tie
    between two lag counts). Returns ``(tau, lags used, observations of the final fit)``.

    statsmodels fits every lag count ``L = 0 .. maxlag`` (``maxlag = min(n//2 - k - 1,
    ceil(12 (n/100)^(1/4)))``, k the number of trend terms) on the same rows, picks the
    smallest ``AIC = n' (log(2 pi) + log(RSS/n') + 1) + 2 p`` (p regressors, ties to the
    smaller L), then refits with the chosen L on all the rows it allows. Here one QR
    factorisation ``A = QR`` of ``A = [trend, s_{t-1}, ds_{t-1} .. ds_{t-maxlag}, ds_t]``
    gives every nested fit's RSS at once: regressing the last column on the first p
    columns leaves ``RSS_p = sum_{i >= p} R[i, -1]^2``. The refit's columns are ordered
    ``[trend, ds_{t-1} .. ds_{t-L}, s_{t-1}, ds_t]``, so the level's coefficient is the
    last one: ``tau = sign(R[-2, -2]) R[-2, -1] sqrt(n' - p) / |R[-1, -1]|``.
    """
    n = x.shape[0]
    k = 1 if trend else 0
    maxlag = min(n // 2 - k - 1, int(np.ceil(12.0 * np.power(n / 100.0, 1 / 4.0))))
    if maxlag < 0 or n < 4 or not np.isfinite(x).all() or x.max() == x.min():
        return None
    dx = np.diff(x)
    m = dx.shape[0] - maxlag
    if m < k + 2 + maxlag:
        return None
    cols = [np.ones(m)] * k + [x[maxlag : n - 1]]
    cols += [dx[maxlag - j : maxlag - j + m] for j in range(1, maxlag + 1)]
    r = _r_factor(np.column_stack([*cols, dx[maxlag:]]))
    if r is None:
        return None
    tail = np.cumsum((r[:-1, -1] ** 2)[::-1])[::-1]
    rss = r[-1, -1] ** 2 + np.concatenate([tail[k + 1 :], [0.0]])
    p = np.arange(k + 1, k + 2 + maxlag)
    if not (rss > 0).all():
        return None
    aic = m * (np.log(2 * np.pi) + np.log(rss / m) + 1) + 2 * p
    order = np.argsort(aic, kind="stable")
    if len(order) > 1:
        a, b = aic[order[0]], aic[order[1]]
        if abs(b - a) <= AIC_TIE * max(1.0, abs(a)):
            return None
    lag = int(order[0])
    m = dx.shape[0] - lag
    cols = [np.ones(m)] * k + [dx[lag - j : lag - j + m] for j in range(1, lag + 1)]
    r = _r_factor(np.column_stack([*cols, x[lag : n - 1], dx[lag:]]))
    if r is None or r[-1, -1] == 0:
        return None
    df = m - (k + lag + 1)
    if df <= 0:
        return None
    tau = math.copysign(1.0, r[-2, -2]) * r[-2, -1] * math.sqrt(df) / abs(r[-1, -1])
    return float(tau), lag, m


def _r_factor(a: np.ndarray) -> np.ndarray | None:
    """R of the QR factorisation of `a` (regressors then the target), or None when the
    regressors are too near rank-deficient for the fast path."""
    r = np.linalg.qr(a, mode="r")
    sv = np.linalg.svd(r[:-1, :-1], compute_uv=False)
    if not sv[-1] > sv[0] * MIN_SV_RATIO:
        return None
    return r


def stationarity(spreads: Sequence[float], x: Sequence[float], y: Sequence[float]) -> Stationarity:
    """Both tests, degrading to `None` with a reason when the window is too short or flat.

    statsmodels' warnings about such windows (a rank-deficient design, log of zero) are
    silenced: the outcome is reported in `error` or as a missing value, never on stderr,
    which headless mode keeps for status lines. The filter is process-wide and installed
    once (`warnings.catch_warnings` is not thread-safe, and the tests run in threads)."""
    if len(spreads) < 10 or len(x) < 10:
        return Stationarity(error="too few bars for ADF")
    _quiet_statsmodels()
    with np.errstate(all="ignore"):
        return _stationarity(spreads, x, y)


_quiet = False


def _quiet_statsmodels() -> None:
    """After importing statsmodels, whose `sm_exceptions` puts "always" filters for its
    own warnings at the front of the list when first imported."""
    global _quiet
    if _quiet:
        return
    import statsmodels.tools.sm_exceptions  # noqa: F401

    warnings.filterwarnings("ignore", module=r"statsmodels(\.|$)")
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"numpy(\.|$)")
    _quiet = True


def _stationarity(spreads: Sequence[float], x: Sequence[float], y: Sequence[float]) -> Stationarity:
    out: dict[str, object] = {}
    errors = []
    try:
        stat, p, lag, crit = adf(spreads)
        if math.isfinite(stat) and math.isfinite(p):
            out.update(adf_stat=stat, adf_p=p, adf_lag=lag, adf_crit=crit)
    except Exception as exc:  # noqa: BLE001 - statsmodels raises many types on degenerate input
        errors.append(f"adf: {exc}")
    try:
        p = coint_p(y, x)
        if math.isfinite(p):
            out["coint_p"] = p
    except Exception as exc:  # noqa: BLE001
        errors.append(f"coint: {exc}")
    return Stationarity(**out, error="; ".join(errors) or None)


def warm_up() -> None:
    """Import statsmodels ahead of need (from a worker thread)."""
    _quiet_statsmodels()
    import statsmodels.tsa.stattools  # noqa: F401
