"""The scanner's data side without a network: request weights and planning, the weight
budget on a fake clock, the close panel (coverage, fills, resampling) against pandas,
and the kline stream's parser and minute bookkeeping."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from quanttui.feed.binance import FrameError
from quanttui.feed.klines import (
    KLINE_LIMIT,
    MINUTE,
    KlineStream,
    RateLimit,
    WeightBudget,
    kline_weight,
    missing_minutes,
    parse_kline_frame,
    plan_requests,
)
from quanttui.scanner import ScanError, ScanRequest, parse_lookback
from quanttui.store.db import connect
from quanttui.store.importer import INSERT_KLINE
from quanttui.store.panel import load_close_panel
from tests.fakes.exchange import kline_frame

T0 = 1_706_745_600_000  # 2024-02-01 00:00 UTC


def test_kline_weight_follows_binance_limit_brackets() -> None:
    assert [kline_weight(n) for n in (1, 99, 100, 499, 500, 1000, 1001, 1500)] == [
        1,
        1,
        2,
        2,
        5,
        5,
        10,
        10,
    ]


def test_plan_merges_runs_only_when_one_request_weighs_no_more() -> None:
    m = np.array([T0 + k * MINUTE for k in (*range(0, 10), *range(12, 20), 1400)], np.int64)
    # 0-9 and 12-19 merge (20 minutes: weight 1 instead of 1 + 1); 1400 stays apart
    # (one span of 1401 minutes would weigh 10)
    assert plan_requests(m) == [(T0, T0 + 20 * MINUTE), (T0 + 1400 * MINUTE, T0 + 1401 * MINUTE)]
    assert plan_requests(np.empty(0, np.int64)) == []
    whole = T0 + np.arange(3000, dtype=np.int64) * MINUTE
    assert plan_requests(whole) == [(T0, T0 + 3000 * MINUTE)]
    assert KLINE_LIMIT == 1500


def test_rate_limit_from_exchange_info() -> None:
    body = {
        "rateLimits": [
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 2400,
            },
        ]
    }
    r = RateLimit.from_exchange_info(body)
    assert (r.limit, r.window_ms, r.header) == (2400, 60_000, "X-MBX-USED-WEIGHT-1M")
    fast = RateLimit.from_exchange_info(
        {"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND",
                         "intervalNum": 2, "limit": 300}]}
    )  # fmt: skip
    assert (fast.limit, fast.window_ms, fast.header) == (300, 2000, "X-MBX-USED-WEIGHT-2S")
    assert RateLimit.from_exchange_info({"symbols": []}) == RateLimit()
    assert RateLimit.from_exchange_info({"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT"}]}) == (
        RateLimit()
    )


async def test_budget_waits_for_the_next_window_and_honours_the_header() -> None:
    clock = {"t": 1000.25}  # 40.25 s into a clock minute
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)
        clock["t"] += s

    budget = WeightBudget(RateLimit(100, "MINUTE", 1), clock=lambda: clock["t"], sleep=fake_sleep)
    for _ in range(9):
        await budget.acquire(10)
    assert budget.used == 90 and not slept
    await budget.acquire(10)  # 100 > cap 90: wait for the next minute (+1 s margin)
    assert slept == [pytest.approx(60 - 40.25 + 1.0)]
    assert budget.used == 10 and budget.waits == 1
    budget.observe(httpx.Headers({"X-MBX-USED-WEIGHT-1M": "85"}))  # another client
    await budget.acquire(5)
    assert budget.used == 90 and len(slept) == 1
    await budget.acquire(1)
    assert len(slept) == 2 and budget.used == 1
    assert budget.peak == 90
    with pytest.raises(ValueError, match="never fit"):
        await budget.acquire(95)


def _store(db: Path, symbol: str, minutes: list[int], closes: list[float]) -> None:
    conn = connect(db)
    rows = [
        (symbol, "1m", T0 + m * MINUTE, c, c, c, c, 1.0, T0 + (m + 1) * MINUTE - 1, c, 1)
        for m, c in zip(minutes, closes, strict=True)
    ]
    with conn:
        conn.executemany(INSERT_KLINE, rows)
    conn.close()


def test_panel_reports_short_symbols_fills_holes_and_resamples_like_pandas(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    rng = np.random.default_rng(5)
    n = 600
    a = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    b = 50 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    c = 20 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    _store(db, "AAA", list(range(n)), a.tolist())
    holes = {7, 8, 300}
    b_min = [m for m in range(20, n) if m not in holes]  # starts 20 minutes late
    _store(db, "BBB", b_min, b[b_min].tolist())
    _store(db, "CCC", list(range(400, n)), c[400:].tolist())  # a third of the span
    conn = connect(db, readonly=True)
    panel = load_close_panel(conn, ["AAA", "BBB", "CCC", "DDD"], T0, T0 + n * MINUTE)
    assert panel.symbols == ("AAA", "BBB")
    assert dict(panel.short) == {
        "CCC": "too little history: 200 of 600 minutes",
        "DDD": "no 1m klines stored in the span (0 of 600 minutes)",
    }
    assert panel.times[0] == T0 + 20 * MINUTE and panel.bars == n - 20
    assert panel.filled == {"BBB": 1}  # 7 and 8 fall before the common start
    assert panel.close[300 - 20, 1] == b[299]
    assert np.array_equal(panel.close[:, 0], a[20:])

    p5 = load_close_panel(conn, ["AAA", "BBB"], T0, T0 + n * MINUTE, 5 * MINUTE)
    conn.close()
    idx = pd.to_datetime(T0 + np.arange(n) * MINUTE, unit="ms", utc=True)
    frame = pd.DataFrame({"AAA": a, "BBB": pd.Series(b, index=idx).where(
        np.isin(np.arange(n), b_min)).to_numpy()}, index=idx)  # fmt: skip
    want = frame.ffill().resample("5min", label="left", closed="left").last()
    want = want[want.index >= pd.Timestamp(T0 + 20 * MINUTE, unit="ms", tz="UTC")]
    assert p5.bars == len(want) == (n - 20) // 5
    assert np.array_equal(p5.close, want.to_numpy())
    assert np.array_equal(p5.times, want.index.as_unit("ms").asi8)


def test_missing_minutes_sees_only_1m_klines(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    _store(db, "AAA", [0, 1, 3], [1.0, 1.0, 1.0])
    conn = connect(db)
    with conn:
        conn.execute(
            "INSERT INTO klines VALUES ('AAA', '5m', ?, 1, 1, 1, 1, 1, ?, 1, 1)",
            (T0 + 2 * MINUTE, T0 + 7 * MINUTE - 1),
        )
    got = missing_minutes(conn, "AAA", T0, T0 + 5 * MINUTE)
    conn.close()
    assert got.tolist() == [T0 + 2 * MINUTE, T0 + 4 * MINUTE]


def test_lookback_and_request_checks() -> None:
    assert parse_lookback("90m") == 90 * MINUTE
    assert parse_lookback("1d") == 1440 * MINUTE
    for bad in ("1w", "0d", "31d", "", "12"):
        with pytest.raises(ValueError, match="lookback"):
            parse_lookback(bad)
    req = ScanRequest(Path("x.db"), "http://x", timeframe="15m", lookback_ms=2 * 3_600_000)
    with pytest.raises(ScanError, match="needs at least 32") as exc:
        req.check()
    assert exc.value.code == 2
    start, end = ScanRequest(Path("x.db"), "http://x", timeframe="5m").span(T0 + 7 * MINUTE + 5)
    assert (start, end) == (T0 + 5 * MINUTE - 1440 * MINUTE, T0 + 5 * MINUTE)


def test_kline_frames_parse_strictly() -> None:
    row = ["1765788180000", "89790.10", "89811.00", "89776.30", "89801.20", "152.311"]
    rest = [1765788180000, *row[1:], 1765788239999, "13677114.91", 6566, "70.1", "6295175.3", "0"]
    final = kline_frame("BTCUSDT", rest, True)
    assert parse_kline_frame(final) == (
        "BTCUSDT", "1m", 1765788180000, 89790.10, 89811.00, 89776.30, 89801.20, 152.311,
        1765788239999, 13677114.91, 6566,
    )  # fmt: skip
    assert parse_kline_frame(kline_frame("BTCUSDT", rest, False)) is None  # minute still open
    assert parse_kline_frame('{"result": null, "id": 1}') is None
    bad_high = [*rest[:2], "1.0", *rest[3:]]  # high below open and close
    for raw in ("<x>", "[]", '{"stream": "a", "data": {"e": "trade"}}',
                kline_frame("BTCUSDT", bad_high, True),
                final.replace('"n": 6566', '"n": "6566"')):  # fmt: skip
        with pytest.raises(FrameError):
            parse_kline_frame(raw)


class _Writer:
    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.flushes = 0

    async def execute(self, sql: str, rows: list[tuple], many: bool = False) -> None:
        self.rows += rows

    async def flush(self) -> None:
        self.flushes += 1


async def test_stream_reports_a_minute_when_complete_or_after_the_settle_time() -> None:
    writer = _Writer()
    minutes: list[int] = []
    stream = KlineStream(
        "ws://127.0.0.1:9/market", ["AAAUSDT", "BBBUSDT"], writer, minutes.append, settle_s=0.2
    )
    assert stream.url.endswith("/stream?streams=aaausdt@kline_1m/bbbusdt@kline_1m")

    def row(t: int) -> list:
        return [t, "1.0", "1.1", "0.9", "1.05", "10", t + MINUTE - 1, "10.5", 5, "5", "5.2", "0"]

    await stream._frame(kline_frame("AAAUSDT", row(T0), True))
    assert minutes == []
    await stream._frame(kline_frame("BBBUSDT", row(T0), True))
    assert minutes == [T0 + MINUTE] and writer.flushes == 1  # both in: at once
    await stream._frame(kline_frame("AAAUSDT", row(T0), True))  # a repeat changes nothing
    assert minutes == [T0 + MINUTE]
    await stream._frame(kline_frame("AAAUSDT", row(T0 + MINUTE), True))
    await stream._frame(kline_frame("CCCUSDT", row(T0 + MINUTE), True))  # not subscribed
    assert minutes == [T0 + MINUTE]
    await asyncio.sleep(0.4)  # BBB never comes: the minute is reported after settle_s
    assert minutes == [T0 + MINUTE, T0 + 2 * MINUTE]
    assert [r[0] for r in writer.rows] == ["AAAUSDT", "BBBUSDT", "AAAUSDT", "AAAUSDT"]
    with pytest.raises(ValueError, match="streams"):
        KlineStream("ws://x/market", [], writer, minutes.append)
