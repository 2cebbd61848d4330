"""Basis, carry and settlement matching against hand computations and plain loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quanttui.alerts import build_engine, parse_rule
from quanttui.analytics.funding import (
    FundingSeries,
    FundingState,
    basis_bps,
    carry_bps_day_array,
    carry_matrix,
    daily_rate,
    expected_settlements,
    funding_columns,
    last_settled,
    match_settlements,
    pair_carry_bps_day,
    signal_side,
)
from quanttui.model import FUNDING_METRIC_NAMES, METRIC_NAMES, MarkPrice, Snapshot
from quanttui.report import countdown_text, funding_rows

H = 3_600_000


def test_basis_of_the_recorded_frame() -> None:
    # EOSUSDT mark 4.11998561, index 4.11519211 (the frame in MarkPrice's docstring)
    assert basis_bps(4.11998561, 4.11519211) == pytest.approx(
        (4.11998561 - 4.11519211) / 4.11519211 * 1e4, rel=1e-15
    )
    assert basis_bps(4.11998561, 4.11519211) == pytest.approx(11.6483, abs=1e-4)
    with pytest.raises(ValueError):
        basis_bps(1.0, 0.0)


def test_carry_by_hand() -> None:
    # X = BTC at 90,000 (8 h, +0.01%), Y = ETH at 3,000 (4 h, +0.03%), b = 0.03 BTC per ETH.
    # Short the spread: -1 ETH (receives 3000*0.0003 six times a day = 5.4),
    # +0.03 BTC (pays 0.03*90000*0.0001 three times a day = 0.81); gross 3000 + 2700.
    c = pair_carry_bps_day("short", 0.03, 90_000.0, 3_000.0, 1e-4, 3e-4, 8, 4)
    assert c == pytest.approx((5.4 - 0.81) / 5700 * 1e4, rel=1e-12)
    assert pair_carry_bps_day("long", 0.03, 90_000.0, 3_000.0, 1e-4, 3e-4, 8, 4) == -c
    # log hedge: b is an elasticity, X units = b * My / Mx: 0.9 * 3000 / 90000 = 0.03
    assert pair_carry_bps_day(
        "short", 0.9, 90_000.0, 3_000.0, 1e-4, 3e-4, 8, 4, log_hedge=True
    ) == pytest.approx(c, rel=1e-12)
    # a negative rate on the long leg pays the long side: long X receives
    assert pair_carry_bps_day("short", 1.0, 10.0, 10.0, -1e-4, 0.0, 8, 8) == pytest.approx(
        1e-4 * 3 * 10 / 20 * 1e4
    )
    with pytest.raises(ValueError):
        pair_carry_bps_day("flat", 1.0, 1.0, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        pair_carry_bps_day("long", 1.0, 0.0, 1.0, 0.0, 0.0)


def test_carry_matrix_by_hand() -> None:
    # symbols 0 = A (8 h, +0.01%), 1 = B (4 h, -0.02%), 2 = C (no rate known).
    # Pair [1, 0]: Y = B on X = A, b = 0.8, z = +2 -> short the spread: short 1 B (notional
    # M_B), long 0.8 * M_B / M_A units of A (notional 0.8 M_B). Per day and per M_B:
    # short B pays 0.0002 * 6 = 0.0012; long A pays 0.8 * 0.0001 * 3 = 0.00024.
    # Gross 1.8 M_B: carry = -(0.0012 + 0.00024) / 1.8 * 1e4 = -8 bps/day.
    f = daily_rate(np.array([1e-4, -2e-4, np.nan]), np.array([8, 4, 8]))
    beta = np.array([[np.nan, 1.25, 2.0], [0.8, np.nan, 0.5], [0.5, 2.0, np.nan]])
    z = np.array([[np.nan, -1.5, 1.0], [2.0, np.nan, 1.0], [1.0, 0.0, np.nan]])
    c = carry_matrix(z, beta, f)
    assert abs(c[1, 0] - -8.0) < 1e-9
    # [0, 1]: Y = A on X = B, b = 1.25, z < 0 -> long 1 A (pays 0.0003/day), short 1.25
    # B-notional (pays 1.25 * 0.0012): -(0.0003 + 0.0015) / 2.25 * 1e4 = -8 as well.
    assert abs(c[0, 1] - -8.0) < 1e-9
    # the monitor's formula, with the scan's log hedge at any marks, gives the same
    for i, j in ((1, 0), (0, 1)):
        ref = pair_carry_bps_day(
            signal_side(z[i, j]), beta[i, j], 3_000.0, 17.0, [1e-4, -2e-4][j],
            [1e-4, -2e-4][i], [8, 4][j], [8, 4][i], log_hedge=True,
        )  # fmt: skip
        assert abs(c[i, j] - ref) < 1e-9
    # a missing rate, z = 0 and the diagonal: undefined, never 0
    assert np.isnan(c[[0, 1, 2, 2], [2, 2, 0, 1]]).all()
    assert np.isnan(np.diag(c)).all()
    with pytest.raises(ValueError):
        carry_matrix(z, beta[:2], f)


def test_carry_matrix_matches_the_pairwise_formula() -> None:
    rng = np.random.default_rng(7)
    n = 6
    rates = rng.normal(1e-4, 2e-4, n)
    intervals = rng.choice([1, 4, 8], n)
    beta = rng.normal(0, 2, (n, n))
    z = rng.normal(0, 2, (n, n))
    beta[2, 4] = np.nan
    z[3, 1] = np.nan
    c = carry_matrix(z, beta, daily_rate(rates, intervals))
    for i in range(n):
        for j in range(n):
            if i == j or np.isnan(beta[i, j]) or np.isnan(z[i, j]):
                assert np.isnan(c[i, j])
                continue
            ref = pair_carry_bps_day(
                signal_side(z[i, j]), beta[i, j], 50.0, 2.0, rates[j], rates[i],
                intervals[j], intervals[i], log_hedge=True,
            )  # fmt: skip
            assert c[i, j] == pytest.approx(ref, rel=1e-12, abs=1e-12)


def test_vectorised_carry_matches_scalar() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, 50)
    z[[3, 9]] = [0.0, np.nan]
    b = rng.uniform(0.2, 2, 50)
    mx, my = rng.uniform(10, 20, 50), rng.uniform(1, 5, 50)
    rx, ry = rng.normal(0, 3e-4, 50), rng.normal(0, 3e-4, 50)
    for log in (False, True):
        arr = carry_bps_day_array(z, b, mx, my, rx, ry, 8, 4, log_hedge=log)
        for k in range(50):
            side = signal_side(z[k])
            if side is None:
                assert np.isnan(arr[k])
            else:
                ref = pair_carry_bps_day(
                    side, b[k], mx[k], my[k], rx[k], ry[k], 8, 4, log_hedge=log
                )
                assert arr[k] == pytest.approx(ref, rel=1e-12)


def mp(sym: str, e: int, mark: float, index: float, r: float, t: int) -> MarkPrice:
    return MarkPrice(sym, e, mark, index, None, r, t)


def test_state_countdown_settlement_and_rules() -> None:
    t1 = 1_765_814_400_000
    st = FundingState("BTCUSDT", "ETHUSDT")
    st.set_intervals({"ETHUSDT": 4})
    assert st.update(mp("BTCUSDT", t1 - 5_000, 90_010.0, 90_000.0, 1e-4, t1)) is None
    assert st.update(mp("SOLUSDT", t1, 1.0, 1.0, 0.0, t1)) is None
    m = st.metrics(0.03, 2.5, t1 - 3_000)
    assert m.y is None and m.carry_bps_day is None and m.side == "short"
    assert m.x.countdown_s == 3.0 and m.x.basis_bps == pytest.approx(10 / 9, rel=1e-12)
    st.update(mp("ETHUSDT", t1 - 4_000, 3_000.0, 3_001.5, 3e-4, t1))
    m = st.metrics(0.03, 2.5, t1 - 3_000)
    assert m.carry_bps_day == pytest.approx(
        pair_carry_bps_day("short", 0.03, 90_010.0, 3_000.0, 1e-4, 3e-4, 8, 4), rel=1e-15
    )
    assert st.metrics(0.03, -2.5, t1).carry_bps_day == pytest.approx(-m.carry_bps_day)
    assert st.metrics(0.03, None, t1).carry_bps_day is None
    assert st.metrics(None, 2.5, t1).carry_bps_day is None
    # the next update after the settlement moves T on: the passed time comes back
    assert st.update(mp("BTCUSDT", t1 + 1_000, 90_020.0, 90_000.0, 2e-4, t1 + 8 * H)) == t1
    assert st.update(mp("BTCUSDT", t1 - 9_000, 1.0, 1.0, 0.0, t1)) is None  # older: ignored
    assert st.latest["BTCUSDT"].rate == 2e-4
    m = st.metrics(0.03, 2.5, t1 + 2_000)
    assert m.x.countdown_s == (8 * H - 2_000) / 1000
    assert countdown_text(m.x.countdown_s) == "7:59:58"

    snap = Snapshot("BTCUSDT", "ETHUSDT", "1s", 10, "ols", 20, beta=0.03, zscore=2.5, funding=m)
    metrics = snap.metrics()
    assert set(FUNDING_METRIC_NAMES) <= set(metrics) and set(FUNDING_METRIC_NAMES) <= set(
        METRIC_NAMES
    )
    assert metrics["funding_x"] == 2e-4 and metrics["basis_y"] == pytest.approx(
        -1.5 / 3001.5 * 1e4, rel=1e-12
    )
    js = snap.as_json()
    assert js["carry_bps_day"] == m.carry_bps_day and js["carry_side"] == "short"
    assert js["funding"]["x"]["next_funding"] == "2025-12-16T00:00:00.000Z"
    rows = {k: v for k, _label, v in funding_rows(snap)}
    assert rows["funding_x"] == "+0.0200% /8h" and rows["funding_y"] == "+0.0300% /4h"
    assert rows["next_funding_x"] == "7:59:58" and rows["basis_x"] == "+2.22 bp"
    assert rows["carry_bps_day"].endswith("bp/d short")

    eng = build_engine("BTCUSDT/ETHUSDT", ["carry_bps_day < 0", "abs(basis_y) > 4"],
                       entry_z=2, exit_z=0, hysteresis=0, cooldown_s=0, default=False)  # fmt: skip
    fired = eng.evaluate(metrics, 1)
    assert [a.metric for a in fired] == (
        ["carry_bps_day", "basis_y"] if m.carry_bps_day < 0 else ["basis_y"]
    )
    assert parse_rule("funding_x > 0.0005").metric == "funding_x"


def test_snapshot_without_funding_is_unchanged() -> None:
    snap = Snapshot("A", "B", "1s", 10, "ols", 0)
    assert not set(FUNDING_METRIC_NAMES) & set(snap.metrics())
    js = snap.as_json()
    assert js["funding"] is None and all(js[k] is None for k in FUNDING_METRIC_NAMES)
    assert {v for _k, _l, v in funding_rows(snap)} == {"—"}


def test_settlement_slots_tolerate_late_funding_times() -> None:
    t0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
    exp = expected_settlements(t0 - 1, t0 + 24 * H, 8)
    assert exp.tolist() == [t0, t0 + 8 * H, t0 + 16 * H, t0 + 24 * H]
    assert expected_settlements(t0, t0 + 24 * H, 8).tolist() == exp.tolist()[1:]
    assert expected_settlements(t0 + 1, t0 + 7 * H, 8).size == 0
    assert expected_settlements(t0 - 1, t0 + 4 * H, 4).tolist() == [t0, t0 + 4 * H]
    s = FundingSeries(
        np.array([t0 + 3, t0 + 16 * H]), np.array([1e-4, 2e-4]), np.array([np.nan, 5.0])
    )
    assert match_settlements(s, exp).tolist() == [0, -1, 1, -1]
    assert match_settlements(FundingSeries.empty(), exp).tolist() == [-1] * 4
    got = last_settled(s, np.array([t0 - 1, t0 + 3, t0 + 9 * H, t0 + 20 * H]))
    assert np.isnan(got[0]) and got[1:].tolist() == [1e-4, 1e-4, 2e-4]
    with pytest.raises(ValueError):
        FundingSeries(np.array([2, 1]), np.zeros(2), np.zeros(2))


def test_funding_columns() -> None:
    t0 = 1_704_067_200_000
    ts = t0 + np.arange(0, 20 * H, H)
    x = FundingSeries(np.array([t0, t0 + 8 * H]), np.array([1e-4, -1e-4]), np.full(2, np.nan))
    y = FundingSeries(np.array([t0 + 4 * H]), np.array([3e-4]), np.full(1, np.nan), 4)
    z = np.where(np.arange(20) % 2 == 0, 2.0, -2.0)
    cols = funding_columns(ts, np.full(20, 100.0), np.full(20, 50.0), np.full(20, 0.5), z, x, y)
    assert cols["funding_x"][[0, 7, 8, 19]].tolist() == [1e-4, 1e-4, -1e-4, -1e-4]
    assert np.isnan(cols["funding_y"][:4]).all() and cols["funding_y"][4] == 3e-4
    assert np.isnan(cols["carry_bps_day"][:4]).all() and np.isnan(cols["basis_x"]).all()
    k = 8
    assert cols["carry_bps_day"][k] == pytest.approx(
        pair_carry_bps_day("short", 0.5, 100.0, 50.0, -1e-4, 3e-4, 8, 4), rel=1e-12
    )
    assert math.isnan(cols["basis_y"][0])
