"""Ingestion against the loopback fake exchange: real websockets, real SQLite."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from quanttui.config import load_config
from quanttui.feed.binance import BinanceRest, SymbolError, check_symbols, ready_frames
from quanttui.feed.ingest import Ingestion
from quanttui.feed.recordings import read_ndjson
from tests.fakes.exchange import (
    FakeExchange,
    FakeMark,
    Faults,
    synthetic_trades,
    trades_from_ticks,
)
from tests.helpers import exchange_args, spawn


def cfg_for(ex: FakeExchange, db: Path, **feed):
    cfg = load_config(
        use_user_file=False,
        overrides={
            ("feed", "ws_url"): ex.ws_base,
            ("feed", "rest_url"): ex.rest_base,
            ("storage", "db"): str(db),
        },
    )
    f = dataclasses.replace(cfg.feed, reconnect_base_s=0.02, reconnect_max_s=0.2, **feed)
    return dataclasses.replace(cfg, feed=f)


def stored(db: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT symbol, trade_id FROM ticks").fetchall()


async def wait_for(pred, limit_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def run_session(ex: FakeExchange, db: Path, **feed) -> Ingestion:
    ing = Ingestion(cfg_for(ex, db, **feed), ["BTCUSDT", "ETHUSDT"])
    await ing.start()
    await asyncio.wait_for(ex.done.wait(), 30)
    want = ex.produced_ids()
    await wait_for(lambda: ing.feed.stats.ticks >= len(want))
    await ing.stop()
    return ing


async def test_every_trade_exactly_once_across_disconnects(tmp_path: Path) -> None:
    trades = synthetic_trades(6000)
    db = tmp_path / "q.db"
    async with FakeExchange(
        trades, rate=3000, faults=Faults(disconnect_every=300, max_disconnects=12)
    ) as ex:
        ing = await run_session(ex, db)
    assert ex.disconnects >= 10
    assert ing.feed.stats.reconnects >= 10
    rows = stored(db)
    assert len(rows) == len(set(rows)) == len(trades)
    assert set(rows) == ex.produced_ids()
    assert ing.feed.stats.gaps_filled >= 1 and ing.feed.stats.backfilled > 0
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM gaps WHERE status='open'").fetchone()[0] == 0


async def test_malformed_frames_do_not_stop_ingestion(tmp_path: Path) -> None:
    trades = synthetic_trades(1000)
    db = tmp_path / "q.db"
    async with FakeExchange(trades, rate=None, faults=Faults(malformed_every=50)) as ex:
        ing = await run_session(ex, db)
    assert sum(ing.feed.stats.malformed.values()) >= 2 * (1000 // 50) - 2
    assert ing.feed.stats.malformed["not JSON"] >= 19
    assert len(stored(db)) == 1000


async def test_a_burst_is_read_in_batches_and_stored_once(tmp_path: Path) -> None:
    """A burst with malformed frames, mark prices between the trades and disconnects:
    the feed takes the frames a read brought in one go (`take_ready`), and every trade is
    handed on and stored once, every bad frame counted."""
    trades = synthetic_trades(20_000, start_ms=1_765_788_195_000)
    marks = [
        FakeMark(s, 1_765_788_195_000 + k, "90000.0", "90001.0", "0.00010000", 1_765_814_400_000)
        for k in range(40)
        for s in ("BTCUSDT", "ETHUSDT")
    ]
    db = tmp_path / "q.db"
    faults = Faults(malformed_every=500, disconnect_every=7000, max_disconnects=2)
    seen: dict[str, list[int]] = {"BTCUSDT": [], "ETHUSDT": []}
    batched = []

    def on_ticks(ticks) -> None:
        for t in ticks:
            seen[t.symbol].append(t.trade_id)
        ws = ing.feed._ws
        if ws is not None:
            batched.append(ready_frames(ws) is not None)

    async with FakeExchange(trades, rate=None, faults=faults, marks=marks, mark_rate=400) as ex:
        ing = Ingestion(cfg_for(ex, db), ["BTCUSDT", "ETHUSDT"], on_ticks=on_ticks)
        await ing.start()
        await asyncio.wait_for(ex.done.wait(), 30)
        await asyncio.wait_for(ex.marks_done.wait(), 30)
        st = ing.feed.stats
        await wait_for(lambda: st.ticks >= len(trades) and st.marks >= ex.marks_sent)
        await ing.stop()
    assert batched and all(batched)
    assert st.malformed["not JSON"] == st.malformed["bad s"] >= 7000 // 500
    assert st.marks == ex.marks_sent > 0
    assert ex.disconnects >= 1 and st.reconnects == ex.disconnects
    assert st.backfilled > 0
    rows = stored(db)
    assert len(rows) == len(set(rows)) == len(trades)
    assert {(s, a) for s, ids in seen.items() for a in ids} == ex.produced_ids()
    assert sum(map(len, seen.values())) == len(trades)


async def test_stall_triggers_reconnect_and_backfill(tmp_path: Path) -> None:
    trades = synthetic_trades(1500)
    db = tmp_path / "q.db"
    async with FakeExchange(trades, rate=1500, faults=Faults(stall_after=200)) as ex:
        ing = await run_session(ex, db, stale_after_s=0.3)
    assert ex.stalls == 1
    assert ing.feed.stats.stale_reconnects >= 1
    assert ex.connections >= 2
    assert set(stored(db)) == ex.produced_ids()


async def test_unfillable_hole_is_recorded_as_open_gap(tmp_path: Path) -> None:
    trades = synthetic_trades(2000)
    db = tmp_path / "q.db"
    lost = {(t.symbol, t.a) for t in trades[401:405]}  # missed right after the disconnect
    faults = Faults(disconnect_every=400, max_disconnects=1, unfillable=lost)
    async with FakeExchange(trades, rate=1000, faults=faults) as ex:
        ing = Ingestion(cfg_for(ex, db), ["BTCUSDT", "ETHUSDT"])
        await ing.start()
        await asyncio.wait_for(ex.done.wait(), 30)
        await wait_for(
            lambda: ing.feed.stats.gaps_open >= 1 and ing.feed.stats.last_trade_ms >= trades[-2].T
        )
        await ing.stop()
    with sqlite3.connect(db) as c:
        open_gaps = c.execute(
            "SELECT symbol, first_id, last_id FROM gaps WHERE status='open'"
        ).fetchall()
    assert open_gaps
    missing = ex.produced_ids() - set(stored(db))
    assert missing & lost  # the rest of a hole past an unservable id stays open too
    assert all(any(s == g[0] and g[1] <= a <= g[2] for g in open_gaps) for s, a in missing)


async def test_real_recording_replays_through_fake_exchange(
    real_data: Path, tmp_path: Path
) -> None:
    ticks = list(read_ndjson(real_data / "ticks_2025-11-01T09-54-08.557Z.ndjson"))
    trades = trades_from_ticks(ticks)
    assert len(trades) == 993  # this file has no zero rows
    db = tmp_path / "q.db"
    async with FakeExchange(
        trades, rate=None, faults=Faults(disconnect_every=250, max_disconnects=2)
    ) as ex:
        await run_session(ex, db)
    with sqlite3.connect(db) as c:
        got = c.execute(
            "SELECT symbol, count(*), min(price), max(price) FROM ticks GROUP BY symbol ORDER BY 1"
        ).fetchall()
    assert [(g[0], g[1]) for g in got] == [("BTCUSDT", 622), ("ETHUSDT", 371)]
    assert 109_000 < got[0][2] <= got[0][3] < 111_000


async def test_zero_price_events_are_dropped_not_stored_and_leave_no_gap(
    real_data: Path, tmp_path: Path
) -> None:
    """The 98 `"p":"0","q":"0"` events of the 7-minute recording, streamed live with ids
    of their own, go through `drop_empty` (as in a replay): counted, never stored."""
    ticks = list(read_ndjson(real_data / "ticks_2025-12-15T08-50-11.076Z.ndjson"))
    trades = trades_from_ticks(ticks, keep_empty=True)
    assert sum(t.p == "0.0" for t in trades) == 98
    db = tmp_path / "q.db"
    async with FakeExchange(trades, rate=None) as ex:
        ing = Ingestion(cfg_for(ex, db), ["BTCUSDT", "ETHUSDT"])
        await ing.start()
        await asyncio.wait_for(ex.done.wait(), 30)
        st = ing.feed.stats
        await wait_for(lambda: st.ticks + st.empty >= len(trades))
        await ing.stop()
    assert (st.ticks, st.empty, st.gaps_detected) == (19_182, 98, 0)
    with sqlite3.connect(db) as c:
        n, zero = c.execute("SELECT count(*), sum(price <= 0 OR qty <= 0) FROM ticks").fetchone()
    assert (n, zero) == (19_182, 0)


async def test_unknown_symbol_is_refused(tmp_path: Path) -> None:
    async with FakeExchange(
        synthetic_trades(10), symbols={"BTCUSDT": "TRADING", "OLDUSDT": "SETTLING"}
    ) as ex:
        rest = BinanceRest(ex.rest_base)
        with pytest.raises(SymbolError, match="unknown symbol NOPEUSDT"):
            await check_symbols(rest, ["BTCUSDT", "NOPEUSDT"])
        with pytest.raises(SymbolError, match="not trading"):
            await check_symbols(rest, ["OLDUSDT"])
        await rest.close()
        proc = await spawn(
            "record",
            "BTCUSDT",
            "NOPEUSDT",
            "--db",
            str(tmp_path / "r.db"),
            *exchange_args(ex),
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert err.decode().strip().splitlines() == [
        "quanttui: error: unknown symbol NOPEUSDT on " + ex.rest_base + " (not in exchangeInfo)"
    ]


async def test_unreachable_rest_warns_and_carries_on() -> None:
    rest = BinanceRest("http://127.0.0.1:9")
    warning = await check_symbols(rest, ["BTCUSDT"])
    await rest.close()
    assert warning and "could not verify" in warning


async def test_429_retry_after_is_honoured() -> None:
    async with FakeExchange(
        synthetic_trades(10), faults=Faults(rest_429=2, retry_after="0.2")
    ) as ex:
        rest = BinanceRest(ex.rest_base)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await check_symbols(rest, ["BTCUSDT"])
        elapsed = loop.time() - t0
        await rest.close()
    assert rest.throttled == 2
    assert elapsed >= 0.4


async def test_sigterm_mid_stream_loses_nothing_received(tmp_path: Path) -> None:
    trades = synthetic_trades(200_000)
    db = tmp_path / "r.db"
    async with FakeExchange(trades, rate=4000) as ex:
        proc = await spawn(
            "record",
            "BTCUSDT",
            "ETHUSDT",
            "--db",
            str(db),
            *exchange_args(ex),
        )
        await wait_for(lambda: len(ex.produced) > 3000, 30)
        proc.terminate()
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    last = err.decode().strip().splitlines()[-1]
    received = int(last.split("received ")[1].split(" ")[0].replace(",", ""))
    rows = stored(db)
    assert received > 1000
    assert len(rows) == received
    assert set(rows) <= ex.produced_ids()
