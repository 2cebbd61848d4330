"""Kalman mode on a month of real USD-M futures 1m klines (AVAXUSDT/NEARUSDT, Feb 2024),
with the shipped default tuning, through the stored-bars path that `snapshot`,
`backtest` and `export` share.

Before the spread was the one-step forecast error, the Kalman spread was the residual
after each bar's own update: 4e-5 against 9e-3 under OLS, ADF p about 1e-20, a
half-life of 0.6 bars. These tests pin the scale and the stationarity statistics to
what a forecast error of this pair gives.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from quanttui.analytics.live import PairParams
from quanttui.analytics.stationarity import stationarity
from quanttui.cli import main
from quanttui.config import load_config
from quanttui.store.db import connect
from quanttui.store.queries import load_pair_bars
from tests.conftest import need
from tests.helpers import store_kline_csv

W = 300


@pytest.fixture
def kline_db(real_data: Path, tmp_path: Path) -> Path:
    db = tmp_path / "k.db"
    store_kline_csv(db, need(real_data / "AVAXUSDT-1m-2024-02.csv"), "AVAXUSDT")
    store_kline_csv(db, need(real_data / "NEARUSDT-1m-2024-02.csv"), "NEARUSDT")
    return db


def run(db: Path, hedge: str) -> tuple[list, list[float], list[float]]:
    a = load_config(use_user_file=False).analytics
    params = PairParams("AVAXUSDT", "NEARUSDT", "1m", W, hedge, a.kalman_delta, a.kalman_obs_var)
    conn = connect(db, readonly=True)
    try:
        bars = load_pair_bars(conn, "AVAXUSDT", "NEARUSDT", "1m", max_gap_bars=2 * W)
    finally:
        conn.close()
    assert len(bars) == 41_760
    engine = params.analytics(history=len(bars))
    adf_p, half_life = [], []
    ts, xs, ys = bars.ts_ms.tolist(), bars.x.close.tolist(), bars.y.close.tolist()
    for i in range(len(bars)):
        m = engine.update(ts[i], xs[i], ys[i])
        if i % 2000 == 1999 and i > 2 * W:
            st = stationarity(
                list(engine.window_spread), list(engine.window_x), list(engine.window_y)
            )
            adf_p.append(st.adf_p)
            half_life.append(m.half_life_bars)
    return list(engine.history), adf_p, half_life


def test_kalman_spread_is_on_the_scale_of_the_ols_spread(kline_db: Path) -> None:
    kal, kal_p, kal_hl = run(kline_db, "kalman")
    ols, _, _ = run(kline_db, "ols")
    ks = np.array([m.spread for m in kal])
    os_ = np.array([m.spread for m in ols])
    ratio = np.nanstd(ks) / np.nanstd(os_)
    assert 0.1 < ratio < 10, ratio
    # ADF on the last W forecast errors, every 2000 bars: genuine p-values that sometimes
    # reject and sometimes do not, never the 1e-20 of a fitted-away residual.
    assert len(kal_p) == 20 and all(p is not None for p in kal_p)
    assert min(kal_p) > 1e-10
    assert 1e-3 < float(np.median(kal_p)) < 0.5
    assert sum(p > 0.05 for p in kal_p) >= 3 and sum(p < 0.05 for p in kal_p) >= 3
    assert float(np.median([h for h in kal_hl if math.isfinite(h)])) > 2.0
    # The default obs_var is calibrated for 1m bars: e/sqrt(Q) has about unit variance,
    # and the hedge ratio stays near the pair's price ratio instead of jumping per bar.
    kz = np.array([m.kalman_z for m in kal])
    assert 0.5 < np.nanstd(kz) < 2.0
    b = np.array([m.beta for m in kal])
    assert 0.05 < np.percentile(b, 1) and np.percentile(b, 99) < 0.12


def test_snapshot_cli_reports_the_forecast_error(kline_db: Path, capsys) -> None:
    args = ["snapshot", "AVAXUSDT", "NEARUSDT", "--db", str(kline_db), "--timeframe", "1m"]
    assert main([*args, "--window", str(W), "--hedge", "kalman", "--json"]) == 0
    kal = json.loads(capsys.readouterr().out)
    assert main([*args, "--window", str(W), "--hedge", "ols", "--json"]) == 0
    ols = json.loads(capsys.readouterr().out)
    assert ols["kalman_q"] is None and ols["kalman_z"] is None
    assert kal["hedge"] == "kalman" and kal["kalman_q"] > 0
    assert math.isclose(kal["kalman_z"], kal["spread"] / math.sqrt(kal["kalman_q"]), rel_tol=1e-12)
    hist, _, _ = run(kline_db, "kalman")
    assert kal["spread"] == hist[-1].spread and kal["zscore"] == hist[-1].zscore
    assert 1e-4 < abs(kal["spread"]) < 0.1
    assert 1e-6 < kal["adf_p"] < 1 and kal["half_life_bars"] > 1
