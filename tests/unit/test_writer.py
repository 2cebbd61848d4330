"""The single writer against a real SQLite file whose writes fail for real: another
connection holds the write lock (`BEGIN EXCLUSIVE`), or the file is deleted under it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from quanttui.model import Tick
from quanttui.store.db import StoreError, connect
from quanttui.store.writer import TickWriter, WriterStatus, describe


def ticks(n: int, first_id: int = 1001) -> list[Tick]:
    """`n` trades alternating BTCUSDT/ETHUSDT, ids consecutive per symbol."""
    out = []
    for i in range(n):
        sym = "BTCUSDT" if i % 2 == 0 else "ETHUSDT"
        out.append(Tick(sym, first_id + i // 2, 1_765_000_000_000 + i, 90_000.0 + i, 0.01, False))
    return out


def stored(db: Path) -> set[tuple[str, int]]:
    with sqlite3.connect(db) as c:
        return set(c.execute("SELECT symbol, trade_id FROM ticks"))


def gaps(db: Path) -> list[tuple[str, int, int, str]]:
    with sqlite3.connect(db) as c:
        return c.execute(
            "SELECT symbol, first_id, last_id, status FROM gaps ORDER BY symbol, first_id"
        ).fetchall()


async def until(pred, limit_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def hold_lock(db: Path) -> sqlite3.Connection:
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("BEGIN EXCLUSIVE")
    return c


async def test_locked_database_keeps_trades_and_recovers_losslessly(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    events: list[WriterStatus] = []
    w = TickWriter(db, 0.05, busy_timeout=0.05, on_error=events.append)
    await w.start()
    first = ticks(40)
    await w.submit_many(first)
    assert await w.flush() is True
    blocker = hold_lock(db)
    held = ticks(300, first_id=2001)
    await w.submit_many(held)
    assert await w.flush() is False
    await until(lambda: w.error is not None)
    assert w.error == "database locked" and "locked" in (w.error_detail or "")
    assert w.unsaved == 300 and w.dropped == 0
    assert [e.error for e in events] == ["database locked"]
    assert stored(db) == {(t.symbol, t.trade_id) for t in first}
    blocker.rollback()
    blocker.close()
    await until(lambda: w.error is None)
    assert [e.error for e in events] == ["database locked", None]
    assert events[-1].unsaved == 0
    st = await w.close()
    assert st.lost == 0 and st.error is None
    assert stored(db) == {(t.symbol, t.trade_id) for t in first + held}
    assert gaps(db) == []


async def test_retry_buffer_is_bounded_and_drops_become_open_gaps(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    connect(db).close()
    dropped: list[tuple[str, int, int]] = []
    w = TickWriter(
        db, 0.05, max_unsaved=100, busy_timeout=0.05, on_dropped=lambda *r: dropped.append(r)
    )
    await w.start()
    blocker = hold_lock(db)
    sent = ticks(250)
    await w.submit_many(sent)
    await w.flush()
    await until(lambda: w.error is not None and w.unsaved == 100)
    assert w.dropped == 150
    # the oldest 150 went: ids 1001..1075 of each symbol; the newest 100 are held
    assert w.lost_ranges() == {"BTCUSDT": [(1001, 1125)], "ETHUSDT": [(1001, 1125)]}
    blocker.rollback()
    blocker.close()
    await until(lambda: w.error is None)
    st = await w.close()
    assert (st.unsaved, st.dropped, st.gapped, st.lost) == (0, 150, 150, 150)
    assert stored(db) == {(t.symbol, t.trade_id) for t in sent[150:]}
    assert gaps(db) == [("BTCUSDT", 1001, 1075, "open"), ("ETHUSDT", 1001, 1075, "open")]
    assert sorted(dropped) == [("BTCUSDT", 1001, 1075), ("ETHUSDT", 1001, 1075)]
    assert w.gaps_recorded == 2


async def test_statements_are_held_too_and_a_malformed_one_is_skipped(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    w = TickWriter(db, 0.05, busy_timeout=0.05)
    await w.start()
    blocker = hold_lock(db)
    alert = "INSERT INTO alerts(ts_ms, pair, rule, metric, value, threshold) VALUES (?,?,?,?,?,?)"
    await w.execute(alert, (1, "BTCUSDT/ETHUSDT", "z > 2", "z", 2.5, 2.0))
    await w.execute("INSERT INTO alerts(ts_ms) VALUES (?, ?)", (1, 2))
    await w.flush()
    await until(lambda: w.error is not None)
    blocker.rollback()
    blocker.close()
    await until(lambda: w.error is None)
    await w.close()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT rule, value FROM alerts").fetchall() == [("z > 2", 2.5)]
    assert w.rejected == 1


async def test_deleted_file_is_reported_and_recreated(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    events: list[WriterStatus] = []
    w = TickWriter(db, 0.05, on_error=events.append)
    await w.start()
    await w.submit_many(ticks(10))
    assert await w.flush() is True
    db.unlink()
    later = ticks(20, first_id=5001)
    await w.submit_many(later)
    await w.flush()
    await until(lambda: len(events) == 2)
    assert [e.error for e in events] == ["database file moved or deleted", None]
    st = await w.close()
    assert st.lost == 0
    assert stored(db) == {(t.symbol, t.trade_id) for t in later}


async def test_close_ends_within_its_deadline_while_the_lock_is_held(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    w = TickWriter(db, 0.05, busy_timeout=30.0)
    await w.start()
    blocker = hold_lock(db)
    sent = ticks(60)
    await w.submit_many(sent)
    await asyncio.sleep(0.2)  # the writer's thread is now in SQLite's 30 s busy wait
    t0 = time.monotonic()
    st = await w.close(within=1.0)
    elapsed = time.monotonic() - t0
    blocker.rollback()
    blocker.close()
    assert elapsed < 1.5
    assert st.unsaved == 60 and st.lost == 60
    assert w.lost_ranges() == {"BTCUSDT": [(1001, 1030)], "ETHUSDT": [(1001, 1030)]}


def test_a_stuck_database_thread_does_not_block_exit(tmp_path: Path) -> None:
    """aiosqlite's non-daemon thread kept the interpreter alive; ours must not. A second
    connection of the same process holds the lock, so the writer's thread sits in a 60 s
    busy wait when the loop ends."""
    db = tmp_path / "w.db"
    script = textwrap.dedent(
        f"""
        import asyncio, sqlite3
        from quanttui.model import Tick
        from quanttui.store.writer import TickWriter

        async def main():
            w = TickWriter({str(db)!r}, 0.05, busy_timeout=60.0)
            await w.start()
            blocker = sqlite3.connect({str(db)!r}, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            await w.submit(Tick("BTCUSDT", 1, 1, 1.0, 1.0, False))
            await asyncio.sleep(0.3)
            st = await w.close(within=0.5)
            print("unsaved", st.unsaved, flush=True)

        asyncio.run(main())
        """
    )
    t0 = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "unsaved 1"
    assert proc.stderr == ""
    assert time.monotonic() - t0 < 10


def test_locked_file_is_refused_at_start_up(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    connect(db).close()
    blocker = hold_lock(db)
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="database is locked by another writer"):
        TickWriter(db)
    assert time.monotonic() - t0 < 5
    blocker.rollback()
    blocker.close()
    TickWriter(db)


def test_reasons_name_the_failure() -> None:
    full = sqlite3.connect(":memory:")
    full.execute("CREATE TABLE t(x)")
    full.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as exc:
        full.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 100)
    assert describe(exc.value) == ("disk full", "database or disk is full")


async def test_a_burst_of_statements_is_not_bounded_while_healthy(tmp_path: Path) -> None:
    """The retry bound on other rows (20,000) applies to a failing database only: a warm
    start may queue more kline rows than that between two turns of the writer."""
    db = tmp_path / "w.db"
    w = TickWriter(db, 0.05)
    await w.start()
    sql = "INSERT INTO alerts(ts_ms, pair, rule, metric, value, threshold) VALUES (?,?,?,?,?,?)"
    for k in range(25):
        await w.execute(sql, [(k * 1000 + i, "X/Y", "r", "z", 1.0, 2.0) for i in range(1000)], True)
    assert await w.flush() is True
    await w.close()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM alerts").fetchone()[0] == 25_000
    assert w.dropped_other == 0
