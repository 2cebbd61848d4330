"""Backtest rules on hand-computed cases, and a no-look-ahead property."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanttui.analytics.backtest import BacktestParams, run_backtest

TF = 60_000


def bt(z, x=None, y=None, beta=None, **kw):
    n = len(z)
    x = np.array(x if x is not None else [100.0] * n, float)
    y = np.array(y if y is not None else [50.0] * n, float)
    b = np.array(beta if beta is not None else [0.5] * n, float)
    p = BacktestParams(**{"fee_bps": 0.0, **kw})
    return run_backtest(np.arange(n) * TF, x, y, np.array(z, float), b, p, TF)


def test_short_entry_fills_next_bar_and_exits_on_exit_z() -> None:
    # z: bar1 signals short (>=2), fills at bar2; bar3 z<=0 signals exit, fills at bar4.
    z = [0, 2.5, 1.0, -0.1, 0, 0]
    y = [50, 50, 52, 51, 49, 49]
    x = [100, 100, 101, 100, 100, 100]
    r = bt(z, x, y, beta=[0.5] * 6)
    (tr,) = r.trades
    assert (tr.side, tr.entry_time, tr.exit_time) == ("short", 2 * TF, 4 * TF)
    assert (tr.entry_y, tr.entry_x, tr.exit_y, tr.exit_x) == (52, 101, 49, 100)
    # short spread: -1 Y, +0.5 X: pnl = -(49-52) + 0.5*(100-101) = 3 - 0.5
    assert tr.pnl == pytest.approx(2.5)
    assert tr.bars_held == 2
    assert r.total_pnl == pytest.approx(2.5)
    assert r.exposure == pytest.approx(2 / 6)  # a position is held at the close of bars 2 and 3
    assert r.win_rate == 1.0


def test_long_entry_and_exit_on_consecutive_bars_with_fees() -> None:
    z = [-2.0, 0.5, 0.0, 0.0]  # long at bar0 -> fill bar1; bar1 z>=-0 -> exit fills bar2
    y = [50, 50, 53, 53]
    x = [100, 100, 104, 104]
    r = bt(z, x, y, beta=[0.5] * 4, fee_bps=10)
    (tr,) = r.trades
    assert (tr.side, tr.entry_time, tr.exit_time, tr.bars_held) == ("long", TF, 2 * TF, 1)
    gross_pnl = (53 - 50) - 0.5 * (104 - 100)
    fees = 1e-3 * (50 + 0.5 * 100) + 1e-3 * (53 + 0.5 * 104)
    assert tr.pnl == pytest.approx(gross_pnl - fees)
    assert r.fees == pytest.approx(fees)
    assert r.return_on_notional == pytest.approx((gross_pnl - fees) / (50 + 50))


def test_reentry_after_exit_and_one_change_per_bar() -> None:
    # bar0 short signal -> fill 1; bar1 z<=0 exit signal -> fill 2; bar2 z<=-2 long -> fill 3
    z = [3, -0.5, -3, -3, 1, 0]
    r = bt(z)
    assert [
        (t.side, t.entry_time // TF, None if t.exit_time is None else t.exit_time // TF)
        for t in r.trades
    ] == [
        ("short", 1, 2),
        ("long", 3, 5),
    ]


def test_stop_exits_either_side() -> None:
    r = bt([2.5, 4.1, 0, 0], stop_z=4.0)
    (tr,) = r.trades
    assert tr.side == "short" and tr.entry_time == TF and tr.exit_time == 2 * TF


def test_open_at_end_is_marked_to_market_without_exit_fee() -> None:
    z = [0, -2.5, -2.5, -2.5]
    y = [50, 50, 51, 55]
    x = [100, 100, 100, 102]
    r = bt(z, x, y, fee_bps=10)
    (tr,) = r.trades
    assert tr.exit_time is None and tr.exit_y == 55 and tr.exit_x == 102
    entry_fee = 1e-3 * (51 + 0.5 * 100)
    assert tr.pnl == pytest.approx((55 - 51) - 0.5 * (102 - 100) - entry_fee)
    assert r.total_pnl == pytest.approx(tr.pnl)


def test_signal_on_last_bar_has_no_fill() -> None:
    r = bt([0, 0, 0, 5])
    assert r.trades == [] and r.total_pnl == 0 and r.exposure == 0


def test_nan_z_gives_no_signal_and_drawdown_is_peak_to_trough() -> None:
    r = bt([math.nan, -2.5, 0.0, 0.0], y=[50, 50, 50, 48])
    assert r.trades[0].pnl == pytest.approx(-2.0)
    assert r.max_drawdown == pytest.approx(2.0)


def test_log_hedge_sizes_x_by_value() -> None:
    r = bt([-2.5, 0.0, 0.0], x=[100, 200, 200], y=[50, 50, 50], beta=[1.0] * 3, log_hedge=True)
    assert r.trades[0].qx == pytest.approx(-0.25)  # b * y / x at the fill


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(5, 80),
    cut=st.integers(1, 79),
)
def test_changing_future_bars_never_changes_past_decisions(seed: int, n: int, cut: int) -> None:
    cut = min(cut, n - 1)
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    x = 100 + rng.normal(0, 1, n).cumsum()
    y = 50 + rng.normal(0, 1, n).cumsum()
    a = bt(z, x, y, stop_z=4.0)
    z2, x2, y2 = z.copy(), x.copy(), y.copy()
    z2[cut:] = rng.normal(0, 3, n - cut)
    x2[cut:] += 5
    y2[cut:] -= 5
    b = bt(z2, x2, y2, stop_z=4.0)
    # every fill up to and including bar `cut` depends on decisions up to cut-1 only
    fills_a = [(t.side, t.entry_time) for t in a.trades if t.entry_time <= cut * TF]
    fills_b = [(t.side, t.entry_time) for t in b.trades if t.entry_time <= cut * TF]
    assert fills_a == fills_b
    np.testing.assert_allclose(a.equity[:cut], b.equity[:cut])
