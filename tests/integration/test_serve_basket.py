"""A basket under `quanttui serve`: a real server process with one pair and one basket
(`quanttui serve X/Y A+B+C`) on the loopback fake exchange; `quanttui sessions` lists the
basket; `attach --headless` (a real process) prints the basket's alerts and its last
snapshot; a view in this process gets its snapshots (the protocol carries them); the app
attached to the server shows the basket row, and Enter opens the basket screen from the
server's events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quanttui.app.app import QuantApp
from quanttui.app.screens.basket import ListedBasketScreen
from quanttui.app.screens.watchlist import WatchlistScreen
from quanttui.app.widgets.watchtable import WatchTable
from quanttui.config import load_config
from quanttui.engine.events import AlertEvent, BasketSnapshotEvent
from quanttui.engine.mailbox import Mailbox
from quanttui.server.client import RemoteEngine, probe
from quanttui.server.sessions import socket_path
from tests.app.test_app import until
from tests.fakes.exchange import FakeExchange, FakeTrade
from tests.helpers import exchange_args, run_cli, store_ticks
from tests.integration.test_basket_headless import LEGS, history_ticks, live_trades
from tests.integration.test_serve import runtime  # noqa: F401 - a fixture

KEY = "+".join(LEGS)
PAIR = "BTCUSDT/ETHUSDT"


QUIET_S = 20
"""The stream pauses this long after its first trade, so that the views (a headless one
spawned as a process, under load) are attached before the shock that fires the alerts."""


def paused_live_trades() -> list[FakeTrade]:
    """`live_trades`, after one trade of the first leg and `QUIET_S` of silence."""
    trades = live_trades()
    first = trades[0]
    lead = FakeTrade(first.symbol, first.a - 1, first.p, first.q, first.T, first.m)
    later = [dataclasses.replace(t, T=t.T + QUIET_S * 1000) for t in trades]
    return [lead, *later]


def serve_cmd(ex: FakeExchange, db: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "quanttui",
        "serve",
        PAIR,
        KEY.lower(),
        "--db",
        str(db),
        *exchange_args(ex),
        "--backfill",
        "off",
        "--timeframe",
        "1s",
        "--window",
        "30",
        "--entry-z",
        "1",
        "--alert",
        f"{KEY}: rank >= 1",
    ]


async def test_serve_runs_a_basket_and_attached_views_show_it(
    tmp_path: Path,
    runtime: Path,  # noqa: F811
) -> None:
    db = tmp_path / "s.db"
    store_ticks(db, history_ticks(int(time.time() * 1000) - 500)).close()
    path = socket_path(db)
    log = db.with_suffix(".serve.log")
    async with asyncio.timeout(180), FakeExchange(paused_live_trades(), shift=True) as ex:
        with log.open("wb") as err:
            server = subprocess.Popen(  # noqa: ASYNC220
                serve_cmd(ex, db), stdout=subprocess.DEVNULL, stderr=err
            )
        try:
            await until(lambda: probe(path) is not None or server.poll() is not None, 30)
            assert server.poll() is None, log.read_text()
            welcome = probe(path)
            assert welcome is not None and KEY in welcome["pairs"] and PAIR in welcome["pairs"]
            headless = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "quanttui", "attach", "--headless", "--db", str(db)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            await until(lambda: (w := probe(path)) is not None and w["viewers"] >= 1, 30)
            code, out, _ = await asyncio.to_thread(run_cli, "sessions", timeout=60)
            assert code == 0 and KEY in out and PAIR in out, out
            box = Mailbox()
            remote = RemoteEngine(path, box).connect().start()
            seen: list[BasketSnapshotEvent] = []
            alerts: list[AlertEvent] = []

            def drain() -> bool:
                events, latest = box.drain()
                for ev in [*events, *latest]:
                    if isinstance(ev, BasketSnapshotEvent):
                        seen.append(ev)
                    elif isinstance(ev, AlertEvent):
                        alerts.append(ev)
                return any(e.snapshot.zscore is not None for e in seen)

            await until(drain, 60)
            assert all(e.pair == KEY and e.snapshot.symbols == LEGS for e in seen)

            cfg = load_config(use_user_file=False, overrides={("storage", "db"): str(db)})
            app = QuantApp(cfg, baskets=[LEGS], engine_process=True, attach=path)
            async with app.run_test(size=(120, 30)) as pilot:
                wl = app.screen
                assert isinstance(wl, WatchlistScreen)
                # the server's pair joins the row the view asked for
                await until(lambda: set(wl.order()) == {PAIR, KEY}, 10)
                await until(lambda: (s := wl.shown.get(KEY)) is not None and s.zscore, 20)
                table = wl.query_one("#wl-table", WatchTable)
                assert table.cell(KEY, "pair") == "BTC+ETH+SOL"
                snap = wl.shown[KEY]
                assert table.cell(KEY, "z") == f"{snap.zscore:+.2f}"
                table.move_cursor(wl.order().index(KEY))
                await pilot.press("enter")
                await until(lambda: isinstance(app.screen, ListedBasketScreen), 10)
                bs = app.screen
                await until(lambda: bs.snapshot is not None, 10)
                assert bs.snapshot.key == KEY
                await pilot.press("escape")
                await until(lambda: app.screen is wl)
                await pilot.press("q")  # detaches; the server goes on
            assert server.poll() is None

            await asyncio.wait_for(ex.done.wait(), 60)
            await asyncio.sleep(2.0)
        finally:
            server.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.wait, 10)
        assert code == 0, log.read_text()
        # attached until the server stopped, as the headless view was: both saw its last
        # snapshot (a bar that settles at the stop comes after the exchange went quiet)
        await asyncio.to_thread(remote.done.wait, 10)
        drain()
        remote.stop()
        out_b, err_b = await asyncio.to_thread(headless.communicate, timeout=20)
    lines = [json.loads(x) for x in out_b.decode().splitlines() if x.strip()]
    snaps = {s["snapshot"]["pair"]: s["snapshot"] for s in lines if "snapshot" in s}
    assert KEY in snaps and PAIR in snaps, (lines[-3:], err_b.decode()[-2000:])
    assert snaps[KEY]["basket"] == KEY and snaps[KEY]["zscore"] is not None
    by_time = {e.snapshot.time_ms: e.snapshot.zscore for e in seen}
    last = max(t for t in by_time if t is not None)
    assert snaps[KEY]["zscore"] == pytest.approx(by_time[last], rel=1e-9) or any(
        snaps[KEY]["zscore"] == pytest.approx(z, rel=1e-9) for z in by_time.values() if z
    )
    basket_alerts = [a for a in lines if a.get("pair") == KEY and "rule" in a]
    assert basket_alerts, lines[:5]
    assert {a.alert.pair for a in alerts} >= {KEY}
