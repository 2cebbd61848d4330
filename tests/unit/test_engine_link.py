"""The frames between the app and its engine process (`quanttui.engine.process`)."""

from __future__ import annotations

import os
import struct
import threading
from array import array

import pytest

from quanttui.engine.events import AlertEvent, SnapshotEvent
from quanttui.engine.process import MAX_FRAME, read_frame, write_frame
from quanttui.model import Alert, Series, Snapshot


def pipe_roundtrip(objs: list[object]) -> list[object]:
    r, w = os.pipe()

    def send() -> None:
        for obj in objs:
            write_frame(w, obj)
        os.close(w)

    t = threading.Thread(target=send)
    t.start()
    got = []
    while (frame := read_frame(r)) is not None:
        got.append(frame)
    t.join()
    os.close(r)
    return got


def test_events_larger_than_a_pipe_cross_whole_and_in_order() -> None:
    n = 5_000  # a snapshot's series: 80 KB, more than the pipe's 64 KB
    series = Series(ts_ms=array("q", range(n)), zscore=array("d", (i / 7 for i in range(n))))
    snap = Snapshot("BTCUSDT", "ETHUSDT", "1s", 60, "ols", n, time_ms=n, zscore=1.5, series=series)
    alert = Alert(123, "BTCUSDT/ETHUSDT", "|z| > 2", "zscore", 2.5, 2.0)
    objs: list[object] = [("events", [AlertEvent(alert)], [SnapshotEvent("k", snap)])] * 3
    objs.append(("reply", 7, True, "k"))
    assert pipe_roundtrip(objs) == objs


def test_a_link_cut_mid_frame_reads_as_its_end() -> None:
    r, w = os.pipe()
    os.write(w, struct.pack(">I", 1000) + b"\x80" * 10)
    os.close(w)
    assert read_frame(r) is None
    os.close(r)


def test_a_frame_longer_than_the_bound_is_refused() -> None:
    r, w = os.pipe()
    os.write(w, struct.pack(">I", MAX_FRAME + 1))
    os.close(w)
    with pytest.raises(ValueError, match="frame of"):
        read_frame(r)
    os.close(r)
