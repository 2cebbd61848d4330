"""Incremental analytics against statsmodels OLS and pandas rolling.

Tolerance: relative error at most 1e-9 at every bar; values that cross zero (spread, z)
get an absolute floor of 1e-9 times the series' typical size, since a relative error of a
number near zero is meaningless.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from quanttui.analytics.engine import PairAnalytics
from quanttui.analytics.rolling import RollingCov

RTOL = 1e-9


def close(actual: np.ndarray, ref: np.ndarray, floor: float | np.ndarray = 0.0) -> None:
    atol = RTOL * np.nan_to_num(np.asarray(floor, float))
    ok = np.isclose(actual, ref, rtol=RTOL, atol=atol, equal_nan=True)
    bad = np.flatnonzero(~ok)
    assert bad.size == 0, f"mismatch at {bad[:5]}: got {actual[bad[:5]]}, want {ref[bad[:5]]}"


def make_pair(
    seed: int, n: int, level: float, beta: float, coint: bool
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = level * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    if coint:
        noise = np.zeros(n)
        for i in range(1, n):
            noise[i] = 0.9 * noise[i - 1] + rng.normal(0, level * 1e-4)
        y = 0.5 * level + beta * x + noise
    else:
        y = level * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    return x, y


def engine_frame(x: np.ndarray, y: np.ndarray, w: int, hedge: str = "ols") -> dict[str, np.ndarray]:
    eng = PairAnalytics(w, hedge, history=len(x))
    for i, (a, b) in enumerate(zip(x, y, strict=True)):
        eng.update(i, float(a), float(b))
    fields = ("beta", "alpha", "r2", "beta_se", "spread", "zscore", "corr", "return_beta")
    return {f: np.array([getattr(m, f) for m in eng.history]) for f in fields}


def statsmodels_reference(x: np.ndarray, y: np.ndarray, w: int) -> dict[str, np.ndarray]:
    n = len(x)
    beta = np.full(n, np.nan)
    alpha = np.full(n, np.nan)
    r2 = np.full(n, np.nan)
    se = np.full(n, np.nan)
    spread = np.full(n, np.nan)
    for t in range(w - 1, n):
        xs, ys = x[t - w + 1 : t + 1], y[t - w + 1 : t + 1]
        res = sm.OLS(ys, sm.add_constant(xs, has_constant="add")).fit()
        alpha[t], beta[t] = res.params
        r2[t], se[t] = res.rsquared, res.bse[1]
        # y_t - a - b*x_t in centred form: statsmodels' own resid loses ~1e-12 absolute to
        # the conditioning of [1, x] when x ~ 1e5, which is coarser than the tolerance.
        spread[t] = (y[t] - ys.mean()) - beta[t] * (x[t] - xs.mean())
    s = pd.Series(spread)
    z = (s - s.rolling(w).mean()) / s.rolling(w).std(ddof=1)
    rx = pd.Series(np.log(x)).diff()
    ry = pd.Series(np.log(y)).diff()
    corr = rx.rolling(w).corr(ry)
    return {
        "beta": beta,
        "alpha": alpha,
        "r2": r2,
        "beta_se": se,
        "spread": spread,
        "zscore": z.to_numpy(),
        "corr": corr.to_numpy(),
    }


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(40, 160),
    w=st.integers(5, 35),
    level=st.sampled_from([1.0, 1e5]),
    beta=st.floats(0.1, 3.0),
    coint=st.booleans(),
)
def test_engine_matches_statsmodels_and_pandas(seed, n, w, level, beta, coint) -> None:
    x, y = make_pair(seed, n, level, beta, coint)
    got = engine_frame(x, y, w)
    ref = statsmodels_reference(x, y, w)
    # beta = Cxy/Cxx carries an absolute error of order eps*sqrt(Cyy/Cxx) in any algorithm,
    # so a beta near zero is judged on that scale.
    beta_scale = (pd.Series(y).rolling(w).std() / pd.Series(x).rolling(w).std()).to_numpy()
    close(got["beta"], ref["beta"], floor=beta_scale)
    close(got["r2"], ref["r2"], floor=1.0)  # statsmodels forms 1 - ssr/tss: absolute precision only
    np.testing.assert_allclose(got["beta_se"], ref["beta_se"], rtol=1e-7, equal_nan=True)
    spread_scale = float(np.nanstd(ref["spread"]))
    close(got["spread"], ref["spread"], floor=spread_scale)
    close(got["zscore"], ref["zscore"], floor=1.0)
    close(got["corr"], ref["corr"], floor=1.0)
    assert np.isnan(got["beta"][: w - 1]).all() and np.isfinite(got["beta"][w - 1 :]).all()
    assert np.isfinite(got["zscore"][2 * w - 2 :]).all()


def exact_window_ols(x: np.ndarray, y: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-pass centred OLS over every window: the numerically careful reference."""
    xw = sliding_window_view(x, w)
    yw = sliding_window_view(y, w)
    dx = xw - xw.mean(axis=1, keepdims=True)
    dy = yw - yw.mean(axis=1, keepdims=True)
    beta = (dx * dy).sum(axis=1) / (dx * dx).sum(axis=1)
    spread = (y[w - 1 :] - yw.mean(axis=1)) - beta * (x[w - 1 :] - xw.mean(axis=1))
    return beta, spread


@pytest.mark.parametrize("level", [1e5, 1.0])
def test_precision_after_100k_updates(level: float) -> None:
    n, w = 100_000, 50
    x, y = make_pair(7, n, level, 1.7, coint=True)
    got = engine_frame(x, y, w)
    beta_ref, spread_ref = exact_window_ols(x, y, w)
    close(got["beta"][w - 1 :], beta_ref)
    close(got["spread"][w - 1 :], spread_ref, floor=float(np.std(spread_ref)))
    s = pd.Series(got["spread"])
    close(got["zscore"], ((s - s.rolling(w).mean()) / s.rolling(w).std()).to_numpy(), floor=1.0)
    rx, ry = pd.Series(np.log(x)).diff(), pd.Series(np.log(y)).diff()
    close(got["corr"], rx.rolling(w).corr(ry).to_numpy(), floor=1.0)
    for t in np.random.default_rng(1).integers(w - 1, n, 20):
        res = sm.OLS(y[t - w + 1 : t + 1], sm.add_constant(x[t - w + 1 : t + 1])).fit()
        assert math.isclose(got["beta"][t], res.params[1], rel_tol=RTOL)


def test_known_beta_is_recovered() -> None:
    x, y = make_pair(3, 5000, 100.0, 2.5, coint=True)
    got = engine_frame(x, y, 500)
    assert abs(got["beta"][-1] - 2.5) < 0.02
    assert got["r2"][-1] > 0.99


def test_log_hedge_uses_log_prices() -> None:
    x, y = make_pair(5, 300, 1e4, 0.8, coint=False)
    got = engine_frame(x, y, 60, hedge="log")
    res = sm.OLS(np.log(y[-60:]), sm.add_constant(np.log(x[-60:]))).fit()
    assert math.isclose(got["beta"][-1], res.params[1], rel_tol=RTOL)
    assert math.isclose(got["spread"][-1], res.resid[-1], rel_tol=1e-7)


def test_half_life_matches_ar1_regression() -> None:
    rng = np.random.default_rng(11)
    n, w = 400, 120
    x = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    s = np.zeros(n)
    for i in range(1, n):
        s[i] = 0.8 * s[i - 1] + rng.normal(0, 0.05)
    y = 5 + 1.2 * x + s
    eng = PairAnalytics(w)
    for i in range(n):
        eng.update(i, float(x[i]), float(y[i]))
    spreads = np.array(eng.window_spread)
    res = sm.OLS(np.diff(spreads), sm.add_constant(spreads[:-1])).fit()
    k = res.params[1]
    assert k < 0
    assert math.isclose(eng.last.half_life_bars, -math.log(2) / k, rel_tol=1e-9)


def test_rolling_cov_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        RollingCov(1)
    rc = RollingCov(3)
    with pytest.raises(ValueError):
        rc.update(float("nan"), 1.0)
    eng = PairAnalytics(10)
    with pytest.raises(ValueError):
        eng.update(0, 0.0, 1.0)
    with pytest.raises(ValueError):
        PairAnalytics(10, "ridge")
