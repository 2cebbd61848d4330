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
    by AIC (statsmodels ``adfuller(x, regression='c', autolag='AIC')``).

    H0: the spread has a unit root (``gamma = 0``), i.e. it does not mean-revert. A small
    p-value (< 0.05) rejects H0: the spread is stationary.

    Returns ``(statistic, p-value, lags used, critical values)``.

    References: Said & Dickey (1984); MacKinnon (1994, 2010) for the p-values.
    """
    from statsmodels.tsa.stattools import adfuller

    kw = (
        {"result_object": False}
        if "result_object" in inspect.signature(adfuller).parameters
        else {}
    )
    res = adfuller(np.asarray(spreads, float), regression="c", autolag="AIC", **kw)
    stat, p, lag, _nobs, crit = res[:5]
    return float(stat), float(p), int(lag), {k: float(v) for k, v in crit.items()}


def coint_p(y: Sequence[float], x: Sequence[float]) -> float:
    """Engle-Granger two-step cointegration test of ``y`` on ``x`` (statsmodels ``coint``,
    constant term, lag by AIC). H0: no cointegration. Returns the MacKinnon p-value."""
    from statsmodels.tsa.stattools import coint

    return float(coint(np.asarray(y, float), np.asarray(x, float), trend="c", autolag="aic")[1])


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
