"""A basket as a watchlist row, under Pilot, on the loopback fake exchange and a real
SQLite file: one pair and one basket on one engine; the basket row's z is the engine's
and a recompute's from the database; Enter opens the basket screen, Esc comes back; `e`
writes the basket's CSVs beside the pair's; `a` takes `A+B+C`; `d` removes the basket from
the engine; the saved watchlist keeps the basket."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from quanttui.analytics.basket import BasketParams, run_basket_bars
from quanttui.app.app import QuantApp
from quanttui.app.screens.basket import ListedBasketScreen
from quanttui.app.screens.confirm import ConfirmScreen
from quanttui.app.screens.watchlist import AddPairScreen, WatchlistScreen
from quanttui.app.widgets.watchtable import WatchTable
from quanttui.model import BasketSnapshot
from quanttui.store.queries import load_basket_bars
from quanttui.store.state import load_last
from tests.app.conftest import app_config
from tests.app.test_app import until
from tests.fakes.exchange import FakeExchange
from tests.helpers import store_ticks
from tests.integration.test_basket_headless import LEGS, history_ticks, live_trades

KEY = "+".join(LEGS)
PAIR = "BTCUSDT/ETHUSDT"
W = 30


def recompute_basket_z(db: Path, snap: BasketSnapshot) -> float | None:
    """The basket's z at the snapshot's bar, from the database alone."""
    params = BasketParams(snap.symbols, snap.timeframe, snap.window)
    with sqlite3.connect(db) as conn:
        bars = load_basket_bars(
            conn,
            list(snap.symbols),
            snap.timeframe,
            end_ms=snap.time_ms + params.timeframe_ms,
            max_gap_bars=params.max_gap_bars,
        )
    eng = params.analytics(history=len(bars))
    run_basket_bars(eng, bars)
    last = eng.history[-1]
    assert last.ts_ms == snap.time_ms
    return last.zscore


def db_agrees(db: Path, snap: BasketSnapshot) -> bool:
    """The recompute from the database gives the snapshot's z (False while the writer has
    not yet committed that bar's trades)."""
    try:
        z = recompute_basket_z(db, snap)
    except (AssertionError, IndexError):
        return False
    return z == pytest.approx(snap.zscore, rel=1e-9, abs=1e-12)


def cell(screen: WatchlistScreen, key: str, column: str) -> str:
    return screen.query_one("#wl-table", WatchTable).cell(key, column)


async def test_a_basket_row_beside_a_pair_opens_exports_and_is_removed(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    store_ticks(db, history_ticks(int(time.time() * 1000) - 500)).close()
    out = tmp_path / "exports"
    async with asyncio.timeout(120), FakeExchange(live_trades(), shift=True) as ex:
        cfg = app_config(db, ex.ws_base, ex.rest_base, out, window=W, timeframe="1s")
        app = QuantApp(cfg, pairs=[("BTCUSDT", "ETHUSDT")], baskets=[LEGS])
        async with app.run_test(size=(120, 30)) as pilot:
            wl = app.screen
            assert isinstance(wl, WatchlistScreen)
            assert set(wl.order()) == {PAIR, KEY}
            assert cell(wl, KEY, "pair") == "BTC+ETH+SOL"
            title = str(wl.query_one("#wl-title", Static).render())
            assert "1 pair, 1 basket" in title

            mon = app.engine.pairs[KEY]
            await until(lambda: (s := wl.shown.get(KEY)) is not None and s.zscore is not None, 60)
            await until(lambda: mon.live is not None and mon.live.engine.last is not None)
            await pilot.pause(0.6)
            snap = wl.shown[KEY]
            assert isinstance(snap, BasketSnapshot)
            # the row shows the engine's snapshot
            assert snap.time_ms <= mon.snapshot.time_ms
            assert cell(wl, KEY, "z") == f"{snap.zscore:+.2f}"

            def row_agrees_with_db() -> bool:
                """The row's current z is the recompute from the database, once the writer
                has committed that bar's trades (it batches its commits). The row is read
                again each time: a trade that arrives after its bar closed by the clock
                is stored, and the recompute that follows it replaces the row."""
                s = wl.shown[KEY]
                return cell(wl, KEY, "z") == f"{s.zscore:+.2f}" and db_agrees(db, s)

            await until(row_agrees_with_db, 45)
            snap = wl.shown[KEY]
            # a basket's own columns; blank where a basket has no such metric
            assert cell(wl, KEY, "corr") == f"r={snap.rank}"
            assert cell(wl, KEY, "adf_p") == f"{snap.trace[0]:.1f}"
            assert cell(wl, KEY, "beta") == "" and cell(wl, KEY, "coint_p") == ""
            assert cell(wl, KEY, "carry") == ""
            assert cell(wl, KEY, "spark").strip()
            assert cell(wl, PAIR, "beta") not in ("", "—")

            table = wl.query_one("#wl-table", WatchTable)
            table.move_cursor(wl.order().index(KEY))
            await pilot.press("enter")
            await until(lambda: isinstance(app.screen, ListedBasketScreen))
            bs = app.screen
            assert bs.key == KEY
            await until(lambda: bs.snapshot is not None)
            await pilot.pause(0.3)
            shown = bs.snapshot
            assert bs.metric_text("z-score") == f"{shown.zscore:+.3f}"
            assert f"BASKET {KEY}" in str(bs.query_one("#basket-title").render())
            await pilot.press("escape")
            await until(lambda: app.screen is wl)

            await ex.done.wait()
            await pilot.press("e")
            await until(lambda: list(out.rglob("watchlist.csv")), 30)
            await until(lambda: list(out.rglob("*SOLUSDT*_analytics.csv")), 30)
            (basket_csv,) = out.rglob("*SOLUSDT*_analytics.csv")
            header = basket_csv.read_text().splitlines()[0]
            assert all(f"{s}_weight" in header for s in LEGS), header

            await pilot.press("a")
            dialog = app.screen
            assert isinstance(dialog, AddPairScreen)
            entry = dialog.query_one("#add-input", Input)
            message = dialog.query_one("#add-message", Static)
            for typed, error in (
                ("btcusdt+ethusdt", "a basket has 3 to 12 legs"),
                ("btcusdt+ethusdt+btcusdt", "each leg may be given once"),
                (KEY.lower(), "already on the watchlist"),
            ):
                entry.value = typed
                await pilot.press("enter")
                await until(lambda error=error: error in str(message.render()), 10)
                assert app.screen is dialog
            await pilot.press("escape")
            await until(lambda: app.screen is wl)

            saved = load_last(db)
            assert saved is None or all(len(e) in (2, 3) for e in saved.pairs)
            app.save_watchlist()
            await until(lambda: (s := load_last(db)) is not None and LEGS in s.pairs, 10)

            table.move_cursor(wl.order().index(KEY))
            await pilot.press("d")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await until(lambda: KEY not in wl.order())
            await until(lambda: KEY not in app.engine.pairs)
            assert KEY not in app.basket_screens
            await until(lambda: (s := load_last(db)) is not None and LEGS not in s.pairs, 10)
            await pilot.press("q")
    assert app.return_code == 0
