"""Funding in the backtest: a known position across three settlements, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from quanttui.analytics.backtest import BacktestParams, BacktestReport, run_backtest
from quanttui.analytics.funding import FundingSeries
from quanttui.report import backtest_summary

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
N = 30


def series(times, rates, marks, interval=8) -> FundingSeries:
    return FundingSeries(
        np.array(times, np.int64),
        np.array(rates, float),
        np.array([np.nan if m is None else m for m in marks], float),
        interval,
    )


def run(fx: FundingSeries, fy: FundingSeries, z=None):
    """1h bars from 00:00; z = 2.5 on bar 0 (short the spread, filled at bar 1's close,
    01:00 + 1h = 02:00), -0.1 on bar 26 (exit, filled at bar 27's close, 04:00 next day)."""
    ts = T0 + np.arange(N) * H
    x = 100.0 + np.arange(N)  # bar k closes at (k + 1) h at 100 + k
    y = 50.0 + 0.5 * np.arange(N)
    if z is None:
        z = np.ones(N)
        z[0], z[26] = 2.5, -0.1
    b = np.full(N, 0.5)
    p = BacktestParams(fee_bps=0.0)
    return run_backtest(ts, x, y, np.asarray(z, float), b, p, H, (fx, fy))


def test_three_settlements_by_hand() -> None:
    # settlements at 08:00, 16:00 and 00:00 (+1 day); one 3 ms late; the X mark of the
    # 16:00 settlement is not stored (archive row): the close at 16:00 (bar 15) is used.
    fx = series(
        [T0 + 8 * H, T0 + 16 * H + 3, T0 + 24 * H], [1e-4, -2e-4, 3e-4], [101.5, None, 99.0]
    )
    fy = series([T0 + 8 * H, T0 + 16 * H, T0 + 24 * H], [2e-4, 2e-4, -1e-4], [53.25, 57.5, 61.0])
    r = run(fx, fy)
    (tr,) = r.trades
    assert (tr.side, tr.qy, tr.qx) == ("short", -1.0, 0.5)
    # short spread: q_y = -1, q_x = +0.5; each leg receives -q * mark * rate
    hand = (
        -(0.5 * 101.5 * 1e-4)
        - (-1 * 53.25 * 2e-4)  # 08:00
        + -(0.5 * 115.0 * -2e-4)
        - (-1 * 57.5 * 2e-4)  # 16:00, X mark = close of bar 15
        + -(0.5 * 99.0 * 3e-4)
        - (-1 * 61.0 * -1e-4)  # 00:00
    )
    f = r.funding
    assert f.total == pytest.approx(hand, rel=0, abs=1e-9)
    assert tr.funding == pytest.approx(hand, rel=0, abs=1e-9)
    assert (f.settlements, f.expected, f.missing, f.mark_from_close) == (6, 6, 0, 1)
    assert f.coverage == 1.0
    # booked on the bar whose close ends the interval holding the settlement time
    assert np.flatnonzero(f.bar).tolist() == [7, 15, 23]
    assert r.pnl_after_funding == pytest.approx(r.total_pnl + hand, abs=1e-12)
    rep = BacktestReport(r, N, {}).as_json()
    assert rep["funding"] == f.total and rep["funding_coverage"] == 1.0
    assert rep["trades"][0]["funding"] == tr.funding
    assert "funding +" in backtest_summary(BacktestReport(r, N, {}))


def test_entry_at_the_settlement_close_does_not_pay_it_and_exit_does() -> None:
    # enter filled at bar 7's close = 08:00 exactly: the 08:00 settlement is not paid;
    # exit filled at bar 15's close = 16:00: the 16:00 settlement is paid.
    z = np.ones(N)
    z[6], z[14] = 2.5, -0.1
    z[15:] = 0.5
    fx = series([T0 + 8 * H, T0 + 16 * H, T0 + 24 * H], [1e-4, 1e-4, 1e-4], [100.0] * 3)
    fy = series([T0 + 8 * H, T0 + 16 * H, T0 + 24 * H], [0.0, 0.0, 0.0], [50.0] * 3)
    r = run(fx, fy, z)
    (tr,) = r.trades
    assert (tr.entry_time, tr.exit_time) == (T0 + 7 * H, T0 + 15 * H)
    assert tr.funding == pytest.approx(-(0.5 * 100.0 * 1e-4), abs=1e-15)


def test_a_hole_is_reported_not_assumed_zero() -> None:
    fx = series([T0 + 8 * H, T0 + 24 * H], [1e-4, 3e-4], [100.0, 100.0])
    fy = series([T0 + 8 * H, T0 + 16 * H, T0 + 24 * H], [2e-4] * 3, [50.0] * 3)
    r = run(fx, fy)
    f = r.funding
    assert (f.expected, f.missing, f.missing_in_position) == (6, 1, 1)
    assert f.coverage == pytest.approx(5 / 6)
    text = backtest_summary(BacktestReport(r, N, {}))
    assert "funding coverage 83%: 1 of 6 settlements missing, 1 while in a position" in text
    # 4 h for Y: six settlements expected from Y alone in (01:00, 06:00 next day]
    fy4 = series([T0 + k * 4 * H for k in range(1, 8)], [1e-4] * 7, [50.0] * 7, interval=4)
    f4 = run(fx, fy4).funding
    assert (f4.expected, f4.missing) == (3 + 7, 1)


def test_duplicate_rows_of_one_settlement_count_once_and_none_without_data() -> None:
    fx = series([T0 + 8 * H, T0 + 8 * H + 3], [1e-4, 1e-4], [None, 100.0])
    fy = series([], [], [])
    r = run(fx, fy)
    assert r.funding.total == pytest.approx(-(0.5 * 100.0 * 1e-4), abs=1e-15)
    assert r.funding.mark_from_close == 0
    assert (r.funding.expected, r.funding.missing) == (6, 5)
    ts = T0 + np.arange(N) * H
    plain = run_backtest(ts, 100.0 + np.arange(N), 50.0 + np.arange(N), np.zeros(N),
                         np.full(N, 0.5), BacktestParams(), H)  # fmt: skip
    assert plain.funding is None and plain.pnl_after_funding is None
    assert BacktestReport(plain, N, {}).as_json()["funding_coverage"] is None
