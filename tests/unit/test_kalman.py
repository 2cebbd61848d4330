"""The Kalman hedge against an independent numpy implementation of Chan's filter.

The reference runs the filter in price units with full 2x2 matrices (Chan 2013, ch. 3,
Example 3.3), with the covariances that the normalised scalar filter of
`quanttui.analytics.kalman` stands for. Tolerance: relative 1e-9, with an absolute floor
of 1e-9 times the series' typical size for values that cross zero (forecast errors, z).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from quanttui.analytics.engine import PairAnalytics
from quanttui.analytics.kalman import KalmanHedge
from quanttui.model import Snapshot
from quanttui.report import snapshot_rows

RTOL = 1e-9


def chan_filter(
    x: np.ndarray, y: np.ndarray, delta: float, obs_var: float
) -> dict[str, np.ndarray]:
    """Forecast error e_t = y_t - F_t theta_{t|t-1}, its variance Q_t, and the posterior
    state, per bar; e and Q are nan at the first bar, which seeds the state."""
    n = len(x)
    x1, y1 = x[0], y[0]
    q = delta / (1 - delta)
    vw = q * np.diag([(y1 / x1) ** 2, y1**2])
    ve = obs_var * y1**2
    theta = np.array([y1 / x1, 0.0])
    p = np.zeros((2, 2))
    out = {k: np.full(n, np.nan) for k in ("e", "q", "beta", "alpha", "beta_se")}
    for t in range(n):
        r = p + vw
        f = np.array([x[t], 1.0])
        e = y[t] - f @ theta
        qt = f @ r @ f + ve
        gain = r @ f / qt
        theta = theta + gain * e
        p = r - np.outer(gain, f @ r)
        if t > 0:
            out["e"][t], out["q"][t] = e, qt
        out["beta"][t], out["alpha"][t] = theta
        out["beta_se"][t] = math.sqrt(p[0, 0])
    return out


def close(actual: np.ndarray, ref: np.ndarray, floor: float = 0.0) -> None:
    ok = np.isclose(actual, ref, rtol=RTOL, atol=RTOL * floor, equal_nan=True)
    bad = np.flatnonzero(~ok)
    assert bad.size == 0, f"mismatch at {bad[:5]}: got {actual[bad[:5]]}, want {ref[bad[:5]]}"


def seeded_pair(seed: int, n: int, level: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = level * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    s = np.zeros(n)
    for i in range(1, n):
        s[i] = 0.95 * s[i - 1] + rng.normal(0, level * 2e-4)
    return x, 0.3 * level + beta * x + s


@pytest.mark.parametrize(
    ("seed", "level", "delta", "obs_var"),
    [(1, 1.0, 1e-8, 1e-5), (2, 1e5, 1e-8, 1e-5), (3, 40.0, 1e-4, 1e-3), (4, 3.0, 1e-6, 1e-7)],
)
def test_filter_matches_numpy_matrix_form(seed, level, delta, obs_var) -> None:
    x, y = seeded_pair(seed, 1500, level, 0.7)
    ref = chan_filter(x, y, delta, obs_var)
    k = KalmanHedge(delta, obs_var)
    got = {key: np.full(len(x), np.nan) for key in ref}
    for t, (xi, yi) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
        got["e"][t], got["q"][t] = k.update(xi, yi)
        got["beta"][t], got["alpha"][t], got["beta_se"][t] = k.beta, k.alpha, k.beta_se
    assert np.isnan(got["e"][0]) and np.isnan(got["q"][0])
    close(got["e"], ref["e"], floor=float(np.nanstd(ref["e"])))
    close(got["q"], ref["q"])
    close(got["beta"], ref["beta"], floor=float(np.std(ref["beta"])))
    close(got["alpha"], ref["alpha"], floor=level)
    close(got["beta_se"], ref["beta_se"])


def test_engine_reports_the_forecast_error_and_its_statistics() -> None:
    w, n = 60, 700
    x, y = seeded_pair(9, n, 40.0, 1.3)
    ref = chan_filter(x, y, 1e-8, 1e-5)
    eng = PairAnalytics(w, "kalman", kalman_delta=1e-8, kalman_obs_var=1e-5, history=n)
    for t in range(n):
        eng.update(t, float(x[t]), float(y[t]))
    h = list(eng.history)

    def col(name: str) -> np.ndarray:
        return np.array([getattr(m, name) for m in h])

    scale = float(np.nanstd(ref["e"]))
    close(col("spread"), ref["e"], floor=scale)
    close(col("kalman_q"), ref["q"])
    close(col("kalman_z"), ref["e"] / np.sqrt(ref["q"]), floor=1.0)
    close(col("beta"), ref["beta"], floor=1.0)
    close(col("alpha"), ref["alpha"], floor=40.0)
    e = pd.Series(ref["e"])
    z = (e - e.rolling(w).mean()) / e.rolling(w).std(ddof=1)
    close(col("zscore"), z.to_numpy(), floor=1.0)
    close(col("spread_mean"), e.rolling(w).mean().to_numpy(), floor=scale)
    assert np.isnan(col("zscore")[:w]).all() and np.isfinite(col("zscore")[w:]).all()
    # The stationarity tests and the half-life read the same W forecast errors.
    last = ref["e"][-w:]
    close(np.array(eng.window_spread), last, floor=scale)
    k = sm.OLS(np.diff(last), sm.add_constant(last[:-1])).fit().params[1]
    assert k < 0
    assert math.isclose(h[-1].half_life_bars, -math.log(2) / k, rel_tol=1e-7)


def test_forecast_errors_are_calibrated_on_data_from_the_model() -> None:
    """Data drawn from the filter's own state-space model: the forecast errors have the
    size of the observation noise, and e/sqrt(Q) is white and standard normal."""
    rng = np.random.default_rng(5)
    n, x1, y1, delta, obs_var = 6000, 35.0, 3.0, 1e-7, 1e-5
    q = delta / (1 - delta)
    u = np.exp(np.cumsum(np.r_[0.0, rng.normal(0, 2e-3, n - 1)]))
    theta = np.cumsum(np.r_[[[1.0, 0.0]], rng.normal(0, math.sqrt(q), (n - 1, 2))], axis=0)
    eps = np.r_[0.0, rng.normal(0, math.sqrt(obs_var), n - 1)]
    x = x1 * u
    y = y1 * (theta[:, 0] * u + theta[:, 1] + eps)
    eng = PairAnalytics(100, "kalman", kalman_delta=delta, kalman_obs_var=obs_var, history=n)
    for t in range(n):
        eng.update(t, float(x[t]), float(y[t]))
    h = list(eng.history)[500:]
    e = np.array([m.spread for m in h])
    kz = np.array([m.kalman_z for m in h])
    noise_sd = y1 * math.sqrt(obs_var)
    assert 0.9 < e.std() / noise_sd < 1.2
    assert 0.95 < kz.std() < 1.05 and abs(kz.mean()) < 0.05
    assert abs(np.corrcoef(kz[1:], kz[:-1])[0, 1]) < 0.05


def test_a_shift_in_beta_shows_in_the_spread_then_is_tracked() -> None:
    rng = np.random.default_rng(2)
    n = 4000
    x = 200 + np.cumsum(rng.normal(0, 0.5, n))
    beta = np.where(np.arange(n) < n // 2, 1.0, 1.5)
    y = 2 + beta * x + rng.normal(0, 0.05, n)
    eng = PairAnalytics(50, "kalman", kalman_delta=1e-6, kalman_obs_var=1e-7, history=n)
    for i in range(n):
        eng.update(i, float(x[i]), float(y[i]))
    h = list(eng.history)
    b = np.array([m.beta for m in h])
    e = np.array([m.spread for m in h])
    assert abs(b[n // 2 - 1] - 1.0) < 0.05
    assert abs(b[-1] - 1.5) < 0.05
    # At the shift, y jumps by 0.5 x while the forecast still uses beta = 1.
    assert abs(e[n // 2] - 0.5 * x[n // 2]) < 0.05 * x[n // 2]
    assert np.std(e[n // 2 - 500 : n // 2]) < 0.2
    assert np.isfinite(eng.last.zscore) and np.isfinite(eng.last.kalman_z)


def test_other_hedge_modes_have_no_kalman_metrics() -> None:
    x, y = seeded_pair(1, 100, 10.0, 1.0)
    for hedge in ("ols", "log"):
        eng = PairAnalytics(20, hedge)
        for t in range(100):
            m = eng.update(t, float(x[t]), float(y[t]))
        assert math.isnan(m.kalman_q) and math.isnan(m.kalman_z) and math.isfinite(m.zscore)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="delta"):
        KalmanHedge(0.0)
    with pytest.raises(ValueError, match="obs_var"):
        KalmanHedge(1e-4, 0.0)
    k = KalmanHedge()
    with pytest.raises(ValueError, match="non-zero"):
        k.update(0.0, 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        k.update(1.0, math.inf)


def test_metrics_table_shows_the_kalman_z_beside_the_rolling_z() -> None:
    base = {"symbol_x": "AVAXUSDT", "symbol_y": "NEARUSDT", "timeframe": "1m", "window": 300}
    kal = Snapshot(**base, hedge="kalman", bars=900, zscore=-12.345, kalman_z=-10.52)
    ols = Snapshot(**base, hedge="ols", bars=900, zscore=-1.5)
    rows = {k: v for k, _, v in snapshot_rows(kal)}
    assert rows["zscore"] == "-12.345 Kalman -10.52" and len(rows["zscore"]) <= 21
    assert {k: v for k, _, v in snapshot_rows(ols)}["zscore"] == "-1.500"
    assert [k for k, _, _ in snapshot_rows(kal)] == [k for k, _, _ in snapshot_rows(ols)]
    assert kal.metrics()["kalman_z"] == -10.52 and "kalman_z" not in ols.metrics()
