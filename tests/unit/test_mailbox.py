"""A view's inbox (`quanttui.engine.mailbox.Mailbox`): coalescing, its bound, and waking."""

from __future__ import annotations

import threading

from quanttui.engine.events import FeedState, SnapshotEvent
from quanttui.engine.mailbox import Mailbox
from quanttui.model import Snapshot


def snap(key: str, bars: int) -> SnapshotEvent:
    x, y = key.split("/")
    return SnapshotEvent(key, Snapshot(x, y, "1s", 60, "ols", bars))


def test_snapshots_coalesce_per_pair_and_ordered_events_are_bounded() -> None:
    box = Mailbox(max_events=3)
    for i in range(5):
        box.put(snap("BTCUSDT/ETHUSDT", i))
        box.put(FeedState(f"s{i}", ""))
    box.put(snap("BTCUSDT/SOLUSDT", 9))
    events, latest = box.drain()
    assert [e.state for e in events] == ["s2", "s3", "s4"]
    assert box.dropped == 2
    assert [(s.pair, s.snapshot.bars) for s in latest] == [
        ("BTCUSDT/ETHUSDT", 4),
        ("BTCUSDT/SOLUSDT", 9),
    ]
    assert len(box) == 0 and box.drain() == ([], [])


def test_a_poke_wakes_a_waiter_and_holds_until_the_next_drain() -> None:
    box = Mailbox()
    assert box.wait(0.01) is False
    woke: list[bool] = []
    waiting = threading.Thread(target=lambda: woke.append(box.wait(30.0)))
    waiting.start()
    box.poke()
    waiting.join(10.0)
    assert woke == [True]
    assert box.wait(0.0) is True  # a poke nobody waited for is not lost
    assert box.drain() == ([], [])
    assert box.wait(0.01) is False


def test_notify_fires_once_per_empty_to_non_empty() -> None:
    calls: list[int] = []
    box = Mailbox(notify=lambda: calls.append(1))
    box.put(FeedState("live", ""))
    box.put(snap("BTCUSDT/ETHUSDT", 1))
    assert len(calls) == 1
    box.drain()
    box.put(FeedState("offline", "x"))
    assert len(calls) == 2
