"""Warm start against the loopback fake exchange serving REST klines and aggTrades."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sqlite3
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from quanttui.analytics.engine import PairAnalytics
from quanttui.analytics.snapshot import run_bars
from quanttui.config import load_config
from quanttui.feed.backfill import Backfill, span_ms
from quanttui.feed.binance import BinanceRest
from quanttui.feed.ingest import Ingestion
from quanttui.store.db import connect
from quanttui.store.queries import load_pair_bars
from quanttui.store.writer import TickWriter
from tests.fakes.exchange import FakeExchange, FakeTrade, Faults
from tests.helpers import exchange_args, spawn, store_ticks

MINUTE = 60_000


AHEAD = 3


def synthetic_klines(symbol: str, end_ms: int, n: int, seed: int) -> list[list]:
    """`n` 1m klines in the REST row format, the last `AHEAD` of them at or after
    `end_ms`'s minute, so a client whose clock has moved on a minute still finds all it
    asks for (it must not store those still open at its own now)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    start = end_ms - end_ms % MINUTE - (n - AHEAD) * MINUTE
    rows = []
    for i, c in enumerate(close):
        o = close[i - 1] if i else c
        t = start + i * MINUTE
        rows.append(
            [
                t,
                f"{o:.6f}",
                f"{max(o, c) * 1.0005:.6f}",
                f"{min(o, c) * 0.9995:.6f}",
                f"{c:.6f}",
                "12.5",
                t + MINUTE - 1,
                "1250.0",
                40,
                "6.0",
                "600.0",
                "0",
            ]
        )
    return rows


def pair_klines(end_ms: int, n: int) -> dict[str, list[list]]:
    x = synthetic_klines("BTCUSDT", end_ms, n, 1)
    y = synthetic_klines("ETHUSDT", end_ms, n, 1)
    rng = np.random.default_rng(2)
    for row in y:  # Y = 0.5 X + noise, so the pair is well posed
        c = 0.5 * float(row[4]) + rng.normal(0, 0.05)
        row[1:5] = [f"{c:.6f}", f"{c * 1.001:.6f}", f"{c * 0.999:.6f}", f"{c:.6f}"]
    return {"BTCUSDT": x, "ETHUSDT": y}


def kline_starts(ex: FakeExchange) -> list[int]:
    return [
        int(parse_qs(urlsplit(p).query)["startTime"][0])
        for p in ex.rest_requests
        if p.startswith("/fapi/v1/klines")
    ]


async def run_backfill(
    ex: FakeExchange, db: Path, timeframe: str, window: int, now: int
) -> Backfill:
    writer = TickWriter(db)
    await writer.start()
    rest = BinanceRest(ex.rest_base)
    try:
        bf = Backfill(
            rest, writer, ["BTCUSDT", "ETHUSDT"], timeframe, span_ms("auto", timeframe, window)
        )
        await bf.run(now)
    finally:
        await rest.close()
        await writer.close()
    return bf


async def test_1m_klines_fill_the_window_then_only_the_missing_minutes(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    db = tmp_path / "k.db"
    async with FakeExchange([], klines=pair_klines(now, 400)) as ex:
        bf = await run_backfill(ex, db, "1m", 60, now)
        assert bf.progress.state == "done"
        need = 2 * 60 + 10
        assert bf.progress.total == 2 * need and bf.progress.done == 2 * need
        assert bf.progress.fetched == {"BTCUSDT": need, "ETHUSDT": need}
        conn = connect(db, readonly=True)
        bars = load_pair_bars(conn, "BTCUSDT", "ETHUSDT", "1m")
        conn.close()
        assert len(bars) == need
        engine = PairAnalytics(60)
        run_bars(engine, bars)
        assert np.isfinite(engine.last.zscore)
        first = len(ex.rest_requests)
        assert first == 2  # one klines request per symbol

        bf2 = await run_backfill(ex, db, "1m", 60, now)
        assert bf2.progress.state == "done" and bf2.progress.rows == 0
        assert len(ex.rest_requests) == first  # nothing missing: nothing fetched

        with sqlite3.connect(db) as c:  # drop 5 minutes in the middle: only they come back
            mid = now - now % MINUTE - 50 * MINUTE
            c.execute(
                "DELETE FROM klines WHERE open_ms >= ? AND open_ms < ?", (mid, mid + 5 * MINUTE)
            )
        bf3 = await run_backfill(ex, db, "1m", 60, now)
        assert bf3.progress.fetched == {"BTCUSDT": 5, "ETHUSDT": 5}
        assert kline_starts(ex)[-2:] == [mid, mid]


async def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    faults = Faults(rest_429=1, retry_after="1")
    async with FakeExchange([], klines=pair_klines(now, 200), faults=faults) as ex:
        t = time.monotonic()
        bf = await run_backfill(ex, tmp_path / "r.db", "1m", 30, now)
        elapsed = time.monotonic() - t
    assert bf.progress.state == "done" and bf.progress.fetched == {"BTCUSDT": 70, "ETHUSDT": 70}
    assert elapsed >= 1.0
    assert len(ex.rest_requests) == 3  # the throttled one, its retry, the second symbol


async def test_offline_backfill_is_skipped_with_the_reason(tmp_path: Path) -> None:
    writer = TickWriter(tmp_path / "o.db")
    await writer.start()
    rest = BinanceRest("http://127.0.0.1:1")
    bf = Backfill(rest, writer, ["BTCUSDT", "ETHUSDT"], "1m", span_ms("auto", "1m", 60))
    await bf.run(int(time.time() * 1000))
    await rest.close()
    await writer.close()
    assert bf.progress.state == "skipped" and bf.progress.detail.startswith("offline:")


def history_and_live(now: int, seconds: int) -> tuple[list[FakeTrade], list[FakeTrade]]:
    """`seconds` of past trades (10/s per leg) and 3 s of live ones after them."""
    hist, live = [], []
    ids = {"BTCUSDT": 10_000, "ETHUSDT": 90_000}
    for k in range(seconds * 10 + 3 * 10):
        t = now - seconds * 1000 + k * 100
        for sym, base in (("BTCUSDT", 90000.0), ("ETHUSDT", 3000.0)):
            ids[sym] += 1
            price = base * (1 + 0.001 * np.sin(k / (11.0 if sym == "BTCUSDT" else 13.0)))
            tr = FakeTrade(sym, ids[sym], f"{price:.2f}", "0.01", t, k % 2 == 0)
            (hist if k < seconds * 10 else live).append(tr)
    return hist, live


async def test_joined_series_equals_a_run_with_all_the_data(tmp_path: Path) -> None:
    """Backfilled ticks (paged by id over REST) + live ticks (websocket) in one database
    give exactly the bars and analytics of a database that held every trade."""
    now = int(time.time() * 1000)
    hist, live = history_and_live(now, 150)
    db = tmp_path / "joined.db"
    cfg = load_config(use_user_file=False, overrides={("storage", "db"): str(db)})
    async with FakeExchange(live, rate=20, restamp=True, history=hist) as ex:
        cfg = dataclasses.replace(
            cfg, feed=dataclasses.replace(cfg.feed, ws_url=ex.ws_base, rest_url=ex.rest_base)
        )
        ing = Ingestion(cfg, ["BTCUSDT", "ETHUSDT"])
        await ing.start()
        ing.start_backfill("1s", 60)
        bf = await ing.wait_backfill()
        await asyncio.wait_for(ex.done.wait(), 30)
        await asyncio.sleep(0.5)
        await ing.stop()
        everything = list(ex.produced)
    assert bf.state == "done" and bf.requests >= 4  # paged: 1,000 per page
    reference = tmp_path / "all.db"
    from quanttui.model import Tick

    store_ticks(
        reference,
        [Tick(t.symbol, t.a, t.T, float(t.p), float(t.q), t.m) for t in everything],
    ).close()
    lo = now - span_ms("auto", "1s", 60) + 1000  # inside the span the backfill fetched
    q = "SELECT symbol, trade_id, ts_ms, price FROM ticks WHERE ts_ms >= ? ORDER BY 1, 2"
    with sqlite3.connect(db) as a, sqlite3.connect(reference) as b:
        got, want = a.execute(q, (lo,)).fetchall(), b.execute(q, (lo,)).fetchall()
    assert got == want and len(got) > 2 * 130 * 10
    series = []
    for path in (db, reference):
        conn = connect(path, readonly=True)
        bars = load_pair_bars(conn, "BTCUSDT", "ETHUSDT", "1s", start_ms=lo - lo % 1000 + 1000)
        conn.close()
        e = PairAnalytics(60, history=len(bars))
        run_bars(e, bars)
        series.append([(m.ts_ms, m.x, m.y, m.zscore) for m in e.history])
    assert series[0] == series[1] and len(series[0]) > 130


def stored_klines(db: Path) -> int:
    """Read-only, and 0 while the recorder has not created its schema yet."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute("SELECT count(*) FROM klines").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


async def test_record_backfills_at_launch(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[analytics]\ntimeframe = "1m"\nwindow = 30\n')
    db = tmp_path / "rec.db"
    async with FakeExchange([], klines=pair_klines(now, 200)) as ex:
        proc = await spawn(
            "record",
            "BTCUSDT",
            "ETHUSDT",
            "--config",
            str(cfg),
            "--db",
            str(db),
            *exchange_args(ex),
        )
        end = time.monotonic() + 20
        while time.monotonic() < end:
            await asyncio.sleep(0.2)
            if stored_klines(db) == 140:
                break
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert "backfill done: 140 rows" in err.decode(), err.decode()[:600]
