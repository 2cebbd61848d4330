"""Flat memory: every structure a long-running monitor keeps stays within its stated bound,
and a recompute from the database holds a page of trades, not the whole history.

The real engine, feed object, writer and SQLite file, in-process: 100,000 one-second bars
of a synthetic cointegrated pair go through `BinanceFeed._accept` (the path of every
websocket frame: high-water dedupe, gap detection, the writer, the engine), with ids that
skip every 50 bars (holes for a REST backfill that never runs), rules that fire every few
bars, a rebuild from the database halfway while trades keep coming, and two mailboxes
nobody drains. Then each bounded structure is measured against its bound; the run is
about 160 times longer than `HISTORY`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from pathlib import Path

import numpy as np
import pytest

import quanttui.engine.pair as pair_mod
import quanttui.store.queries as queries
from quanttui.analytics.bars import leg_bars
from quanttui.config import load_config
from quanttui.engine import Engine, Mailbox
from quanttui.engine.alertbook import EMITTED_PER_BAR
from quanttui.engine.core import RATE_SAMPLES
from quanttui.engine.mailbox import MAX_EVENTS
from quanttui.engine.pair import HISTORY
from quanttui.feed.binance import MAX_GAPS_QUEUED, now_ms
from quanttui.feed.recordings import read_ndjson
from quanttui.model import Tick
from quanttui.store.db import connect, prepare
from quanttui.store.writer import INSERT_TICK, PAGE_CACHE_KIB

BARS = 100_000
BATCH_BARS = 500
HOLE_EVERY = 50
W = 60
PENDING_BOUND = 1_000
SMALL_BOX = 500


def bars_of_ticks(t0: int, first: int, n: int, ids: dict[str, int], state: dict) -> list[Tick]:
    """Bars `first .. first+n-1`: one X and one Y trade each, Y cointegrated with X
    (log y = log x + c + u, u an AR(1) with a half-life of 3 bars), ids consecutive per
    symbol except a skipped id in X every `HOLE_EVERY` bars."""
    rng = state["rng"]
    out = []
    for k in range(first, first + n):
        state["lx"] += rng.gauss(0.0, 3e-4)
        state["u"] = 0.8 * state["u"] + rng.gauss(0.0, 2e-4)
        ts = t0 + k * 1000
        ids["BTCUSDT"] += 2 if k % HOLE_EVERY == HOLE_EVERY - 1 else 1
        ids["ETHUSDT"] += 1
        x = math.exp(state["lx"])
        y = math.exp(state["lx"] + math.log(3100 / 90000) + state["u"])
        out.append(Tick("BTCUSDT", ids["BTCUSDT"], ts + 100, x, 0.01, False))
        out.append(Tick("ETHUSDT", ids["ETHUSDT"], ts + 200, y, 0.01, True))
    return out


async def test_every_bounded_structure_holds_its_bound_over_100k_bars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pair_mod, "MAX_PENDING", PENDING_BOUND)
    cfg = load_config(
        use_user_file=False,
        overrides={
            ("storage", "db"): str(tmp_path / "b.db"),
            ("feed", "ws_url"): "ws://127.0.0.1:9/market",
            ("feed", "rest_url"): "http://127.0.0.1:9",
            ("analytics", "window"): W,
            ("alerts", "cooldown_s"): 0.0,
        },
    )
    rules = ["zscore > 0.5", "zscore < -0.5", "zscore > 1", "zscore < -1"]
    engine = Engine(cfg, [("BTCUSDT", "ETHUSDT")], rules=rules, analyse=False)
    small = engine.subscribe(Mailbox(max_events=SMALL_BOX))
    full = engine.subscribe(Mailbox())
    engine.loop = asyncio.get_running_loop()
    t0 = now_ms() - BARS * 1000
    t0 -= t0 % 1000
    clock = {"ms": t0}
    engine.now = lambda: clock["ms"]  # the feed's clock, as a replay's is
    ingestion = engine.feed
    feed, writer = ingestion.feed, ingestion.writer
    await writer.start()
    mon = engine.pairs["BTCUSDT/ETHUSDT"]
    await engine.rebuild(mon, new_params=True)
    assert mon.live is not None

    ids = {"BTCUSDT": 1000, "ETHUSDT": 1000}
    state = {"rng": random.Random(7), "lx": math.log(90000.0), "u": 0.0}
    rebuild: asyncio.Task | None = None
    pending_seen = 0
    writer_seen = 0
    try:
        for first in range(0, BARS + 1, BATCH_BARS):
            if first == BARS // 2:
                rebuild = asyncio.create_task(engine.rebuild(mon))
                await asyncio.sleep(0)
            if first == 3 * BARS // 4:
                # trades past the pending bound were dropped from memory: the rebuild
                # asked for a resync, which (run here as the engine's clock would) reloads
                # them from the file
                assert rebuild is not None
                await rebuild
                dropped_asked_resync = pending_seen == PENDING_BOUND
                assert mon.resync.pending == dropped_asked_resync
                if dropped_asked_resync:
                    mon.resync._due = None
                    await engine.rebuild(mon)
            batch = bars_of_ticks(t0, first, BATCH_BARS, ids, state)
            await feed._accept(batch)
            clock["ms"] = batch[-1].ts_ms
            pending_seen = max(pending_seen, len(mon.pending))
            writer_seen = max(writer_seen, len(writer._pending) + writer.queue.qsize())
        assert await writer.flush()
        cache = await writer._db.call(
            lambda: writer._conn.execute("PRAGMA cache_size").fetchone()[0]
        )
        for _ in range(5):
            await asyncio.sleep(0)
    finally:
        await writer.close()

    live = mon.live
    assert live is not None
    e = live.engine
    # the run is far longer than every bound
    assert e.bars >= BARS
    assert engine.alerts_fired > max(EMITTED_PER_BAR * HISTORY, MAX_EVENTS)
    assert engine.recomputes == 1 + dropped_asked_resync

    # analytics: bar history, the windows the stationarity tests read, the rolling rings
    assert len(e.history) == HISTORY
    assert len(e.window_x) == len(e.window_y) == len(e.window_spread) == W
    for ring in (e._fit, e._z._spreads, e._ret):
        assert len(ring._xs) == len(ring._ys) == W
    assert len(e._z._ar._xs) == W - 1
    snap = mon.snapshot
    assert snap is not None and len(snap.series.ts_ms) == HISTORY
    for f in dataclasses.fields(snap.series):
        assert len(getattr(snap.series, f.name)) == HISTORY

    # alerts: checkpoints and the alerts a resync may withdraw
    book = mon.book
    assert len(book.checkpoints) == HISTORY
    assert book.emitted.maxlen == EMITTED_PER_BAR * HISTORY
    assert len(book.emitted) == EMITTED_PER_BAR * HISTORY

    # the trades buffered while the pair was rebuilt, and the seam cleared after it
    assert 0 < pending_seen <= PENDING_BOUND
    assert mon.pending == []

    # mailboxes that nobody drains: ordered events capped, snapshots coalesced
    assert len(small._events) == SMALL_BOX and small.dropped > 0
    assert len(full._events) == MAX_EVENTS and full.dropped > 0
    assert len(small._snapshots) <= 2 and len(full._snapshots) <= 2

    # the engine's own bookkeeping
    assert set(engine.last_rx) == {"BTCUSDT", "ETHUSDT"}
    assert engine._rate.maxlen == RATE_SAMPLES
    assert len(engine._tasks) <= 2

    # the feed: one high-water mark per symbol, the gap queue at its bound, the rest open
    holes = BARS // HOLE_EVERY
    assert set(feed.hw) == {"BTCUSDT", "ETHUSDT"}
    assert feed.stats.gaps_detected >= holes
    assert feed._gaps.qsize() == MAX_GAPS_QUEUED
    assert feed.stats.gaps_open == feed.stats.gaps_detected - MAX_GAPS_QUEUED

    # the writer: its queue and buffers drained, SQLite's page cache as stated
    assert writer_seen <= 2 * writer.queue.maxsize  # the queue and the batch in a commit
    assert len(writer._pending) == 0 and len(writer._stmts) == 0 and not writer._runs
    assert cache == -PAGE_CACHE_KIB
    conn = connect(tmp_path / "b.db", readonly=True)
    try:
        open_gaps = conn.execute("SELECT count(*) FROM gaps WHERE status = 'open'").fetchone()[0]
        stored = conn.execute("SELECT count(*) FROM ticks").fetchone()[0]
    finally:
        conn.close()
    assert open_gaps == feed.stats.gaps_open
    assert stored == 2 * (BARS + BATCH_BARS)


def store(path: Path, ticks: list[Tick]) -> Path:
    prepare(path)
    conn = connect(path)
    rows = [(t.symbol, t.trade_id, t.ts_ms, t.price, t.qty, int(t.is_buyer_maker)) for t in ticks]
    conn.executemany(INSERT_TICK, rows)
    conn.commit()
    conn.close()
    return path


def same(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)


@pytest.mark.parametrize("page", [3, 1000, 10**6])
def test_paged_leg_bars_equal_the_whole_leg_bit_for_bit(
    real_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    """The real recording: several trades per millisecond, Binance's zero rows, 1s buckets
    of a few to dozens of trades, so pages split buckets everywhere."""
    ticks = list(read_ndjson(real_data / "ticks_2025-12-15T08-50-11.076Z.ndjson"))
    db = store(tmp_path / "r.db", ticks)
    monkeypatch.setattr(queries, "PAGE_ROWS", page)
    conn = connect(db, readonly=True)
    try:
        for sym in ("BTCUSDT", "ETHUSDT"):
            for tf in (1000, 60_000):
                whole = leg_bars(*queries.load_leg(conn, sym), tf)
                assert len(whole.ts_ms) > 5
                assert same(queries.leg_bars_paged(conn, sym, tf), whole)
            lo, hi = ticks[100].ts_ms, ticks[-100].ts_ms
            whole = leg_bars(*queries.load_leg(conn, sym, lo, hi), 1000)
            assert same(queries.leg_bars_paged(conn, sym, 1000, lo, hi), whole)
    finally:
        conn.close()


def test_paged_leg_bars_read_whole_when_ids_run_against_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids out of time order across a page boundary: the stable sort by time of the whole
    leg is not the pages' concatenation, so the leg is read whole, with the same result."""
    t0 = 1_765_000_000_000
    ticks = [Tick("BTCUSDT", i, t0 + 400 * i, 100.0 + i, 1.0, False) for i in range(1, 51)]
    ticks += [Tick("BTCUSDT", i, t0 + 400 * (i - 60), 200.0 + i, 2.0, False) for i in range(51, 61)]
    db = store(tmp_path / "o.db", ticks)
    monkeypatch.setattr(queries, "PAGE_ROWS", 50)
    calls = []
    real_load = queries.load_leg
    monkeypatch.setattr(queries, "load_leg", lambda *a: calls.append(a) or real_load(*a))
    conn = connect(db, readonly=True)
    try:
        whole = leg_bars(*real_load(conn, "BTCUSDT"), 1000)
        assert same(queries.leg_bars_paged(conn, "BTCUSDT", 1000), whole)
    finally:
        conn.close()
    assert len(calls) == 1
    assert whole.ts_ms[0] == t0 - 4000 and whole.open[0] == 251.0  # the late ids come first


def test_a_recompute_holds_a_page_of_trades_not_the_history(tmp_path: Path) -> None:
    """tracemalloc's peak while 400,000 stored trades become bars: paged, a small fraction
    of reading them whole (about 110 MB per million as rows), and no more than a few pages."""
    import tracemalloc

    t0 = 1_765_000_000_000
    n = 200_000
    ticks = [
        Tick(s, i, t0 + i * 5, p + (i % 13) * 0.5, 0.01, False)
        for i in range(n)
        for s, p in (("BTCUSDT", 90000.0), ("ETHUSDT", 3100.0))
    ]
    db = store(tmp_path / "m.db", ticks)
    del ticks
    conn = connect(db, readonly=True)
    try:
        peaks = {}
        for name, load in (
            ("whole", lambda: leg_bars(*queries.load_leg(conn, "BTCUSDT"), 1000)),
            ("paged", lambda: queries.load_pair_bars(conn, "BTCUSDT", "ETHUSDT", "1s")),
        ):
            tracemalloc.start()
            bars = load()
            peaks[name] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert len(bars.ts_ms) == 1000
    finally:
        conn.close()
    assert peaks["whole"] > 20e6  # one leg read whole: 200,000 rows
    assert peaks["paged"] < 5e6  # both legs, PAGE_ROWS (10,000) rows a page
