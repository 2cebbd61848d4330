"""The UI thread's short scheduler slice (`quanttui.app.sched`), read back from the
kernel with ``sched_getattr``: asked for by the app's thread and by no other."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from quanttui.app.app import QuantApp
from quanttui.app.basket_app import BasketApp
from quanttui.sched import UI_SLICE_NS, current_slice, request_slice
from tests.app.conftest import app_config
from tests.app.test_app import until


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def _supported() -> bool:
    return _in_thread(lambda: request_slice(300_000) and current_slice() == 300_000)


needs_slices = pytest.mark.skipif(
    not _supported(), reason="this kernel does not keep a task's own slice (EEVDF, 6.12+)"
)


@needs_slices
def test_the_slice_is_the_calling_threads_own() -> None:
    before = current_slice()
    got = _in_thread(lambda: (request_slice(150_000), current_slice()))
    assert got == (True, 150_000)
    assert current_slice() == before


@pytest.mark.parametrize("kind", ["pair", "basket"])
@needs_slices
async def test_the_app_asks_a_short_slice_for_its_ui_thread(kind: str, tmp_path: Path) -> None:
    request_slice(0)  # the kernel's default: an earlier app on this thread asked for its own
    assert current_slice() != UI_SLICE_NS
    cfg = app_config(tmp_path / "s.db", "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path)
    if kind == "pair":
        app = QuantApp(cfg, "BTCUSDT", "ETHUSDT")
    else:
        app = BasketApp(cfg, ("BTCUSDT", "ETHUSDT", "SOLUSDT"))
    engine_slice: list[int | None] = []
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(lambda: current_slice() == UI_SLICE_NS)
            runner = app.runner
            if runner is not None and hasattr(runner, "call"):

                async def probe() -> int | None:
                    return current_slice()

                engine_slice.append(runner.call(probe()).result(10))
            await pilot.press("q")
    finally:
        request_slice(0)  # 0: the kernel's default again, for the tests that follow
    # the engine's thread keeps the default: only the UI asks to be picked first
    assert engine_slice and engine_slice[0] != UI_SLICE_NS
