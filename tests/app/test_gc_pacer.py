"""`GcPacer`: the UI's full collections on its own timer, small, never CPython's large ones;
the heap frozen only right after one of them, so that no garbage is frozen with it."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from rich.segment import Segment
from textual.app import App
from textual.strip import Strip

from quanttui.app.app import QuantApp
from quanttui.app.heap import NEVER, GcPacer, freeze_heap
from quanttui.app.widgets import charts
from tests.app.conftest import app_config
from tests.app.test_app import until


class WatchedStrip(Strip):
    __slots__ = ("__weakref__",)


def old_cyclic_strip() -> weakref.ref:
    """A Textual strip divided as the compositor divides a line that no region cuts (a
    cycle: its divide cache holds `[strip]`), kept alive through a collection of
    generation 1, so that it is in the oldest generation, then dropped: garbage that
    only a full collection frees."""
    strip = WatchedStrip([Segment("garbage in the oldest generation")])
    assert strip.divide([strip.cell_length]) == [strip]
    ref = weakref.ref(strip)
    gc.collect(1)
    del strip
    return ref


class Bare(App):
    def __init__(self, pacer: GcPacer) -> None:
        super().__init__()
        self.pacer = pacer

    def on_mount(self) -> None:
        self.pacer.start(self)

    def on_unmount(self) -> None:
        self.pacer.stop()


async def test_cpython_runs_no_full_collection_the_pacer_frees_old_cycles() -> None:
    before = gc.get_threshold()
    assert before[2] != NEVER
    pacer = GcPacer(every=0.2)
    generations: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            generations.append(info["generation"])

    async with Bare(pacer).run_test() as pilot:
        assert gc.get_threshold() == (before[0], before[1], NEVER)
        await until(lambda: pacer.collections >= 1)
        start = pacer.collections
        gc.callbacks.append(record)
        try:
            ref = old_cyclic_strip()
            junk = [[n] for n in range(300_000)]  # ~40 collections of generation 1
            del junk
            gc.collect(1)
            assert ref() is not None, "young collections do not free the oldest generation"
            auto = list(generations)
            await until(lambda: pacer.collections >= start + 2)
        finally:
            gc.callbacks.remove(record)
        assert auto.count(1) >= 10 and 2 not in auto, auto.count(1)
        assert ref() is None
        await pilot.pause()
    assert gc.get_threshold() == before


async def test_a_freeze_waits_for_a_collection_and_pins_no_garbage() -> None:
    pacer = GcPacer(every=0.2)
    async with Bare(pacer).run_test():
        if gc.get_freeze_count() == 0:
            freeze_heap()  # the process's first freeze is at once
            assert gc.get_freeze_count() > 0
        await until(lambda: pacer.collections >= 1)
        ref = old_cyclic_strip()
        frozen = gc.get_freeze_count()
        freeze_heap()
        assert gc.get_freeze_count() == frozen
        await until(lambda: pacer.freezes == 1)
        assert ref() is None
        assert gc.get_freeze_count() > frozen

        pinned = old_cyclic_strip()
        freeze_heap(at_once=True)
        await until(lambda: pacer.collections >= 2 + 1)
        assert pinned() is not None  # what an import's freeze keeps


async def test_the_app_paces_its_collections(tmp_path: Path) -> None:
    before = gc.get_threshold()
    app = QuantApp(
        app_config(tmp_path / "e.db", "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path),
        "BTCUSDT",
        "ETHUSDT",
        engine_process=True,  # as the CLI runs it: no engine on a thread to freeze this heap
    )
    async with app.run_test(size=(80, 24)) as pilot:
        assert gc.get_threshold()[2] == NEVER
        await until(lambda: app.key in app.pair_infos and charts._plotext_ready.is_set())
        ref = old_cyclic_strip()
        start = app.gc_pacer.collections
        await until(lambda: app.gc_pacer.collections > start, limit_s=5)
        assert ref() is None
        assert gc.get_freeze_count() > 0  # the load and plotext's import asked for it
        await pilot.press("q")
    assert gc.get_threshold() == before
