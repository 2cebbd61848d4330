"""The cyclic GC and a screen that must never stall."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.app import App
    from textual.timer import Timer

FULL_COLLECTION_S = 0.5
"""How often `GcPacer` runs a full collection of the UI's process."""

NEVER = 1 << 30

_freeze_wanted = False


def freeze_heap(at_once: bool = False) -> None:
    """Move what exists now (modules, widgets, freshly loaded pipelines) out of the cyclic
    GC's reach: right after the pacer's next full collection (`GcPacer.collect`), or at
    once.

    A full collection walks every tracked object, holding the GIL; with the engine on a
    thread of this process (`EngineThread`) and 20 pairs loaded it stopped the screen for
    150-250 ms every few seconds (`benchmarks/bench_watchlist.py`, `bench_app.py` print
    the collections), and the UI's own heap (Textual, Rich, the charts: about 115,000
    objects) would cost the pacer's every collection. Frozen objects are still freed by
    reference counting, but cyclic garbage frozen with them is kept for good, hence the
    wait for a collection. The process's first freeze, and one asked for `at_once` (an
    import's objects), are done at once instead: collecting first would walk the whole
    start-up heap or a module's objects, a 20-45 ms stall, and the garbage kept is what
    the pacer's last period left (a few thousand objects), once.

    Asked for by the app after each load or recompute (the engine's `Recomputed`) and
    once plotext is imported (`charts.warm_up`, at once); the engine freezes its own heap
    once statsmodels is imported (`Engine._warm_up`)."""
    global _freeze_wanted
    if at_once or gc.get_freeze_count() == 0:
        gc.freeze()
        _freeze_wanted = False
    else:
        _freeze_wanted = True


class GcPacer:
    """Full collections of the UI's process every `FULL_COLLECTION_S`, small, instead of
    CPython's own, rare and large.

    Textual makes cyclic garbage as it draws: its compositor divides each line of a
    widget at the edges of the regions in front of it (`Strip.divide`), and the strip
    caches the result; a line that nothing cuts is divided into `[strip]`, a list held by
    the strip it holds, so nearly every line drawn is a cycle. Strips that a widget's
    line cache holds live long enough to reach the oldest generation; evicted, they wait
    there for a full collection. CPython runs one after ten collections of generation 1
    (about every 30 s with 20 pairs on the watchlist), which freed 9,000-13,000 objects
    at a time (Segments, Strips, their caches) and walked the live heap besides: 34.7 ms
    worst over 600 s, 64 ms over 1200 s. Collected every 0.5 s, each holds a few hundred:
    a collection's CPU is mostly freeing that garbage, so a shorter period makes each one
    shorter (attached to a server with 20 pairs: median 1.9 ms, max 4.0 ms, against 3.1
    and 6.3 ms every 2 s; `benchmarks/bench_serve.py --quick`).

    `start` turns CPython's automatic full collections off (generation 2's threshold out
    of reach; generations 0 and 1 keep theirs) and collects on the app's timer, freezing
    the heap after a collection when `freeze_heap` asked for it; `stop` restores the
    threshold it replaced. A stalled loop collects nothing, but it also runs nothing
    that makes garbage."""

    def __init__(self, every: float = FULL_COLLECTION_S) -> None:
        self.every = every
        self.collections = 0
        self.freezes = 0
        self._saved: tuple[int, int, int] | None = None
        self._timer: Timer | None = None

    def start(self, app: App) -> None:
        if self._saved is not None:
            return
        self._saved = g0, g1, _ = gc.get_threshold()
        gc.set_threshold(g0, g1, NEVER)
        self._timer = app.set_interval(self.every, self.collect, name="gc-pacer")

    def collect(self) -> None:
        global _freeze_wanted
        gc.collect(2)
        self.collections += 1
        if _freeze_wanted:
            _freeze_wanted = False
            gc.freeze()
            self.freezes += 1

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._saved is not None:
            if gc.get_threshold()[2] == NEVER:
                gc.set_threshold(*self._saved)
            self._saved = None
