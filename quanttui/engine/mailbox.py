"""A view's inbox: the engine puts, the view drains, neither waits for the other.

The engine runs on its own thread (see `quanttui.engine.runner`), so a view that stops
draining (a terminal that stalled over SSH, a pipe nobody reads) must never hold it up,
and must not make memory grow without bound either:

* snapshots coalesce: only the latest per pair is kept, since each one carries every
  metric and the chart series; so does the status;
* every other event (alerts, withdrawals, feed state, ...) is kept in order in a deque of
  at most `max_events`; past that the oldest are dropped and counted in `dropped` (the
  alerts are in the database all the same);
* `notify` is called once when the box goes from empty to non-empty, from the engine's
  thread; it must only schedule a wake-up (e.g. `loop.call_soon_threadsafe`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from quanttui.engine.events import BasketSnapshotEvent, Event, SnapshotEvent, Status

MAX_EVENTS = 10_000
"""Ordered events a mailbox holds for a view that does not drain it (a few MB at most);
snapshots and the status are not counted: one of each per pair is kept."""


class Mailbox:
    def __init__(
        self, notify: Callable[[], None] | None = None, max_events: int = MAX_EVENTS
    ) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._events: deque[Event] = deque()
        self._snapshots: dict[str, SnapshotEvent | BasketSnapshotEvent | Status] = {}
        self._max = max_events
        self._armed = True
        self._poked = False
        self.notify = notify
        self.dropped = 0

    def put(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, SnapshotEvent | BasketSnapshotEvent):
                self._snapshots[event.pair] = event
            elif isinstance(event, Status):
                self._snapshots[""] = event
            else:
                if len(self._events) >= self._max:
                    self._events.popleft()
                    self.dropped += 1
                self._events.append(event)
            wake = self._armed
            self._armed = False
            self._ready.notify_all()
        if wake and self.notify is not None:
            self.notify()

    def drain(self) -> tuple[list[Event], list[SnapshotEvent | BasketSnapshotEvent | Status]]:
        """Everything queued: the ordered events, then the latest snapshot per pair and
        the latest status."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
            snaps = list(self._snapshots.values())
            self._snapshots.clear()
            self._armed = True
            self._poked = False
        return events, snaps

    def poke(self) -> None:
        """Wake `wait` (now, or at its next call if nobody waits) without queueing
        anything, until the next `drain`: for a consumer that also waits on work of its
        own (the engine process's replies, `quanttui.engine.child`)."""
        with self._lock:
            self._poked = True
            self._ready.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until something is queued or poked (True) or `timeout` passes (False)."""
        with self._lock:
            return bool(
                self._ready.wait_for(
                    lambda: self._poked or self._events or self._snapshots, timeout
                )
            )

    def __len__(self) -> int:
        with self._lock:
            return len(self._events) + len(self._snapshots)
