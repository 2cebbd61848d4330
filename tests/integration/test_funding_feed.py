"""Funding over the fake exchange: REST history and intervals into a real SQLite file,
and markPrice@1s frames on the routed combined stream."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import websockets

from quanttui.analytics.funding import FundingState
from quanttui.feed.binance import BinanceRest, RestError, market_stream_url, parse_market_frame
from quanttui.feed.funding import FUNDING_LIMIT, backfill_funding, mark_params, store_settlement
from quanttui.model import MarkPrice, Tick
from quanttui.store.queries import funding_intervals, funding_rates_per_day, load_funding
from quanttui.store.writer import UPSERT_INTERVAL, UPSERT_MARK, TickWriter
from tests.fakes.exchange import FakeExchange, FakeMark, funding_rows, synthetic_trades

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
H8 = 8 * 3_600_000


def btc_history(n: int) -> list[dict]:
    """n 8-hourly settlements, some a few ms late as Binance's are, marks "" for the
    oldest 10, plus three malformed rows."""
    times = [T0 + k * H8 + (3 if k % 7 == 0 else 0) for k in range(n)]
    rates = [((k % 11) - 4) * 1.7e-5 for k in range(n)]
    marks = [None] * 10 + [42_000.0 + k for k in range(10, n)]
    rows = funding_rows("BTCUSDT", times, rates, marks)
    rows[1500]["fundingRate"] = "abc"
    rows[1501]["fundingRate"] = 0.0001  # a number, not Binance's decimal string
    rows.insert(1600, {"symbol": "BTCUSDT", "fundingRate": "0.0001"})  # no time
    return rows


async def run_backfill(db: Path, ex: FakeExchange, start: int, end: int):
    rest = BinanceRest(ex.rest_base)
    writer = TickWriter(db, flush_interval=0.01)
    await writer.start()
    try:
        return await backfill_funding(rest, writer, ["BTCUSDT", "ETHUSDT"], start, end)
    finally:
        await writer.close()
        await rest.close()


async def test_backfill_pages_validates_and_is_idempotent(tmp_path: Path) -> None:
    n = 2300
    hist = btc_history(n)
    eth = funding_rows("ETHUSDT", [T0 + k * 4 * 3_600_000 for k in range(30)], [1e-4] * 30)
    info = [
        {
            "symbol": "ETHUSDT",
            "adjustedFundingRateCap": "0.02000000",
            "adjustedFundingRateFloor": "-0.02000000",
            "fundingIntervalHours": 4,
            "disclaimer": False,
        },
        {"symbol": "BADUSDT", "fundingIntervalHours": "8"},
    ]
    db = tmp_path / "f.db"
    end = T0 + n * H8
    async with FakeExchange([], funding={"BTCUSDT": hist, "ETHUSDT": eth}, funding_info=info) as ex:
        res = await run_backfill(db, ex, T0, end)
        btc_pages = [p for p in ex.rest_requests if "fundingRate?symbol=BTCUSDT" in p]
        assert len(btc_pages) == 3  # 1000 + 1000 + the rest, paged by startTime
        assert f"limit={FUNDING_LIMIT}" in btc_pages[0]
        assert res.skipped == 3 + 1  # two bad rates, one row without time, one bad info row
        assert res.rows == n - 2 + 30
        assert res.per_symbol == {"BTCUSDT": n - 2, "ETHUSDT": 30}
        assert res.intervals == {"ETHUSDT": 4}

        conn = sqlite3.connect(db)
        ts, rate, mark = load_funding(conn, "BTCUSDT")
        good = [r for r in hist if "fundingTime" in r and isinstance(r["fundingRate"], str)]
        good = [r for r in good if r["fundingRate"] != "abc"]
        assert ts.tolist() == [r["fundingTime"] for r in good]
        assert rate.tolist() == [float(r["fundingRate"]) for r in good]
        assert mark[:10].tolist() == pytest.approx([float("nan")] * 10, nan_ok=True)
        assert mark[10:].tolist() == [float(r["markPrice"]) for r in good[10:]]
        assert funding_intervals(conn, ["BTCUSDT", "ETHUSDT"]) == {"BTCUSDT": 8, "ETHUSDT": 4}
        before = conn.execute("SELECT * FROM funding ORDER BY symbol, funding_ms").fetchall()
        # an archive import stored a settlement without its mark: REST fills it in, and
        # rewrites nothing else (triggers log every row the second run touches)
        conn.executescript(
            """
            CREATE TABLE touched(symbol, funding_ms, op);
            CREATE TRIGGER fi AFTER INSERT ON funding
              BEGIN INSERT INTO touched VALUES (new.symbol, new.funding_ms, 'insert'); END;
            CREATE TRIGGER fu AFTER UPDATE ON funding
              BEGIN INSERT INTO touched VALUES (new.symbol, new.funding_ms, 'update'); END;
            """
        )
        conn.execute(
            "UPDATE funding SET mark_price = NULL WHERE symbol = 'BTCUSDT' AND funding_ms = ?",
            (int(ts[20]),),
        )
        conn.execute("DELETE FROM touched")
        conn.commit()
        conn.close()
        again = await run_backfill(db, ex, T0, end)
        assert again.rows == res.rows
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT * FROM funding ORDER BY symbol, funding_ms").fetchall() == (
            before
        )
        assert conn.execute("SELECT * FROM touched").fetchall() == [
            ("BTCUSDT", int(ts[20]), "update")
        ]
        conn.close()


async def test_backfill_window_and_errors(tmp_path: Path) -> None:
    hist = funding_rows("BTCUSDT", [T0 + k * H8 for k in range(50)], [1e-4] * 50)
    async with FakeExchange([], funding={"BTCUSDT": hist, "ETHUSDT": []}) as ex:
        res = await run_backfill(tmp_path / "w.db", ex, T0 + 10 * H8, T0 + 19 * H8)
        assert res.per_symbol == {"BTCUSDT": 10, "ETHUSDT": 0}
        assert res.intervals == {}
        rest = BinanceRest(ex.rest_base)
        writer = TickWriter(tmp_path / "w.db")
        await writer.start()
        with pytest.raises(RestError, match="Invalid symbol"):
            await backfill_funding(rest, writer, ["NOPEUSDT"], T0, T0 + H8)
        await writer.close()
        await rest.close()
    conn = sqlite3.connect(tmp_path / "w.db")
    ts, _, _ = load_funding(conn, "BTCUSDT")
    assert ts.tolist() == [T0 + k * H8 for k in range(10, 20)]
    conn.close()


async def test_mark_frames_on_the_routed_stream(tmp_path: Path) -> None:
    e0 = 1_765_788_195_000
    marks = [
        FakeMark(
            "BTCUSDT" if k % 2 == 0 else "ETHUSDT",
            e0 + 500 * k,
            f"{89790.1 + k:.8f}" if k % 2 == 0 else f"{3140.2 + k / 10:.8f}",
            f"{89785.3 + k:.8f}" if k % 2 == 0 else f"{3140.9 + k / 10:.8f}",
            "0.00010000" if k % 2 == 0 else "-0.00002531",
            1_765_814_400_000,
        )
        for k in range(20)
    ]
    trades = synthetic_trades(40, start_ms=e0)
    async with FakeExchange(trades, rate=200, marks=marks, mark_rate=100) as ex:
        url = market_stream_url(ex.ws_base, ["BTCUSDT", "ETHUSDT"])
        assert url.endswith(
            "/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade/"
            "btcusdt@markPrice@1s/ethusdt@markPrice@1s"
        )
        got_marks: list[MarkPrice] = []
        recv = int(time.time() * 1000)
        got_ticks: list[Tick] = []
        async with websockets.connect(url) as ws:
            while len(got_marks) < len(marks) or len(got_ticks) < len(trades):
                raw = await asyncio.wait_for(ws.recv(), 10)
                ev = parse_market_frame(raw, recv)
                (got_marks if isinstance(ev, MarkPrice) else got_ticks).append(ev)
    assert [(t.symbol, t.trade_id) for t in got_ticks] == [(t.symbol, t.a) for t in trades]
    assert got_marks == [
        MarkPrice(m.symbol, m.E, float(m.p), float(m.i), float(m.P), float(m.r), m.T, recv_ms=recv)
        for m in marks
    ]
    assert got_marks[1].rate == pytest.approx(-2.531e-5)
    assert orjson.loads(marks[0].frame())["stream"] == "btcusdt@markPrice@1s"


async def test_a_settlement_seen_live_is_fetched_and_stored(tmp_path: Path) -> None:
    """The mark stream's T moves on: FundingState says which settlement passed, and
    store_settlement fetches it; the carry matrix then reads the stored rates."""
    t1 = T0 + 3 * H8
    hist = funding_rows("BTCUSDT", [T0 + k * H8 + (3 if k == 3 else 0) for k in range(5)],
                        [1e-4, 2e-4, 3e-4, 4.5e-4, 5e-4], [None, None, None, 90_000.5, None])  # fmt: skip
    state = FundingState("BTCUSDT", "ETHUSDT")
    assert state.update(MarkPrice("BTCUSDT", t1 - 1000, 1.0, 1.0, None, 4e-4, t1)) is None
    passed = state.update(MarkPrice("BTCUSDT", t1 + 1000, 1.0, 1.0, None, 1e-4, t1 + H8))
    assert passed == t1
    db = tmp_path / "s.db"
    async with FakeExchange([], funding={"BTCUSDT": hist, "ETHUSDT": []}) as ex:
        rest = BinanceRest(ex.rest_base)
        writer = TickWriter(db, flush_interval=0.01)
        await writer.start()
        assert await store_settlement(rest, writer, "BTCUSDT", passed) == 1
        assert await store_settlement(rest, writer, "ETHUSDT", passed) == 0
        await writer.close()
        await rest.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT * FROM funding").fetchall() == [
        ("BTCUSDT", t1 + 3, 4.5e-4, 90_000.5)
    ]
    conn.execute(UPSERT_INTERVAL, ("ETHUSDT", 4, T0))
    conn.execute(UPSERT_MARK, mark_params(MarkPrice("SOLUSDT", T0, 99.0, 99.1, None, -2e-4, T0)))
    conn.commit()
    daily = funding_rates_per_day(conn, ["BTCUSDT", "SOLUSDT", "ETHUSDT"])
    assert daily[:2].tolist() == pytest.approx([4.5e-4 * 3, -2e-4 * 3], rel=1e-15)
    assert np.isnan(daily[2])  # ETH: an interval, but no rate stored
    # a rate too old to be current is left out, not carried on
    settled = t1 + 3  # BTC's last settlement: current for two intervals
    assert funding_rates_per_day(conn, ["BTCUSDT"], settled + 2 * H8)[0] == 4.5e-4 * 3
    assert np.isnan(funding_rates_per_day(conn, ["BTCUSDT"], settled + 2 * H8 + 1)[0])
    # SOL's predicted rate settles at T0: current until one interval after that
    assert funding_rates_per_day(conn, ["SOLUSDT"], T0 + H8)[0] == -2e-4 * 3
    assert np.isnan(funding_rates_per_day(conn, ["SOLUSDT"], T0 + H8 + 1)[0])
    conn.close()
