"""The cyclic GC and a screen that must never stall."""

from __future__ import annotations

import gc


def freeze_heap() -> None:
    """Move what exists now (modules, widgets, freshly loaded pipelines) out of the cyclic
    GC's reach. The engine runs in this process, and a full collection walks every
    tracked object of both, holding the GIL: with 20 pairs loaded it stopped the screen
    for 150-250 ms every few seconds (`benchmarks/bench_watchlist.py`, `bench_app.py`
    print the collections). Called by the app after each load or recompute (the engine's
    `Recomputed`) and once statsmodels is imported (the engine's warm-up), without a
    collection first, which would itself stall a frame. Frozen objects are still freed
    by reference counting; only cyclic garbage present at that instant is kept (the
    pipelines have no cycles: a dropped one is freed at once)."""
    gc.freeze()
