"""The cyclic GC and a screen that must never stall."""

from __future__ import annotations

import gc


def freeze_heap() -> None:
    """Move what exists now (modules, widgets, freshly loaded pipelines) out of the cyclic
    GC's reach. A full collection walks every tracked object, holding the GIL; with the
    engine on a thread of this process (`EngineThread`) and 20 pairs loaded it stopped
    the screen for 150-250 ms every few seconds (`benchmarks/bench_watchlist.py`,
    `bench_app.py` print the collections). The CLI runs the engine in a process of its
    own, where this keeps the screen's own heap (Textual, the charts) out of the walks.

    Called by the app after each load or recompute (the engine's `Recomputed`) and once
    plotext is imported (`charts.warm_up`); the engine freezes its own heap once
    statsmodels is imported (`Engine._warm_up`). No collection first, which would itself
    stall a frame. Frozen objects are still freed by reference counting; only cyclic
    garbage present at that instant is kept (the pipelines have no cycles: a dropped one
    is freed at once)."""
    gc.freeze()
