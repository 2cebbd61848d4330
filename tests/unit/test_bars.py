from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanttui.analytics.bars import BarBuilder, leg_bars, pair_bars
from quanttui.analytics.live import LivePair, PairParams
from quanttui.model import Tick, parse_iso_ms
from tests.helpers import store_ticks


def random_trades(seed: int, n: int, span_ms: int) -> list[Tick]:
    rng = np.random.default_rng(seed)
    ticks = []
    for sym, px in (("AAA", 100.0), ("BBB", 20.0)):
        ts = np.sort(rng.integers(1_700_000_000_000, 1_700_000_000_000 + span_ms, n))
        prices = px * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
        qty = rng.uniform(0.001, 2, n)
        ticks += [
            Tick(sym, i, int(t), float(p), float(q), False)
            for i, (t, p, q) in enumerate(zip(ts, prices, qty, strict=True))
        ]
    ticks.sort(key=lambda t: (t.ts_ms, t.symbol, t.trade_id))
    return ticks


def arrays(ticks: list[Tick], sym: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [(t.ts_ms, t.price, t.qty) for t in ticks if t.symbol == sym]
    a = np.array(rows, dtype=float).reshape(-1, 3)
    return a[:, 0].astype(np.int64), a[:, 1], a[:, 2]


def pandas_resample(ticks: list[Tick], sym: str, tf: str) -> pd.DataFrame:
    df = pd.DataFrame(
        [(t.ts_ms, t.price, t.qty) for t in ticks if t.symbol == sym and t.price > 0],
        columns=["ts", "p", "q"],
    )
    df.index = pd.to_datetime(df["ts"], unit="ms", utc=True)
    o = df["p"].resample(tf).ohlc()
    o["volume"] = df["q"].resample(tf).sum()
    o.index = (o.index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    return o


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 300),
    tf=st.sampled_from([1000, 60_000]),
    gap=st.sampled_from([None, 3, 20]),
    tail=st.integers(1, 40),
)
def test_builder_equals_vectorised_and_pandas(
    seed: int, n: int, tf: int, gap: int | None, tail: int
) -> None:
    ticks = random_trades(seed, n, 600_000)
    end = max(t.ts_ms for t in ticks) + tail * tf
    b = BarBuilder("AAA", "BBB", tf, max_gap_bars=gap)
    live = []
    for t in ticks:
        live += b.add(t)
    live += b.advance(end)
    vec = pair_bars(arrays(ticks, "AAA"), arrays(ticks, "BBB"), tf, end, gap)
    assert len(live) == len(vec)
    for i, bar in enumerate(live):
        ref = vec.pair_bar(i)
        for got, want in ((bar.x, ref.x), (bar.y, ref.y)):
            assert got.volume == pytest.approx(want.volume, rel=1e-12)
            assert replace(got, volume=0.0) == replace(want, volume=0.0)
    if gap is not None:
        return  # pandas has no notion of skipping; equality with the builder is the check
    rule = {1000: "1s", 60_000: "1min"}[tf]
    for sym, leg, filled in (("AAA", vec.x, vec.x_filled), ("BBB", vec.y, vec.y_filled)):
        ref = pandas_resample(ticks, sym, rule)
        close = ref["close"].ffill().reindex(vec.ts_ms, method="ffill")
        ref = ref.reindex(vec.ts_ms)
        ref["close"] = close
        traded = ~filled
        np.testing.assert_array_equal(leg.open[traded], ref["open"].to_numpy()[traded])
        np.testing.assert_array_equal(leg.high[traded], ref["high"].to_numpy()[traded])
        np.testing.assert_array_equal(leg.low[traded], ref["low"].to_numpy()[traded])
        np.testing.assert_allclose(leg.volume[traded], ref["volume"].to_numpy()[traded], rtol=1e-12)
        np.testing.assert_array_equal(leg.close, ref["close"].to_numpy())
        assert (leg.volume[filled] == 0).all()
        assert (leg.ts_ms % tf == 0).all()


def test_bar_closes_on_time_not_next_trade() -> None:
    b = BarBuilder("X", "Y", 1000)
    assert b.add(Tick("X", 1, 10_100, 1.0, 1.0, False)) == []
    assert b.add(Tick("Y", 1, 10_200, 2.0, 1.0, False)) == []
    assert b.advance(10_999) == []
    closed = b.advance(11_000)
    assert [c.ts_ms for c in closed] == [10_000]
    closed = b.advance(13_500)
    assert [c.ts_ms for c in closed] == [11_000, 12_000]
    assert all(c.x.filled and c.x.volume == 0 and c.x.close == 1.0 for c in closed)


def test_late_trade_is_counted_not_applied() -> None:
    b = BarBuilder("X", "Y", 1000)
    b.add(Tick("X", 1, 10_100, 1.0, 1.0, False))
    b.add(Tick("Y", 1, 10_200, 2.0, 1.0, False))
    (bar,) = b.advance(11_000)
    assert b.add(Tick("X", 2, 10_900, 5.0, 1.0, False)) == []
    assert b.late == 1
    nxt = b.advance(12_000)
    assert nxt[0].x.close == 1.0 and nxt[0].x.filled


def test_zero_price_rows_are_ignored() -> None:
    b = BarBuilder("X", "Y", 1000)
    b.add(Tick("X", 1, 10_100, 0.0, 0.0, False))
    assert b.ignored == 1
    lb = leg_bars(np.array([1, 2]), np.array([0.0, 3.0]), np.array([0.0, 1.0]), 1000)
    assert lb.open.tolist() == [3.0]


def test_real_recording_bars_match_pandas(real_data) -> None:
    ticks = []
    with open(real_data / "ticks_2025-12-15T08-50-11.076Z.ndjson") as fh:
        for i, line in enumerate(fh):
            r = json.loads(line)
            ticks.append(Tick(r["symbol"], i, parse_iso_ms(r["ts"]), r["price"], r["size"], False))
    ticks.sort(key=lambda t: (t.ts_ms, t.trade_id))
    vec = pair_bars(arrays(ticks, "BTCUSDT"), arrays(ticks, "ETHUSDT"), 1000)
    assert 400 <= len(vec) <= 410
    ref = pandas_resample(ticks, "ETHUSDT", "1s")
    ref = ref.reindex(vec.ts_ms)
    np.testing.assert_array_equal(vec.y.close, ref["close"].ffill().to_numpy())
    assert vec.x_filled.sum() > 0
    assert (vec.x.low > 89_000).all()


def test_bad_timeframe() -> None:
    with pytest.raises(ValueError):
        BarBuilder("X", "Y", 0)


def test_long_silence_of_both_legs_is_skipped_not_filled() -> None:
    b = BarBuilder("X", "Y", 1000, max_gap_bars=10)
    b.add(Tick("X", 1, 10_100, 1.0, 1.0, False))
    b.add(Tick("Y", 1, 10_200, 2.0, 1.0, False))
    closed = b.advance(86_400_000)
    assert [c.ts_ms for c in closed] == [10_000]
    assert b.skipped > 80_000
    assert b.advance(86_500_000) == []
    ticking = BarBuilder("X", "Y", 1000, max_gap_bars=10)
    ticking.add(Tick("X", 1, 10_100, 1.0, 1.0, False))
    ticking.add(Tick("Y", 1, 10_200, 2.0, 1.0, False))
    by_second = [bar for s in range(11, 40) for bar in ticking.advance(s * 1000)]
    assert len(by_second) == 11  # the traded bar and 10 fills, then nothing
    short = BarBuilder("X", "Y", 1000, max_gap_bars=10)
    short.add(Tick("X", 1, 10_100, 1.0, 1.0, False))
    short.add(Tick("Y", 1, 10_200, 2.0, 1.0, False))
    assert len(short.advance(15_000)) == 5 and short.skipped == 0
    short.add(Tick("X", 2, 100_000, 1.5, 1.0, False))
    resumed = short.advance(101_000)
    assert resumed[-1].ts_ms == 100_000 and resumed[-1].x.close == 1.5


def test_a_clock_ticking_into_a_long_silence_retracts_its_fills_and_resume_matches(
    tmp_path: Path,
) -> None:
    """The live clock fills the first G empty buckets, then learns the silence is too
    long: `retracted` counts those fills, and `LivePair.resume` (what the app does next)
    gives exactly the bars of a recompute, which never had them."""
    params = PairParams("X", "Y", "1s", 5, "ols")  # G = 10
    ticks = [
        Tick(sym, i, 1_000_000 + 1000 * i + (0 if sym == "X" else 300), px + 0.01 * i, 1.0, False)
        for i in range(30)
        for sym, px in (("X", 100.0), ("Y", 50.0))
    ]
    lp = LivePair(params)
    lp.add(ticks)
    seen = [lp.diverged]
    for s in range(1031, 1060):
        lp.advance(s * 1000)
        seen.append(lp.diverged)
    assert seen[0] == 0 and seen[-1] == 10 == lp.builder.retracted
    assert lp.engine.last.ts_ms == 1_039_000  # 10 fills after the last traded bucket

    conn = store_ticks(tmp_path / "t.db", ticks)
    resumed, _ = LivePair.resume(conn, params, 1_060_000)
    conn.close()
    assert resumed.engine.last.ts_ms == 1_029_000
    assert resumed.diverged == 0
    assert resumed.advance(1_100_000) == [] and resumed.diverged == 0
