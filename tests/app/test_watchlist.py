"""The watchlist under Pilot: several pairs on one engine against the fake exchange, and
a real SQLite file."""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import math
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from quanttui.analytics.live import PairParams
from quanttui.analytics.snapshot import run_bars
from quanttui.app.app import QuantApp
from quanttui.app.screens.monitor import MonitorScreen
from quanttui.app.screens.watchlist import (
    DRAW_S,
    AddPairScreen,
    ConfirmScreen,
    WatchlistScreen,
)
from quanttui.app.widgets.loglines import LogLines
from quanttui.app.widgets.watchtable import WatchTable
from quanttui.engine import Mailbox
from quanttui.engine.events import AlertEvent, SnapshotEvent
from quanttui.model import Snapshot, Tick, iso_utc
from quanttui.store.queries import load_pair_bars
from quanttui.store.state import load_last, save_last
from tests.app.conftest import app_config
from tests.app.test_app import until
from tests.app.test_scanner import scan_db  # noqa: F401 - a fixture
from tests.fakes.exchange import FakeExchange, FakeTrade, universe_trades
from tests.helpers import store_ticks

WINDOW = 20
HISTORY_S = 90


def split_history(trades: list[FakeTrade], n_hist: int, db: Path) -> list[FakeTrade]:
    """The first `n_hist` trades stored as the last `HISTORY_S` seconds (so every window
    is full at launch); the rest is what the exchange streams, its ids continuing."""
    now = int(time.time() * 1000) - 500
    hist = trades[:n_hist]
    step = HISTORY_S * 1000 / len(hist)
    start = now - HISTORY_S * 1000
    ticks = [
        Tick(t.symbol, t.a, int(start + i * step), float(t.p), float(t.q), t.m)
        for i, t in enumerate(hist)
    ]
    store_ticks(db, ticks).close()
    return trades[n_hist:]


def stored_ids(db: Path, symbol: str) -> set[int]:
    with sqlite3.connect(db) as c:
        return {r[0] for r in c.execute("SELECT trade_id FROM ticks WHERE symbol = ?", (symbol,))}


def recompute_z(db: Path, snap: Snapshot) -> float | None:
    """The z-score at the snapshot's bar, recomputed from the database alone."""
    p = PairParams(snap.symbol_x, snap.symbol_y, snap.timeframe, snap.window, snap.hedge)
    with sqlite3.connect(db) as conn:
        bars = load_pair_bars(
            conn,
            p.symbol_x,
            p.symbol_y,
            p.timeframe,
            end_ms=snap.time_ms + p.timeframe_ms,
            max_gap_bars=p.max_gap_bars,
        )
    engine = p.analytics(history=len(bars))
    run_bars(engine, bars)
    last = engine.history[-1]
    assert last.ts_ms == snap.time_ms
    return last.zscore


def cell(screen: WatchlistScreen, key: str, column: str) -> str:
    return screen.query_one("#wl-table", WatchTable).cell(key, column)


class Recorder(Mailbox):
    """Every snapshot the engine publishes, per pair (identity kept)."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: dict[str, list[Snapshot]] = {}

    def put(self, event: object) -> None:
        if isinstance(event, SnapshotEvent):
            self.snapshots.setdefault(event.pair, []).append(event.snapshot)


async def test_three_pairs_sharing_legs_rows_sort_export_and_open_the_monitor(
    tmp_path: Path,
) -> None:
    syms = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    pairs = [("BTCUSDT", "ETHUSDT"), ("BTCUSDT", "SOLUSDT"), ("ETHUSDT", "SOLUSDT")]
    keys = [f"{x}/{y}" for x, y in pairs]
    db = tmp_path / "w.db"
    live = split_history(universe_trades(30_000, syms, seed=7), 9_000, db)
    out = tmp_path / "exports"
    async with asyncio.timeout(120), FakeExchange(live, rate=150, restamp=True) as ex:
        cfg = app_config(db, ex.ws_base, ex.rest_base, out, window=WINDOW)
        app = QuantApp(cfg, pairs=pairs)
        rec = app.engine.subscribe(Recorder())
        async with app.run_test(size=(120, 40)) as pilot:
            wl = app.screen
            assert isinstance(wl, WatchlistScreen)
            assert wl.order() == keys
            title = str(wl.query_one("#wl-title", Static).render())
            assert "WATCHLIST" in title and "3 pairs" in title and f"W={WINDOW}" in title
            await until(lambda: ex.connections == 1 and app.feed_state == "live")
            await until(
                lambda: all(
                    (s := wl.shown.get(k)) is not None and s.zscore is not None for k in keys
                ),
                30,
            )
            # each row shows a snapshot the engine published for that pair, its z to 2 dp
            shown = dict(wl.shown)
            for k in keys:
                snap = shown[k]
                assert any(s is snap for s in rec.snapshots[k]), k
                assert (snap.symbol_x, snap.symbol_y) == tuple(k.split("/"))
                assert cell(wl, k, "z") == f"{snap.zscore:+.2f}"
                assert cell(wl, k, "pair") == "{}->{}".format(*(s[:-4] for s in k.split("/")))
                assert cell(wl, k, "fill") == "100%"
                assert len(cell(wl, k, "spark").strip()) > 0

            # one alert log for every pair, each line naming its pair; the row's last alert
            await until(lambda: any(isinstance(e, AlertEvent) for e in app.alerts), 30)
            await pilot.pause(DRAW_S + 0.1)
            fired = [e.alert for e in app.alerts if isinstance(e, AlertEvent)]
            lines = wl.query_one("#wl-log", LogLines).texts()
            assert len(lines) == len(fired)
            for line, a in zip(lines, fired, strict=True):
                x, y = a.pair.split("/")
                assert line[1] == f"{x[:-4]}->{y[:-4]}" and line[2].startswith(a.rule)
            a = fired[-1]
            assert cell(wl, a.pair, "alert") == f"{iso_utc(a.ts_ms)[11:19]} {a.value:+.2f}"

            await pilot.press("3")  # |z|, largest first
            await pilot.pause(0.1)
            order = wl.order()
            zs = [abs(wl.shown[k].zscore) for k in order]
            assert sorted(order) == sorted(keys)
            assert zs == sorted(zs, reverse=True)
            columns = wl.query_one("#wl-table", WatchTable).columns
            assert next(c.label for c in columns if c.key == "z") == "|z|▼"
            await pilot.press("3")  # again: smallest first
            await pilot.pause(0.1)
            zs = [abs(wl.shown[k].zscore) for k in wl.order()]
            assert zs == sorted(zs)

            await pilot.press("1")  # by pair: a fixed order for the summary
            await pilot.pause(0.1)
            assert wl.order() == keys
            await pilot.press("e")
            await until(lambda: list(out.glob("watchlist_*/watchlist.csv")), 20)
            (folder,) = [p for p in out.iterdir() if p.is_dir()]
            names = sorted(p.name for p in folder.iterdir())
            assert len(names) == 3 * 4 + 1
            stamp = folder.name.removeprefix("watchlist_")
            for x, y in pairs:
                for kind in ("ticks", "bars", "analytics", "alerts"):
                    assert f"{x}_{y}_1s_{stamp}_{kind}.csv" in names
            with (folder / "watchlist.csv").open() as fh:
                summary = list(csv.DictReader(fh))
            assert [r["pair"] for r in summary] == keys  # the screen's order
            for r in summary:
                assert r["window"] == str(WINDOW) and math.isfinite(float(r["zscore"]))

            top = wl.order()[0]
            await pilot.press("enter")
            await until(lambda: isinstance(app.screen, MonitorScreen))
            mon = app.screen
            assert mon.key == top and mon.info.symbol_x == top.split("/")[0]
            await until(lambda: mon.snapshot is not None and mon.snapshot.zscore is not None)
            assert any(s is mon.snapshot for s in rec.snapshots[top])
            await pilot.press("escape")
            assert app.screen is wl
            await pilot.press("enter")  # the same monitor again, kept while watched
            await until(lambda: app.screen is mon)
            await pilot.press("escape")
            assert ex.connections == 1 and app.engine.feed.feed.stats.connects == 1
            await pilot.press("q")
    assert app.return_code == 0
    # ... and equals a recompute from the database
    for k in keys:
        z = recompute_z(db, shown[k])
        assert z == pytest.approx(shown[k].zscore, rel=1e-9, abs=1e-12), k


async def test_add_and_remove_pairs_at_run_time_on_one_connection(tmp_path: Path) -> None:
    syms = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT"]
    db = tmp_path / "a.db"
    live = split_history(universe_trades(26_000, syms, seed=3), 10_000, db)
    hist = {s: stored_ids(db, s) for s in syms}
    async with asyncio.timeout(150), FakeExchange(live, rate=400, restamp=True) as ex:
        cfg = app_config(db, ex.ws_base, ex.rest_base, tmp_path, window=WINDOW)
        pairs = [("BTCUSDT", "ETHUSDT"), ("ETHUSDT", "SOLUSDT"), ("SOLUSDT", "XRPUSDT")]
        app = QuantApp(cfg, pairs=pairs)
        async with app.run_test(size=(100, 30)) as pilot:
            wl = app.screen
            assert isinstance(wl, WatchlistScreen)
            streams = {f"{s.lower()}@aggTrade" for s in syms[:4]}
            await until(lambda: trade_streams(ex) == [streams])
            await until(lambda: app.engine.feed.writer.inserted > 300)

            await pilot.press("a")
            dialog = app.screen
            assert isinstance(dialog, AddPairScreen)
            entry = dialog.query_one("#add-input", Input)
            message = dialog.query_one("#add-message", Static)
            for text, error in (
                ("btcusdt", "expected X/Y"),
                ("BTCUSDT/ETHUSDT", "already on the watchlist"),
                ("BTCUSDT/NOPEUSDT", "unknown symbol NOPEUSDT"),
            ):
                entry.value = text
                await pilot.press("enter")
                await until(lambda error=error: error in str(message.render()), 10)
                assert app.screen is dialog
            entry.value = "btcusdt adausdt"
            await pilot.press("enter")
            await until(lambda: app.screen is wl, 10)
            await until(lambda: "BTCUSDT/ADAUSDT" in wl.order())
            await until(lambda: trade_streams(ex) == [streams | {"adausdt@aggTrade"}])
            subscribed_ms = int(time.time() * 1000)
            await until(lambda: len(stored_ids(db, "ADAUSDT") - hist["ADAUSDT"]) > 50, 20)
            await until(lambda: (s := wl.shown.get("BTCUSDT/ADAUSDT")) and s.zscore is not None)

            table = wl.query_one("#wl-table", WatchTable)
            table.move_cursor(wl.order().index("SOLUSDT/XRPUSDT"))
            await pilot.press("d")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")  # not yet
            assert app.screen is wl and "SOLUSDT/XRPUSDT" in wl.order()
            await pilot.press("d", "y")
            await until(lambda: "SOLUSDT/XRPUSDT" not in wl.order())
            # XRP is no one's leg any more; SOL is still ETH/SOL's
            await until(
                lambda: trade_streams(ex) == [streams - {"xrpusdt@aggTrade"} | {"adausdt@aggTrade"}]
            )
            cut = max(t.a for t in ex.produced if t.symbol == "XRPUSDT")
            assert ("UNSUBSCRIBE", ["xrpusdt@aggTrade", "xrpusdt@markPrice@1s"]) in ex.requests
            assert ("SUBSCRIBE", ["adausdt@aggTrade", "adausdt@markPrice@1s"]) in ex.requests
            saved = load_last(db)
            assert saved is not None and saved.name is None
            assert [f"{x}/{y}" for x, y in saved.pairs] == [
                "BTCUSDT/ETHUSDT",
                "ETHUSDT/SOLUSDT",
                "BTCUSDT/ADAUSDT",
            ]
            await until(lambda: ex.done.is_set(), 120)
            await pilot.pause(1.0)
            assert ex.connections == 1 and app.engine.feed.feed.stats.connects == 1
            await pilot.press("q")
    assert app.return_code == 0
    produced: dict[str, set[int]] = {s: set() for s in syms}
    for t in ex.produced:
        produced[t.symbol].add(t.a)
    for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):  # the legs that stayed: every trade
        assert stored_ids(db, s) - hist[s] == produced[s], s
    ada = stored_ids(db, "ADAUSDT") - hist["ADAUSDT"]
    assert ada <= produced["ADAUSDT"]
    since = {t.a for t in ex.produced if t.symbol == "ADAUSDT" and t.T > subscribed_ms}
    assert len(since) > 1000 and since <= ada  # none missed once subscribed
    xrp = stored_ids(db, "XRPUSDT") - hist["XRPUSDT"]
    assert max(xrp) <= cut < max(produced["XRPUSDT"]) - 100  # none after the UNSUBSCRIBE


SIX = ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT", "FFFUSDT"]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_tmux_fifteen_pairs_at_80x24_then_reopened_without_arguments(tmp_path: Path) -> None:
    from tests.app.test_tmux import capture, wait_screen

    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.serve", "--symbols", ",".join(SIX)]
        + ["--trades", "2000000", "--rate", "300", "--restamp"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    session = f"qw{int(time.time() * 1000) % 10**8}"
    pairs = [f"{x}/{y}" for x, y in itertools.combinations(SIX, 2)]
    labels = [p.replace("USDT", "").replace("/", "->") for p in pairs]
    assert len(pairs) == 15
    try:
        port = json.loads(server.stdout.readline())["port"]
        quanttui = Path(sys.executable).with_name("quanttui")
        exe = str(quanttui) if quanttui.exists() else f"{sys.executable} -m quanttui"
        common = (
            f"--window 10 --db {tmp_path / 'w.db'} --export-dir {tmp_path / 'exp'} "
            f"--ws-url ws://127.0.0.1:{port}/market --rest-url http://127.0.0.1:{port}"
        )
        cmd = f"{exe} {' '.join(pairs)} {common}; echo EXIT=$?; {exe} {common}; echo EXIT=$?; sleep 30"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd], check=True
        )
        wait_screen(session, "WATCHLIST  15 pairs")
        row = re.compile(r"^ [▲▼ ] +(\S+->\S+) .* ([+-]\d\.\d\d) +([▁▂▃▄▅▆▇█ ]+) ")
        end = time.monotonic() + 60
        while True:
            screen = capture(session)
            lines = screen.splitlines()
            rows = {m.group(1): m for line in lines if (m := row.match(line))}
            alerts = [line for line in lines if re.search(r"\d\d:\d\d:\d\d [+-]\d\.\d\d$", line)]
            # every row with its z and a sparkline drawn (a row's first bars can come a
            # frame before its sparkline), and an alert in the log
            if len(rows) == 15 and alerts and all(m.group(3).strip() for m in rows.values()):
                break
            assert time.monotonic() < end, screen
            time.sleep(0.5)
        assert sorted(rows) == sorted(labels)  # every pair: label, z and a sparkline
        assert all(rows[k].group(3).strip() for k in rows)
        head = next(line for line in lines if "X->Y" in line)
        assert "z recent" in head and head.rstrip().endswith("last alert")
        assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        wait_screen(session, "EXIT=0")
        # a bare `quanttui` reopens the last watchlist
        screen = wait_screen(session, "WATCHLIST  15 pairs")
        assert all(label in screen for label in labels)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        end = time.monotonic() + 20
        while capture(session).count("EXIT=0") < 2:
            assert time.monotonic() < end, capture(session)
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        server.terminate()
        server.wait()


async def test_scanner_adds_to_the_saved_watchlist_and_shows_it(
    scan_db: Path,  # noqa: F811 - the scanner tests' fixture
    tmp_path: Path,
) -> None:
    """`w` on a ranking row saves the pair in the watchlist of the scan's database, `l`
    shows it live on the same engine, Enter there opens the monitor; Esc goes back each
    time."""
    from quanttui.app.scan_app import ScanApp, ScanWatchlistScreen
    from quanttui.feed.klines import Universe
    from tests.app.test_scanner import NOW, SYMBOLS, request

    save_last(scan_db, "mine", [("S05USDT", "S06USDT")])
    app = ScanApp(request(scan_db), Universe(tuple(SYMBOLS)), NOW, export_dir=str(tmp_path))
    async with asyncio.timeout(60), app.run_test(size=(100, 30)) as pilot:
        scanner = app.screen
        await until(lambda: scanner.ranked is not None, 30)
        await pilot.press("down")
        p = scanner.ranked.rows[1]
        await pilot.press("w")
        saved = load_last(scan_db)
        assert saved.name == "mine"
        assert saved.pairs == (("S05USDT", "S06USDT"), (p.x, p.y))
        await pilot.press("w")  # twice: once on the list
        assert load_last(scan_db).pairs == saved.pairs
        assert app.engine is None  # nothing runs until something is shown
        await pilot.press("l")
        await until(lambda: isinstance(app.screen, ScanWatchlistScreen))
        wl = app.screen
        assert wl.order() == ["S05USDT/S06USDT", f"{p.x}/{p.y}"]
        assert set(app.engine.pairs) == set(wl.order())
        await pilot.press("down", "enter")
        await until(lambda: isinstance(app.screen, MonitorScreen))
        assert app.screen.key == f"{p.x}/{p.y}"
        await pilot.press("escape")
        assert app.screen is wl
        await pilot.press("escape")
        assert app.screen is scanner
        await pilot.press("q")
    assert app.return_code == 0


def trade_streams(ex) -> list[set[str]]:
    """Each open connection's aggTrade streams (the markPrice ones ride along)."""
    return [{n for n in subs if n.endswith("@aggTrade")} for subs in ex.subscribed()]
