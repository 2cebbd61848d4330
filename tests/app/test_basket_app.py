"""The basket monitor under Pilot, against the loopback fake exchange and a real SQLite
file: the table shows the engine's numbers, alerts reach the log, `e` exports the bars the
screen shows and `q` commits and quits."""

from __future__ import annotations

import asyncio
import csv
import sqlite3
import time
from pathlib import Path

from quanttui.app.basket_app import BasketApp
from quanttui.app.screens.basket import BasketScreen
from quanttui.app.widgets.loglines import LogLines
from quanttui.model import iso_utc
from tests.app.conftest import app_config
from tests.app.test_app import until
from tests.fakes.exchange import FakeExchange
from tests.helpers import store_ticks
from tests.integration.test_basket_headless import LEGS, history_ticks, live_trades

KEY = "+".join(LEGS)


async def test_basket_screen_live_export_quit(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    store_ticks(db, history_ticks(int(time.time() * 1000) - 500)).close()
    out = tmp_path / "exports"
    async with asyncio.timeout(90), FakeExchange(live_trades(), shift=True) as ex:
        cfg = app_config(db, ex.ws_base, ex.rest_base, out, window=30)
        app = BasketApp(cfg, LEGS, extra_rules=["abs(zscore) >= 1"])
        async with app.run_test(size=(120, 40)) as pilot:
            view = app.screen
            assert isinstance(view, BasketScreen)
            assert f"BASKET {KEY}" in str(app.query_one("#basket-title").render())
            await until(lambda: view.snapshot is not None and view.snapshot.zscore is not None)
            # the shock comes 5 s into the live trades; under load a late trade can defer
            # the alert to the recompute that follows it, so allow for the whole feed
            await until(lambda: len(app.query_one("#basket-alerts", LogLines)) > 0, 45)
            mon = app.engine.pairs[KEY]
            await until(lambda: mon.live is not None and mon.live.engine.last is not None)
            await pilot.pause()
            snap = view.snapshot
            assert view.metric_text("bars") == f"{snap.bars:,}"
            assert view.metric_text("z-score") == f"{snap.zscore:+.3f}"
            w = view.metric_text(f"weight {LEGS[1]}")
            assert w == f"{snap.weights[1]:.6g}"
            assert view.metric_text("rank (trace, 95%)") == str(snap.rank)
            rows = app.query_one("#basket-alerts", LogLines).texts()
            assert any("abs(zscore) >= 1" in " ".join(r) for r in rows)

            await ex.done.wait()
            await asyncio.sleep(1.5)
            shown = view.snapshot
            await pilot.press("e")
            await until(lambda: app.exports)
            (files,) = app.exports
            analytics = next(Path(p.split(" (")[0]) for p in files if "_analytics.csv" in p)
            last = list(csv.DictReader(analytics.open()))[-1]
            # the export ends at the bar the engine has open, so at or after the one shown
            assert last["time"] >= iso_utc(shown.time_ms)
            await pilot.press("q")
        assert app.return_code == 0
    with sqlite3.connect(db) as conn:
        n = conn.execute("SELECT count(*) FROM ticks").fetchone()[0]
    assert n == len(history_ticks(0)) + len(live_trades())
