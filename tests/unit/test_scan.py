"""The vectorised pair scan against statsmodels and numpy, pair by pair.

The universe has 20 symbols on one grid of 1,440 one-minute bars:

* 10 real columns. The real kline files come in two groups with overlapping minutes:
  BTCUSDT/ETHUSDT (spot, 2025-01) and AVAXUSDT/FILUSDT/NEARUSDT (USD-M, 2024-02). Each
  group is aligned on its own minutes; two consecutive days of each group give 10
  columns, and the groups are put side by side by bar index (the statistics only see
  the arrays).
* 10 seeded synthetic columns: five cointegrated with a real column
  (``log y = c + b log x + AR(1) noise``), three random walks and two cointegrated with
  one of those.

Tolerances, from the issue: Engle-Granger t-statistic 1e-8 relative and p-value 1e-6
against ``coint(y, x, trend='c', maxlag=L, autolag=None)``; correlation 1e-12 against
``np.corrcoef``; hedge ratio 1e-12 against an exactly summed (``math.fsum``) centred
OLS; half-life, Hurst and crossings 1e-8 relative, z 1e-8 relative with an absolute
floor of 1e-8 (z crosses zero), against per-pair statsmodels/numpy references; q-values
1e-12 against ``multipletests(method='fdr_bh')``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests
from statsmodels.tsa.adfvalues import mackinnonp as sm_mackinnonp
from statsmodels.tsa.stattools import coint

from quanttui.analytics.funding import carry_matrix
from quanttui.analytics.scan import (
    SORT_KEYS,
    bh_qvalues,
    crossings_per_day,
    hurst_lags,
    mackinnonp,
    min_bars,
    rank_pairs,
    scan_pairs,
)
from tests.conftest import need, real_dir

T = 1440
MINUTE = 60_000


def _closes(path: Path, col: int = 4) -> np.ndarray:
    with path.open() as fh:
        rows = list(csv.reader(fh))[1:]
    return np.array([float(r[col]) for r in rows[: 2 * T]])


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    e = np.zeros(n)
    shocks = rng.normal(0, sd, n)
    for t in range(1, n):
        e[t] = phi * e[t - 1] + shocks[t]
    return e


def build_universe() -> tuple[np.ndarray, list[str]]:
    d = real_dir()
    files = {
        "BTC": need(d / "BTCUSDT_1m.csv"),
        "ETH": need(d / "ETHUSDT_1m.csv"),
        "AVAX": need(d / "AVAXUSDT-1m-2024-02.csv"),
        "FIL": need(d / "FILUSDT-1m-2024-02.csv"),
        "NEAR": need(d / "NEARUSDT-1m-2024-02.csv"),
    }
    cols, names = [], []
    for day in (0, 1):
        for name, path in files.items():
            c = _closes(path)
            cols.append(np.log(c[day * T : (day + 1) * T]))
            names.append(f"{name}{day}")
    rng = np.random.default_rng(20240201)
    for k in range(5):
        base = cols[k]
        b = rng.uniform(0.5, 2.0)
        cols.append(rng.uniform(-2, 2) + b * base + _ar1(rng, T, 0.95, 3e-4))
        names.append(f"COINT{k}")
    walks = [rng.uniform(0, 8) + np.cumsum(rng.normal(0, 8e-4, T)) for _ in range(3)]
    cols += walks
    names += ["RW0", "RW1", "RW2"]
    for k in range(2):
        cols.append(1.0 + (0.7 + k) * walks[0] + _ar1(rng, T, 0.9, 5e-4))
        names.append(f"RWC{k}")
    return np.column_stack(cols), names


@pytest.fixture(scope="module")
def universe() -> tuple[np.ndarray, list[str]]:
    return build_universe()


def _sm_residuals(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return sm.OLS(y, sm.add_constant(x)).fit().resid


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.mark.parametrize("lags", [0, 1, 3])
def test_engle_granger_matches_statsmodels_coint_for_every_ordered_pair(universe, lags) -> None:
    X, names = universe
    res = scan_pairs(X, names, adf_lags=lags)
    n = len(names)
    worst_t = worst_p = 0.0
    for i in range(n):
        for j in range(n):
            if i == j:
                assert math.isnan(res.tstat[i, j])
                continue
            t, p, _ = coint(X[:, i], X[:, j], trend="c", maxlag=lags, autolag=None)
            worst_t = max(worst_t, _rel(res.tstat[i, j], t))
            worst_p = max(worst_p, abs(res.pvalue[i, j] - p))
    assert worst_t <= 1e-8
    assert worst_p <= 1e-6
    assert res.tests == n * (n - 1)
    # the synthetic cointegrated pairs are found; some real pairs are not
    assert res.pvalue[names.index("COINT0"), names.index("BTC0")] < 1e-3
    assert res.pvalue[names.index("RWC1"), names.index("RW0")] < 1e-3
    assert np.nanmax(res.pvalue) > 0.5


def test_correlation_matches_numpy(universe) -> None:
    X, names = universe
    res = scan_pairs(X, names)
    r = np.diff(X, axis=0)
    for i in range(len(names)):
        for j in range(len(names)):
            assert abs(res.corr[i, j] - np.corrcoef(r[:, i], r[:, j])[0, 1]) <= 1e-12
    assert np.allclose(res.corr, res.corr.T, rtol=0, atol=1e-15)


def test_hedge_half_life_z_hurst_crossings_match_per_pair_references(universe) -> None:
    X, names = universe
    res = scan_pairs(X, names)
    lags = hurst_lags(T)
    assert lags == [1, 2, 4, 8, 16, 32, 64]
    n = len(names)
    yi, xj = np.nonzero(~np.eye(n, dtype=bool))
    cross = crossings_per_day(res, yi, xj, MINUTE)
    for k, (i, j) in enumerate(zip(yi, xj, strict=True)):
        xc, yc = X[:, j] - X[:, j].mean(), X[:, i] - X[:, i].mean()
        beta = math.fsum(xc * yc) / math.fsum(xc * xc)
        assert _rel(res.beta[i, j], beta) <= 1e-12
        assert _rel(res.alpha[i, j], X[:, i].mean() - beta * X[:, j].mean()) <= 1e-12
        e = sm.OLS(X[:, i], sm.add_constant(X[:, j])).fit().resid
        z = (e[-1] - e.mean()) / e.std(ddof=1)
        assert abs(res.zscore[i, j] - z) <= 1e-8 * max(1.0, abs(z))
        ar = sm.OLS(np.diff(e), sm.add_constant(e[:-1])).fit()
        kk = ar.params[1]
        if kk < 0:
            assert _rel(res.half_life[i, j], -math.log(2) / kk) <= 1e-8
        else:
            assert math.isnan(res.half_life[i, j])
        v = [np.var(e[t:] - e[:-t]) for t in lags]
        h = np.polyfit(np.log(lags), np.log(v), 1)[0] / 2
        assert _rel(res.hurst[i, j], h) <= 1e-8
        pos = (e - e.mean()) > 0
        want = np.count_nonzero(pos[1:] != pos[:-1]) / ((T - 1) / 1440)
        assert cross[k] == pytest.approx(want, rel=1e-12)
    # mean-reverting synthetic spreads have a short half-life and a Hurst exponent < 0.5
    c0, b0 = names.index("COINT0"), names.index("BTC0")
    assert res.half_life[c0, b0] < 60
    assert res.hurst[c0, b0] < 0.4
    assert res.hurst[names.index("RW1"), names.index("RW2")] > 0.4


def test_qvalues_match_statsmodels_fdr_bh(universe) -> None:
    X, names = universe
    res = scan_pairs(X, names)
    off = ~np.eye(len(names), dtype=bool)
    want = multipletests(res.pvalue[off], method="fdr_bh")[1]
    assert np.allclose(res.qvalue[off], want, rtol=1e-12, atol=0)
    assert np.isnan(np.diag(res.qvalue)).all()


def test_bh_skips_undefined_tests() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan, 0.5])
    q = bh_qvalues(p)
    ok = np.isfinite(p)
    assert np.array_equal(np.isnan(q), ~ok)
    assert np.allclose(q[ok], multipletests(p[ok], method="fdr_bh")[1], rtol=1e-15)
    assert np.isnan(bh_qvalues(np.full(3, np.nan))).all()


def test_vectorised_mackinnonp_equals_statsmodels_on_its_whole_range() -> None:
    grid = np.r_[np.linspace(-25, 5, 3001), -19.04, -18.83, -1.61, 2.74, 10.0, -np.inf]
    got = mackinnonp(grid)
    want = np.array([sm_mackinnonp(t, regression="c", N=2) for t in grid])
    assert np.allclose(got, want, rtol=1e-13, atol=1e-15)
    assert math.isnan(mackinnonp(np.array([np.nan]))[0])


def test_flat_series_give_undefined_not_a_crash(universe) -> None:
    X, names = universe
    X = np.column_stack([X[:, :4], np.full(T, math.log(3.1)), np.full(T, 0.0)])
    names = names[:4] + ["FLAT", "ZERO"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = scan_pairs(X, names)
    assert res.flat == ("FLAT", "ZERO")
    for f in (4, 5):
        for arr in (res.corr, res.beta, res.tstat, res.pvalue, res.qvalue, res.half_life):
            assert np.isnan(arr[f, :]).all() and np.isnan(arr[:, f]).all()
    assert np.isfinite(res.pvalue[:4, :4][~np.eye(4, dtype=bool)]).all()
    assert res.tests == 12
    rows = rank_pairs(res, bar_ms=MINUTE)
    assert len(rows) == 30
    assert all(math.isnan(r.qvalue) for r in rows[12:])
    assert all(math.isfinite(r.qvalue) for r in rows[:12])


def test_collinear_pair_is_undefined_where_statsmodels_gives_minus_inf(universe) -> None:
    X, names = universe
    X = np.column_stack([X[:, 0], 2.0 + 1.5 * X[:, 0], X[:, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert coint(X[:, 1], X[:, 0], trend="c", maxlag=1, autolag=None)[0] == -np.inf
    res = scan_pairs(X, ["A", "B", "C"])
    assert res.beta[1, 0] == pytest.approx(1.5, rel=1e-12)
    assert math.isnan(res.tstat[1, 0]) and math.isnan(res.zscore[1, 0])
    assert res.collinear == 2
    assert np.isfinite(res.tstat[2, 0])


def test_constant_returns_give_undefined_correlation_only() -> None:
    rng = np.random.default_rng(3)
    trend = 1.0 + 2.0**-12 * np.arange(200)  # exact steps: returns exactly constant
    walk = 2.0 + np.cumsum(rng.normal(0, 1e-3, 200))
    res = scan_pairs(np.column_stack([trend, walk]), ["TREND", "WALK"])
    assert math.isnan(res.corr[0, 1])
    assert np.isfinite(res.tstat[0, 1]) and np.isfinite(res.tstat[1, 0])


def test_bad_input_is_a_value_error() -> None:
    good = np.cumsum(np.ones((100, 3)), axis=0)
    with pytest.raises(ValueError, match="2-D"):
        scan_pairs(good[:, 0], ["A"])
    with pytest.raises(ValueError, match="symbols"):
        scan_pairs(good, ["A", "B"])
    with pytest.raises(ValueError, match="at least"):
        scan_pairs(good[: min_bars(1) - 1], ["A", "B", "C"])
    with pytest.raises(ValueError, match="adf_lags"):
        scan_pairs(good, ["A", "B", "C"], adf_lags=-1)
    bad = good.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        scan_pairs(bad, ["A", "B", "C"])


def test_ranking_orders_by_each_key_with_undefined_last(universe) -> None:
    X, names = universe
    res = scan_pairs(X, names)
    rates = np.random.default_rng(5).normal(1e-4, 2e-4, len(names))
    rates[3] = np.nan
    res = dataclasses.replace(res, carry_bps_day=carry_matrix(res.zscore, res.beta, rates))
    rows = rank_pairs(res, bar_ms=MINUTE)
    assert len(rows) == 380
    q = [r.qvalue for r in rows]
    assert q == sorted(q)
    assert (rows[0].y, rows[0].x) in {(a, b) for a in names for b in names if a != b}
    for key in SORT_KEYS:
        for desc in (False, True):
            top = rank_pairs(res, bar_ms=MINUTE, key=key, descending=desc, limit=25)
            vals = [getattr(r, key) for r in top]
            finite = [v for v in vals if math.isfinite(v)]
            assert finite == sorted(finite, reverse=desc), key
            assert all(math.isfinite(v) for v in vals[: len(finite)])
    top = rank_pairs(res, bar_ms=MINUTE, key="carry_bps_day", descending=True)
    assert top[0].carry_bps_day == np.nanmax(res.carry_bps_day)
    assert sum(math.isnan(r.carry_bps_day) for r in top) == 2 * 19  # the pairs with symbol 3
    desc = rank_pairs(res, bar_ms=MINUTE, key="abs_z", descending=True, limit=5)
    assert desc[0].abs_z == pytest.approx(np.nanmax(np.abs(res.zscore)))
    with pytest.raises(ValueError, match="sort key"):
        rank_pairs(res, bar_ms=MINUTE, key="nope")
