"""An attached app freezes its heap once the server's snapshots are shown.

An attached view gets no `Recomputed` for the pairs the server loaded before it came, and
those were what asked the embedded app to freeze its heap (`quanttui.app.heap`); without
a freeze every full collection of the pacer walked the whole UI heap, 45-55 ms of CPU on
the loop every 2 s with 20 pairs (`benchmarks/bench_serve.py`)."""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path

from quanttui.app.app import QuantApp
from quanttui.config import load_config
from quanttui.server.sessions import socket_path
from tests.app.test_app import until
from tests.fakes.exchange import FakeExchange, universe_trades
from tests.integration.test_serve import (
    RATE,
    runtime,  # noqa: F401 - a fixture
    start_server,
)

UNFROZEN_MAX = 2_000
"""Objects the cyclic GC may still walk once the first snapshot is shown and the pacer has
collected: about 450 with the freeze; without it, the rows, screens and decoded events the
app made after its start-up freeze (plotext's import) stay, about 4,500 for this one pair
(60,000 for the benchmark's 20)."""


async def test_an_attached_watchlist_freezes_its_heap_after_the_first_snapshots(
    tmp_path: Path,
    runtime: Path,  # noqa: F811
) -> None:
    db = tmp_path / "h.db"
    trades = universe_trades(40_000, ("BTCUSDT", "ETHUSDT"))
    async with asyncio.timeout(120), FakeExchange(trades, rate=RATE, restamp=True) as ex:
        server = await start_server(ex, db)
        try:
            cfg = load_config(use_user_file=False, overrides={("storage", "db"): str(db)})
            app = QuantApp(
                cfg,
                pairs=[("BTCUSDT", "ETHUSDT")],
                watchlist=True,
                engine_process=True,
                attach=socket_path(db),
            )
            gc.unfreeze()
            async with app.run_test(size=(100, 30)) as pilot:
                await until(lambda: app.watchlist_screen is not None, 10)
                wl = app.watchlist_screen
                await until(lambda: wl.shown.get("BTCUSDT/ETHUSDT") is not None, 30)
                start = app.gc_pacer.collections
                await until(lambda: app.gc_pacer.collections >= start + 2, 10)
                unfrozen = len(gc.get_objects())
                await pilot.press("q")
            assert gc.get_freeze_count() > 0
            assert unfrozen < UNFROZEN_MAX, f"{unfrozen:,} objects left for every collection"
        finally:
            server.send_signal(signal.SIGTERM)
            await asyncio.to_thread(server.wait, 10)
