"""The QR path of the ADF and Engle-Granger tests against statsmodels itself.

`adf` and `coint_p` compute the lag search from one QR factorisation instead of
statsmodels' one OLS fit per lag count (about 15x faster), and hand back to statsmodels
only where it alone can promise its answer. Tolerances: the statistic within 1e-8
relative, p-values within 1e-9 absolute, the lag count and the critical values equal.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quanttui.analytics.stationarity import _adf_tau, adf, coint_p, stationarity
from tests.conftest import need

STAT_REL = 1e-8
P_ABS = 1e-9


def sm_adf(x: np.ndarray) -> tuple:
    from statsmodels.tsa.stattools import adfuller

    return adfuller(x, regression="c", autolag="AIC", result_object=False)


def sm_coint_p(y: np.ndarray, x: np.ndarray) -> float:
    from statsmodels.tsa.stattools import coint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(coint(y, x, trend="c", autolag="aic")[1])


def assert_adf_matches(x: np.ndarray) -> None:
    stat, p, lag, crit = adf(x)
    ref = sm_adf(x)
    assert lag == ref[2]
    assert math.isclose(stat, ref[0], rel_tol=STAT_REL), (stat, ref[0])
    assert abs(p - ref[1]) <= P_ABS, (p, ref[1])
    assert crit == ref[4]


def series(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    e = rng.normal(size=n)
    if kind == 0:
        return np.cumsum(e)
    if kind == 1:
        s = np.zeros(n)
        for i in range(1, n):
            s[i] = 0.9 * s[i - 1] + e[i]
        return s
    if kind == 2:
        return 5.2 + 1e-4 * np.cumsum(e)
    return 100 + 0.01 * np.cumsum(e) + 0.05 * np.sin(np.arange(n) / 7)


@pytest.mark.parametrize("n", [12, 13, 20, 31, 50, 120, 300, 1000])
def test_adf_matches_statsmodels_on_seeded_series(n: int) -> None:
    rng = np.random.default_rng(n)
    for kind in range(4):
        for _ in range(6):
            x = series(rng, n, kind)
            assert _adf_tau(x, trend=True) is not None, "the fast path must be taken"
            assert_adf_matches(x)


@pytest.mark.parametrize("n", [12, 30, 300, 1000])
def test_coint_matches_statsmodels_on_seeded_pairs(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    for k in range(12):
        x = 50 + np.cumsum(rng.normal(size=n))
        noise = rng.normal(size=n)
        y = 3 + 2 * x + (np.cumsum(noise) * 0.3 if k % 2 else noise)
        assert abs(coint_p(y, x) - sm_coint_p(y, x)) <= P_ABS


def test_real_one_minute_spreads_match_statsmodels(real_data: Path) -> None:
    """AVAX/NEAR 1m closes (Feb 2024): windows of 300 log closes every 2,000 bars."""
    a = pd.read_csv(need(real_data / "AVAXUSDT-1m-2024-02.csv"))["close"].to_numpy(float)
    b = pd.read_csv(need(real_data / "NEARUSDT-1m-2024-02.csv"))["close"].to_numpy(float)
    lx, ly = np.log(a), np.log(b)
    checked = 0
    for end in range(300, min(len(lx), len(ly)), 2000):
        x, y = lx[end - 300 : end], ly[end - 300 : end]
        beta, alpha = np.polyfit(x, y, 1)
        assert_adf_matches(y - alpha - beta * x)
        assert abs(coint_p(y, x) - sm_coint_p(y, x)) <= P_ABS
        checked += 1
    assert checked >= 20


def test_degenerate_inputs_get_statsmodels_own_answer() -> None:
    rng = np.random.default_rng(7)
    # lags that are exact copies of each other: a rank-deficient design
    period = np.tile([0.0, 1.0], 60)
    assert _adf_tau(period, trend=True) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sm_adf(period)
        assert adf(period)[:3] == (float(ref[0]), float(ref[1]), int(ref[2]))
    # perfectly collinear legs: statsmodels' -inf statistic and p = 0
    x = np.cumsum(rng.normal(size=200)) + 50
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert coint_p(2 * x + 1, x) == sm_coint_p(2 * x + 1, x) == 0.0
    # a constant spread: the same one-line error as statsmodels gives
    st = stationarity([1.0] * 50, list(x[:50]), list(x[:50] * 2))
    assert st.adf_p is None and "constant" in (st.error or "")
