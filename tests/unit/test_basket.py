"""The basket's per-bar metrics, bar grid and backtest, against independent references:
statsmodels' coint_johansen per window, numpy for the spread's z-score and half-life,
`align` for two legs, and the pair backtest for a two-leg basket."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.tsa.vector_ar.vecm import coint_johansen

from quanttui.analytics.backtest import BacktestParams, run_backtest
from quanttui.analytics.bars import BasketBuilder, align, align_legs, leg_bars
from quanttui.analytics.basket import (
    BasketParams,
    LiveBasket,
    basket_metrics,
    run_basket_backtest,
    run_basket_bars,
)
from quanttui.analytics.funding import FundingSeries
from quanttui.analytics.johansen import spread_stats
from quanttui.model import BASKET_METRIC_NAMES, Tick

TF = 60_000


def _prices(seed: int, n: int, m: int) -> np.ndarray:
    """m log-random-walk legs around 100, the last one cointegrated with the others."""
    rng = np.random.default_rng(seed)
    lx = np.cumsum(rng.normal(scale=2e-3, size=(n, m - 1)), axis=0)
    e = np.zeros(n)
    for t in range(1, n):
        e[t] = 0.7 * e[t - 1] + rng.normal(scale=1e-3)
    last = 0.6 * lx[:, 0] + 0.4 * lx[:, 1:].sum(axis=1) + e
    return 100 * np.exp(np.column_stack([lx, last]))


@pytest.mark.parametrize(("log", "det_order", "k"), [(True, 0, 1), (False, 1, 2), (False, -1, 1)])
def test_every_bar_equals_references(log: bool, det_order: int, k: int) -> None:
    """Weights, statistics and critical values vs statsmodels at every bar; the spread
    with the bar's own weights; z and half-life vs numpy / `spread_stats` on the last W
    spreads; z first at bar 2W - 1."""
    w, n, m = 60, 260, 3
    p = _prices(3, n, m)
    lv = np.log(p) if log else p
    params = BasketParams(("A", "B", "C"), "1m", w, det_order, k, log)
    eng = params.analytics(history=n)
    spreads: list[float] = []
    for i in range(n):
        res = eng.update(i * TF, p[i])
        if i < w - 1:
            assert res.trace == () and math.isnan(res.spread)
            continue
        ref = coint_johansen(lv[i - w + 1 : i + 1], det_order, k)
        # det_order=-1 uses raw (uncentred) levels, ill-conditioned here: statsmodels
        # agrees with itself on permuted columns only to ~1e-7 (see test_johansen_real)
        tol = 1e-6 if det_order == -1 else 1e-8
        np.testing.assert_allclose(res.trace, ref.lr1, rtol=tol, atol=tol)
        np.testing.assert_allclose(res.max_eig, ref.lr2, rtol=tol, atol=tol)
        np.testing.assert_array_equal(np.array(res.trace_cv), ref.cvt)
        np.testing.assert_array_equal(np.array(res.max_cv), ref.cvm)
        ref_w = ref.evec[:, 0] / ref.evec[0, 0]
        wtol = 1e-5 if det_order == -1 else 1e-8
        np.testing.assert_allclose(res.weights, ref_w, rtol=wtol, atol=wtol)
        assert res.weights[0] == 1.0
        assert res.spread == pytest.approx(float(np.dot(res.weights, lv[i])), rel=1e-12)
        rank = next((r for r in range(m) if ref.lr1[r] < ref.cvt[r, 1]), m)
        assert res.rank == rank
        spreads.append(res.spread)
        if len(spreads) < w:
            assert math.isnan(res.zscore)
            continue
        assert i >= 2 * w - 2
        last = np.array(spreads[-w:])
        z = (last[-1] - last.mean()) / last.std(ddof=1)
        assert res.zscore == pytest.approx(z, rel=1e-9, abs=1e-9)
        _z, hl = spread_stats(last)
        assert res.half_life_bars == pytest.approx(hl, rel=1e-9) or (
            math.isnan(hl) and math.isnan(res.half_life_bars)
        )
        q = np.array(res.weights) * (p[i, 0] / p[i] if log else 1.0)
        np.testing.assert_allclose(res.notional, q * p[i], rtol=1e-12)
    assert len(spreads) == n - w + 1


def test_first_z_at_2w_minus_1() -> None:
    w = 40
    p = _prices(1, 2 * w + 5, 3)
    eng = BasketParams(("A", "B", "C"), "1m", w).analytics()
    zs = [eng.update(i * TF, p[i]).zscore for i in range(len(p))]
    first = next(i for i, z in enumerate(zs) if math.isfinite(z))
    assert first + 1 == 2 * w - 1


def test_rule_metrics() -> None:
    w = 40
    p = _prices(2, 120, 4)
    params = BasketParams(("A", "B", "C", "D"), "1m", w)
    eng = params.analytics()
    for i in range(len(p)):
        m = eng.update(i * TF, p[i])
    vals = basket_metrics(m, eng.bars, "1m")
    assert set(vals) <= set(BASKET_METRIC_NAMES)
    assert {"zscore", "rank", "trace_stat", "max_eig_stat", "trace_margin"} <= set(vals)
    assert vals["trace_stat"] == m.trace[0]
    assert vals["trace_margin"] == pytest.approx(m.trace[0] - m.trace_cv[0][1])
    assert vals["half_life_s"] == pytest.approx(60 * m.half_life_bars)
    assert basket_metrics(params.analytics().update(0, p[0]), 1, "1m") == {"bars": 1.0}


@pytest.mark.parametrize(
    ("symbols", "window", "what"),
    [
        (("A", "B"), 100, "3 or more legs"),
        (("A", "B", "A"), 100, "once"),
        (tuple(f"S{i}" for i in range(13)), 1000, "at most 12"),
        (("A", "B", "C"), 12, "window"),
    ],
)
def test_bad_params(symbols: tuple[str, ...], window: int, what: str) -> None:
    with pytest.raises(ValueError, match=what):
        BasketParams(symbols, "1m", window)


def test_bad_closes_leave_state() -> None:
    eng = BasketParams(("A", "B", "C"), "1m", 30).analytics()
    for bad in ([1.0, 2.0], [1.0, 0.0, 2.0], [1.0, math.nan, 2.0]):
        with pytest.raises(ValueError):
            eng.update(0, bad)
    assert eng.bars == 0 and eng.last is None


# --------------------------------------------------------------------------- bar grid


def _trades(seed: int, symbols: tuple[str, ...], n: int) -> list[Tick]:
    """Random trades with silent stretches of single legs and of every leg (one longer
    than 2W buckets), zero-price rows, and a leg that starts late."""
    rng = np.random.default_rng(seed)
    out = []
    t = 1_700_000_000_000
    for i in range(n):
        t += int(rng.integers(50, 2500))
        if i == n // 2:
            t += 400 * 1000  # all legs silent for 400 s
        k = int(rng.integers(len(symbols)))
        if i < 20 and k == len(symbols) - 1:
            continue
        price = 0.0 if rng.random() < 0.01 else 100 + rng.normal()
        qty = 0.0 if price == 0 else 1.0
        out.append(Tick(symbols[k], i, t, price, qty, False))
    return out


def _stored(ticks: list[Tick], sym: str, tf: int):
    rows = [(t.ts_ms, t.price, t.qty) for t in ticks if t.symbol == sym]
    a = np.array(rows, float).reshape(-1, 3)
    return leg_bars(a[:, 0].astype(np.int64), a[:, 1], a[:, 2], tf)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_builder_equals_stored_grid(seed: int) -> None:
    """Live `BasketBuilder` bars == `align_legs` of the same trades, skip included."""
    syms = ("A", "B", "C", "D")
    tf, gap = 1000, 100
    ticks = _trades(seed, syms, 3000)
    b = BasketBuilder(syms, tf, max_gap_bars=gap)
    live = []
    for t in ticks:
        live += b.add(t)
    end = ticks[-1].ts_ms
    live += b.advance(end)
    stored = align_legs([_stored(ticks, s, tf) for s in syms], tf, end, gap)
    assert len(live) == len(stored) > 100
    assert b.skipped > 0
    for i, bar in enumerate(live):
        assert bar == stored.basket_bar(i)


def test_two_legs_equal_pair_grid() -> None:
    ticks = _trades(4, ("X", "Y"), 2000)
    x, y = _stored(ticks, "X", 1000), _stored(ticks, "Y", 1000)
    pair = align(x, y, 1000, None, 50)
    basket = align_legs([x, y], 1000, None, 50)
    assert np.array_equal(pair.ts_ms, basket.ts_ms)
    for i in range(len(pair)):
        pb, bb = pair.pair_bar(i), basket.basket_bar(i)
        assert (pb.x, pb.y) == bb.legs


def test_live_equals_recompute() -> None:
    """`LiveBasket` fed trades and the clock gives the metrics of a recompute over the
    stored bars of the same trades (`LiveBasket.from_bars`)."""
    syms = ("A", "B", "C")
    p = _prices(7, 400, 3)
    params = BasketParams(syms, "1s", 60)
    ticks = [
        Tick(s, i * 3 + j, 1_700_000_000_000 + i * 1000 + 10 * j, float(p[i, j]), 1.0, False)
        for i in range(len(p))
        for j, s in enumerate(syms)
    ]
    live = LiveBasket(params, history=1000)
    got = live.add(ticks)
    got += live.advance(ticks[-1].ts_ms + 2000)
    stored = align_legs([_stored(ticks, s, 1000) for s in syms], 1000)
    again = params.analytics(history=1000)
    run_basket_bars(again, stored)
    assert got == list(again.history)
    assert sum(math.isfinite(m.zscore) for m in got) == 400 - 2 * 60 + 2


# --------------------------------------------------------------------------- backtest


def _series(seed: int, n: int, interval_h: int = 8) -> FundingSeries:
    rng = np.random.default_rng(seed)
    ts = np.arange(1, n + 1, dtype=np.int64) * interval_h * 3_600_000 + 1_699_999_200_000
    return FundingSeries(ts, rng.normal(1e-4, 2e-4, n), np.full(n, math.nan), interval_h)


@pytest.mark.parametrize("log", [False, True])
def test_two_leg_backtest_is_the_pair_backtest(log: bool) -> None:
    """Legs (y, x) with weights (1, -b): `run_basket_backtest` == `run_backtest`."""
    rng = np.random.default_rng(5)
    n = 3000
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * TF
    x = 100 * np.exp(np.cumsum(rng.normal(scale=1e-3, size=n)))
    y = 50 * np.exp(np.cumsum(rng.normal(scale=1e-3, size=n)))
    z = np.sin(np.arange(n) / 40) * 3 + rng.normal(scale=0.3, size=n)
    z[:100] = np.nan
    beta = 0.5 + 0.1 * rng.random(n)
    params = BacktestParams(2.0, 0.5, 3.5, 4.0, log)
    fx, fy = _series(1, 10), _series(2, 10)
    pair = run_backtest(ts, x, y, z, beta, params, TF, (fx, fy))
    basket = run_basket_backtest(
        ts, np.column_stack([y, x]), z, np.column_stack([np.ones(n), -beta]), params, TF, (fy, fx)
    )
    assert len(pair.trades) == len(basket.trades) > 5
    np.testing.assert_allclose(basket.equity, pair.equity, rtol=1e-12, atol=1e-9)
    assert basket.fees == pytest.approx(pair.fees, rel=1e-12)
    assert basket.funding is not None and pair.funding is not None
    assert basket.funding.total == pytest.approx(pair.funding.total, rel=1e-12)
    assert basket.funding.settlements == pair.funding.settlements
    for a, b in zip(pair.trades, basket.trades, strict=True):
        assert (a.entry_time, a.exit_time, a.side) == (b.entry_time, b.exit_time, b.side)
        assert b.pnl == pytest.approx(a.pnl, rel=1e-9, abs=1e-9)
        assert b.qty == pytest.approx((a.qy, a.qx), rel=1e-12)
    for k in ("total_pnl", "sharpe", "max_drawdown", "win_rate", "exposure"):
        assert getattr(basket, k) == pytest.approx(getattr(pair, k), rel=1e-12)


def test_three_leg_fills_next_bar_and_fees() -> None:
    """A hand-checked run: z crosses -entry at bar 1 (fill at bar 2), exits at bar 3
    (fill at bar 4); PnL is the basket's value change less fees on each leg."""
    ts = np.arange(6, dtype=np.int64) * TF
    closes = np.array(
        [[10, 20, 40], [10, 20, 40], [11, 20, 40], [12, 21, 40], [13, 22, 41], [13, 22, 41]],
        float,
    )
    w = np.tile([1.0, -0.5, 0.25], (6, 1))
    z = np.array([0.0, -2.5, -1.0, 0.1, 0.0, 0.0])
    res = run_basket_backtest(ts, closes, z, w, BacktestParams(2.0, 0.0, None, 10.0), TF)
    (tr,) = res.trades
    assert (tr.entry_time, tr.exit_time, tr.side) == (2 * TF, 4 * TF, "long")
    q = np.array([1.0, -0.5, 0.25])
    fee_in = 1e-3 * float(np.abs(q) @ closes[2])
    fee_out = 1e-3 * float(np.abs(q) @ closes[4])
    gain = float(q @ (closes[4] - closes[2]))
    assert tr.pnl == pytest.approx(gain - fee_in - fee_out)
    assert res.total_pnl == pytest.approx(tr.pnl)
    assert res.fees == pytest.approx(fee_in + fee_out)


def test_snapshot_event_crosses_mailbox_and_protocol() -> None:
    """A basket's snapshot coalesces per basket in a `Mailbox` and survives the server's
    msgpack protocol (arrays and nested tuples included)."""
    from quanttui.analytics.basket import build_basket_snapshot
    from quanttui.engine.events import BasketSnapshotEvent
    from quanttui.engine.mailbox import Mailbox
    from quanttui.server.protocol import decode, encode

    w = 20
    p = _prices(9, 3 * w, 3)
    eng = BasketParams(("A", "B", "C"), "1m", w).analytics()
    box = Mailbox()
    for i in range(len(p)):
        eng.update(i * TF, p[i])
        box.put(BasketSnapshotEvent("A+B+C", build_basket_snapshot(eng, 50)))
    events, latest = box.drain()
    assert events == [] and len(latest) == 1
    (ev,) = latest
    snap = ev.snapshot
    assert snap.bars == 3 * w and len(snap.series_zscore) == 50 and snap.zscore is not None
    back = decode(encode(ev)[4:])
    assert back.pair == ev.pair and type(back.snapshot) is type(snap)
    for name in ("series_ts", "series_zscore", "series_spread"):
        np.testing.assert_array_equal(getattr(back.snapshot, name), getattr(snap, name))
    assert back.snapshot.trace_cv == snap.trace_cv and back.snapshot.weights == snap.weights
    assert back.snapshot.as_json() == snap.as_json()
    assert back.snapshot.as_json()["weights"]["A"] == 1.0


def test_a_flat_leg_leaves_the_bar_undefined_and_recovers() -> None:
    """A leg that does not move for longer than W bars (no trades: filled bars) makes the
    Johansen moments singular; those bars are undefined (no exception reaches the
    engine), and once the flat stretch has left the window the numbers are statsmodels'
    again, z after W more spreads."""
    w = 40
    p = _prices(8, 300, 3)
    p[100:160, 1] = p[100, 1]
    lv = np.log(p)
    eng = BasketParams(("A", "B", "C"), "1m", w).analytics(history=300)
    out = [eng.update(i * TF, p[i]) for i in range(len(p))]
    flat = out[100 + w - 1 : 160]  # windows in which B never moves
    assert flat and all(m.trace == () and math.isnan(m.zscore) for m in flat)
    for i in range(160 + w, 300, 9):
        ref = coint_johansen(lv[i - w + 1 : i + 1], 0, 1)
        np.testing.assert_allclose(out[i].trace, ref.lr1, rtol=1e-8)
    first_z = next(i for i, m in enumerate(out) if i > 160 and math.isfinite(m.zscore))
    assert first_z <= 160 + 2 * w
    assert all(math.isfinite(m.zscore) for m in out[first_z:])
