"""When a recompute after late trades runs (`ResyncTimer`), on a clock the test moves."""

from __future__ import annotations

import pytest

from quanttui.engine import pair
from quanttui.engine.pair import (
    RESYNC_DELAY_S,
    RESYNC_HOLD_MAX_S,
    RESYNC_MIN_INTERVAL_S,
    ResyncTimer,
)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(pair.time, "monotonic", lambda: now[0])
    return now


def test_a_due_recompute_waits_for_missed_trades_still_being_fetched_but_not_for_ever(
    clock: list[float],
) -> None:
    timer = ResyncTimer()
    timer.request()
    clock[0] += RESYNC_DELAY_S
    assert not timer.ready(hold=True)
    clock[0] += RESYNC_HOLD_MAX_S - 0.1
    assert not timer.ready(hold=True) and timer.pending
    clock[0] += 0.1 + 1e-9
    assert timer.ready(hold=True) and not timer.pending and timer.count == 1


def test_without_a_hold_it_runs_once_due_and_at_most_every_min_interval(
    clock: list[float],
) -> None:
    timer = ResyncTimer()
    timer.request()
    clock[0] += RESYNC_DELAY_S - 0.01
    assert not timer.ready()
    clock[0] += 0.01
    assert timer.ready() and not timer.ready()
    timer.request()
    clock[0] += RESYNC_DELAY_S
    assert not timer.ready()
    clock[0] += RESYNC_MIN_INTERVAL_S - RESYNC_DELAY_S
    assert timer.ready() and timer.count == 2
