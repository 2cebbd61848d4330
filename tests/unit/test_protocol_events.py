"""`encode_events`: the server's events frame, each event encoded once for every view."""

from __future__ import annotations

import pytest

from quanttui.engine.events import AlertEvent, FeedState
from quanttui.model import Alert
from quanttui.server import protocol as P


def events(n: int) -> list:
    out: list = []
    for i in range(n):
        if i % 2:
            out.append(FeedState("live", f"detail {i}"))
        else:
            out.append(AlertEvent(Alert(i, "X/Y", "abs(z) > 2", "zscore", 2.5 + i, 2.0)))
    return out


@pytest.mark.parametrize("n", [0, 1, 15, 16, 300, 70_000])
def test_events_frame_is_byte_for_byte_the_plain_encoding(n: int) -> None:
    batch = events(n)
    frame = P.encode_events(batch)
    assert frame == P.encode(["events", batch])
    assert P.decode(frame[4:]) == ["events", batch]


def test_an_event_sent_to_several_views_is_encoded_once() -> None:
    batch = events(60)
    first = P.encode_events(batch)
    parts = [P._packed_event(e) for e in batch]
    again = [P._packed_event(e) for e in batch]
    assert all(a is b for a, b in zip(parts, again, strict=True))
    assert P.encode_events(batch) == first
    # an equal but distinct object is encoded on its own, never given another's bytes
    twin = events(1)[0]
    assert P._packed_event(twin) is not P._packed_event(batch[0])
    assert P._packed_event(twin) == P._packed_event(batch[0])


def test_the_shared_encodings_are_bounded() -> None:
    for e in events(3 * P.SHARED_EVENTS):
        P._packed_event(e)
    assert len(P._shared) == P.SHARED_EVENTS
