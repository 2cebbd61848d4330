"""When an alert may fire, and how a wrong one is taken back.

The rule: an alert names the values that a recompute from the database gives for its
bar. Live bars can differ from those for a while (trades that arrive after their bar
closed: the REST backfill after a disconnect or a stall, the tail of a replay burst at
start-up), and the engine recomputes once that settles (`ResyncTimer`). So:

* a bar closed while a resync is pending is *not* evaluated yet;
* every bar records the rules' state before it (a checkpoint, bounded by `horizon`);
* after a recompute, the rules are run again from the oldest checkpoint still covered by
  the recomputed history, over the recomputed bars. Alerts of the first run that the
  second does not give (same bar, same rule, same value to 1e-9 relative) are withdrawn;
  alerts that only the second gives are emitted as revised. The rules' state is what the
  second run left.

The outcome is exactly the alert sequence that the rules give over the database's bars
from the session's first live bar on, as long as corrections stay within `horizon` bars.
Rules on the stationarity tests (ADF, coint) are evaluated when a bar's tests come back,
on that bar, and rules on funding and carry when the bar closes, with the latest mark
prices; neither is re-run (their values are not kept per bar).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence

from quanttui.alerts import AlertEngine
from quanttui.model import FUNDING_METRIC_NAMES, Alert

STAT_METRICS = frozenset({"adf_stat", "adf_p", "coint_p"})
EXTRA_METRICS = STAT_METRICS | frozenset(FUNDING_METRIC_NAMES)
"""Metrics not kept per bar (the stationarity tests, funding and carry): their rules are
evaluated when the values come in (`on_extra`), and are not re-run by `resync`."""
RTOL = 1e-9
EMITTED_PER_BAR = 4
"""`AlertBook.emitted` keeps up to this many alerts per bar of the horizon (several rules
can fire on one bar); a resync compares only alerts within the horizon."""

State = dict[str, tuple[bool, int | None]]


def _same(a: Alert, b: Alert) -> bool:
    return math.isclose(a.value, b.value, rel_tol=RTOL, abs_tol=1e-12)


class AlertBook:
    def __init__(self, rules: AlertEngine, horizon: int = 600) -> None:
        self.rules = rules
        self.horizon = horizon
        self.checkpoints: deque[tuple[int, State]] = deque(maxlen=horizon)
        """The rules' state before each of the last `horizon` bars."""
        self.emitted: deque[Alert] = deque(maxlen=EMITTED_PER_BAR * horizon)
        """Alerts of the checkpoint horizon that stand (not withdrawn), oldest first."""
        self.start_ms: int | None = None
        """The first bar that alerts may name: the session's first live bar."""
        self.not_before: int | None = None
        """Bars before this time are never evaluated (a replay's prefilled history)."""

    def _state(self) -> State:
        return {k: (s.armed, s.last_fired_ms) for k, s in self.rules._states.items()}

    def _restore(self, state: State) -> None:
        bar_rules = {r.text for r in self.rules.rules if r.metric not in EXTRA_METRICS}
        for k, s in self.rules._states.items():
            if k in bar_rules:
                s.armed, s.last_fired_ms = state.get(k, (True, None))

    def on_bar(self, ts_ms: int, metrics: Mapping[str, float], *, defer: bool) -> list[Alert]:
        """A live bar closed. With `defer` (a resync is pending) it is only checkpointed."""
        if self.not_before is not None and ts_ms < self.not_before:
            return []
        if self.start_ms is None:
            self.start_ms = ts_ms
        self.checkpoints.append((ts_ms, self._state()))
        if defer:
            return []
        values = {k: v for k, v in metrics.items() if k not in EXTRA_METRICS}
        fired = self.rules.evaluate(values, ts_ms)
        self.emitted.extend(fired)
        return fired

    def on_extra(self, ts_ms: int, metrics: Mapping[str, float]) -> list[Alert]:
        """Stationarity or funding values for bar `ts_ms` (see `EXTRA_METRICS`)."""
        if self.start_ms is None or ts_ms < self.start_ms:
            return []
        values = {k: v for k, v in metrics.items() if k in EXTRA_METRICS}
        fired = self.rules.evaluate(values, ts_ms)
        self.emitted.extend(fired)
        return fired

    def resync(
        self, history: Sequence[tuple[int, Mapping[str, float]]]
    ) -> tuple[list[Alert], list[Alert]]:
        """Re-run the bar rules over the recomputed `history` ((ts, metrics), oldest
        first). Returns (revised alerts to emit, alerts to withdraw)."""
        if self.start_ms is None or not history:
            return [], []
        bars = [(t, m) for t, m in history if t >= self.start_ms]
        first = bars[0][0] if bars else history[-1][0] + 1
        start = next(((t, s) for t, s in self.checkpoints if t >= first), None)
        if start is None:
            return [], []
        c0, state = start
        bars = [(t, m) for t, m in bars if t >= c0]
        while self.checkpoints and self.checkpoints[-1][0] >= c0:
            self.checkpoints.pop()
        self._restore(state)
        new: list[Alert] = []
        for t, m in bars:
            self.checkpoints.append((t, self._state()))
            new += self.rules.evaluate({k: v for k, v in m.items() if k not in EXTRA_METRICS}, t)
        old = [a for a in self.emitted if a.ts_ms >= c0 and a.metric not in EXTRA_METRICS]
        old_by = {(a.ts_ms, a.rule): a for a in old}
        new_by = {(a.ts_ms, a.rule): a for a in new}
        withdrawn = [a for k, a in old_by.items() if k not in new_by or not _same(a, new_by[k])]
        revised = [a for k, a in new_by.items() if k not in old_by or not _same(a, old_by[k])]
        if withdrawn or revised:
            gone = {id(a) for a in withdrawn}
            keep = [a for a in self.emitted if id(a) not in gone] + revised
            keep.sort(key=lambda a: a.ts_ms)
            self.emitted = deque(keep, maxlen=self.emitted.maxlen)
        return revised, withdrawn
