"""The feed's batched read (`take_ready`)."""

from __future__ import annotations

from collections import deque

import pytest
from websockets.frames import Frame, Opcode

from quanttui.feed.binance import take_ready


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
