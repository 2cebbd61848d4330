"""The basket backtest's rank filter: entries only where the signal bar's own Johansen
rank (the one `BasketAnalytics` gives that bar, as live) reaches `min_rank`. Checked bar
by bar against the rank series of the same analytics, on a random-walk basket whose rank
is 0 on most bars."""

from __future__ import annotations

import numpy as np
import pytest

from quanttui.analytics.backtest import BacktestParams
from quanttui.analytics.bars import BasketBars, align_legs, leg_bars
from quanttui.analytics.basket import (
    BasketMetrics,
    BasketParams,
    backtest_basket,
    run_basket_backtest,
    run_basket_bars,
)

TF = 60_000
N, W = 2000, 100
PARAMS = BacktestParams(2.0, 0.0, None, 4.0, True)


def _random_walk(seed: int) -> tuple[BasketParams, BasketBars]:
    """Three independent log random walks: no cointegration, by construction."""
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(scale=2e-3, size=(N, 3)), axis=0))
    ts = 1_700_000_000_000 + np.arange(N, dtype=np.int64) * TF
    bars = align_legs([leg_bars(ts, closes[:, i], np.ones(N), TF) for i in range(3)], TF)
    return BasketParams(("A", "B", "C"), "1m", W), bars


def _history(params: BasketParams, bars: BasketBars) -> list[BasketMetrics]:
    engine = params.analytics(history=len(bars))
    run_basket_bars(engine, bars)
    return list(engine.history)


def _entries_follow_the_rule(hist: list[BasketMetrics], trades: list, min_rank: int) -> None:
    """Bar by bar: a flat book enters at t + 1 exactly when bar t has |z| >= entry, its
    weights, and ``rank_t >= min_rank``."""
    n = len(hist)
    flat = np.ones(n, bool)
    for tr in trades:
        exit_at = n if tr.exit_time is None else (tr.exit_time - hist[0].ts_ms) // TF
        flat[tr.entry_index : exit_at] = False
    entered = {tr.entry_index for tr in trades}
    for t in range(n - 1):
        m = hist[t]
        signal = bool(m.weights) and abs(m.zscore) >= PARAMS.entry_z
        want = bool(flat[t] and signal and m.rank >= min_rank)
        assert (t + 1 in entered) == want, (t, m.rank, m.zscore)


@pytest.mark.parametrize("seed", [0, 3])
def test_random_walk_basket_enters_only_on_rank_bars(seed: int) -> None:
    params, bars = _random_walk(seed)
    hist = _history(params, bars)
    ranks = np.array([m.rank for m in hist])
    assert np.mean(ranks[ranks >= 0] == 0) > 0.8

    plain = backtest_basket(bars, params, PARAMS, min_rank=0)
    kept = backtest_basket(bars, params, PARAMS, min_rank=1)
    assert kept.params["min_rank"] == 1 and plain.params["min_rank"] == 0
    assert len(plain.result.trades) >= 20
    assert len(kept.result.trades) <= len(plain.result.trades) / 3
    assert all(ranks[tr.entry_index - 1] >= 1 for tr in kept.result.trades)
    assert any(ranks[tr.entry_index - 1] == 0 for tr in plain.result.trades)
    _entries_follow_the_rule(hist, kept.result.trades, 1)
    _entries_follow_the_rule(hist, plain.result.trades, 0)


def test_filter_holds_back_entries_never_exits() -> None:
    """z crosses -entry on bars 1 (rank 0) and 3 (rank 1): only bar 3's entry fills (bar
    4); its exit signal on bar 5 fills on bar 6 although the rank is 0 there."""
    ts = np.arange(8, dtype=np.int64) * TF
    closes = np.tile([10.0, 20.0, 40.0], (8, 1))
    w = np.tile([1.0, -0.5, 0.25], (8, 1))
    z = np.array([0.0, -2.5, 0.0, -2.5, -1.0, 0.5, 0.0, 0.0])
    rank = np.array([0, 0, 0, 1, 0, 0, 0, 0])
    (tr,) = run_basket_backtest(ts, closes, z, w, PARAMS, TF, rank=rank).trades
    assert (tr.entry_index, tr.exit_time) == (4, 6 * TF)
    off = run_basket_backtest(ts, closes, z, w, PARAMS, TF, rank=rank, min_rank=0).trades
    assert [t.entry_index for t in off] == [2, 4]


def test_min_rank_zero_is_the_unfiltered_backtest() -> None:
    params, bars = _random_walk(1)
    hist = _history(params, bars)
    ts = np.array([m.ts_ms for m in hist], np.int64)
    closes = np.array([m.closes for m in hist])
    z = np.array([m.zscore for m in hist])
    w = np.array([m.weights or (np.nan,) * 3 for m in hist])
    rank = np.array([m.rank for m in hist])
    plain = run_basket_backtest(ts, closes, z, w, PARAMS, TF)
    zero = run_basket_backtest(ts, closes, z, w, PARAMS, TF, rank=rank, min_rank=0)
    assert np.array_equal(plain.equity, zero.equity)
    assert [t.entry_time for t in plain.trades] == [t.entry_time for t in zero.trades]


@pytest.mark.parametrize("bad", [-1, 4])
def test_min_rank_out_of_range(bad: int) -> None:
    params, bars = _random_walk(2)
    with pytest.raises(ValueError, match="min_rank"):
        backtest_basket(bars, params, PARAMS, min_rank=bad)
