"""The feed's batched read (`take_ready`), the writer's queue counted in trades and its
multi-row inserts."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from pathlib import Path

import pytest
from websockets.frames import Frame, Opcode

from quanttui.feed.binance import take_ready
from quanttui.model import Tick
from quanttui.store.writer import ROWS_PER_INSERT, TickWriter


def text(payload: bytes, fin: bool = True) -> Frame:
    return Frame(Opcode.TEXT, payload, fin=fin)


def test_take_ready_moves_whole_messages_as_recv_returns_them() -> None:
    ready = deque([text(b'{"a":1}'), Frame(Opcode.BINARY, bytearray(b"\x01\x02")), text(b"{}")])
    batch: list[str | bytes] = ["first"]
    take_ready(ready, batch)
    assert batch == ["first", '{"a":1}', b"\x01\x02", "{}"]
    assert type(batch[2]) is bytes and not ready


@pytest.mark.parametrize(
    "stop",
    [
        text(b'{"a":', fin=False),  # a fragment: recv() reassembles the message
        Frame(Opcode.CONT, b"1}"),
        text(b"\xff\xfe"),  # not UTF-8: recv() fails the connection, as it always did
    ],
)
def test_take_ready_leaves_what_only_recv_handles(stop: Frame) -> None:
    ready = deque([text(b"{}"), stop, text(b"[]")])
    batch: list[str | bytes] = []
    take_ready(ready, batch)
    assert batch == ["{}"]
    assert list(ready) == [stop, text(b"[]")]


def test_take_ready_stops_at_its_limit() -> None:
    ready = deque(text(b"{}") for _ in range(10))
    batch: list[str | bytes] = ["first"]
    take_ready(ready, batch, limit=4)
    assert len(batch) == 4 and len(ready) == 7


def ticks(n: int) -> list[Tick]:
    return [Tick("BTCUSDT", 1000 + i, 1_765_000_000_000 + i, 1.0, 1.0, False) for i in range(n)]


async def test_writer_queue_is_bounded_in_trades_not_batches(tmp_path: Path) -> None:
    w = TickWriter(tmp_path / "q.db", max_queue=10)
    # not started: nothing drains the queue
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(w.submit_many(ticks(25)), 0.2)
    assert w.queue.qsize() == 10 and w.queue.full()
    with pytest.raises(asyncio.QueueFull):
        w.queue.put_nowait(ticks(1))


async def test_writer_stores_batches_larger_than_its_queue(tmp_path: Path) -> None:
    w = TickWriter(tmp_path / "q.db", max_queue=10)
    await w.start()
    seen = 0

    async def watch() -> None:
        nonlocal seen
        while True:
            seen = max(seen, w.queue.qsize())
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await w.submit_many(ticks(95))
    await w.submit(Tick("ETHUSDT", 1, 1_765_000_000_000, 1.0, 1.0, True))
    assert await w.flush()
    watcher.cancel()
    st = await w.close()
    assert st.stored == 96 and w.received == 96
    assert 0 < seen <= 10


async def test_writer_multi_row_inserts_store_every_row_once(tmp_path: Path) -> None:
    """Whole `ROWS_PER_INSERT` statements and the remainder row by row; duplicates of
    stored rows (a REST fill overlapping the stream) are ignored and not counted."""
    db = tmp_path / "q.db"
    w = TickWriter(db)
    await w.start()
    first = [
        Tick("BTCUSDT", 1000 + i, 1_765_000_000_000 + i, 1.5, 0.25, i % 2 == 0)
        for i in range(ROWS_PER_INSERT * 2 + 37)
    ]
    await w.submit_many(first)
    assert await w.flush()
    await w.submit_many(first[-(ROWS_PER_INSERT + 3) :])
    st = await w.close()
    assert st.stored == len(first) and w.received == len(first) + ROWS_PER_INSERT + 3
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT symbol, trade_id, ts_ms, price, qty, is_buyer_maker FROM ticks ORDER BY 2"
        ).fetchall()
    assert rows == [
        (t.symbol, t.trade_id, t.ts_ms, t.price, t.qty, int(t.is_buyer_maker)) for t in first
    ]
