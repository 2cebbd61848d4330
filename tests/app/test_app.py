"""The app under Pilot, against the loopback fake exchange and a real SQLite file."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import inspect
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from textual.widgets import DataTable, Input, OptionList

from quanttui.analytics.backtest import BacktestParams, backtest_bars
from quanttui.app.app import QuantApp
from quanttui.app.screens.backtest import BacktestScreen
from quanttui.app.screens.help import HelpScreen
from quanttui.app.screens.rules import ConfirmRemove, RulesScreen
from quanttui.app.widgets.charts import Chart
from quanttui.app.widgets.loglines import LogLines
from quanttui.engine import Mailbox
from quanttui.engine.events import SnapshotEvent, Status
from quanttui.feed.recordings import read_ndjson
from quanttui.feed.replay import ReplaySpec, prepare_source
from quanttui.model import METRIC_NAMES, Tick
from quanttui.store.queries import load_funding_series, load_pair_bars
from tests.app.conftest import RECORDING, app_config, count_ticks
from tests.fakes.exchange import FakeExchange, Faults, synthetic_trades, trades_from_ticks
from tests.helpers import store_ticks
from tests.integration.test_backfill import kline_starts, pair_klines


async def until(pred, limit_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not pred():
        if loop.time() >= end:
            try:
                text = inspect.getsourcelines(pred)[0][0].strip()
            except OSError:
                text = "?"
            line = pred.__code__.co_firstlineno
            raise AssertionError(f"not reached in {limit_s:g}s (line {line}): {text}")
        await asyncio.sleep(0.05)


def pair_of(app: QuantApp):
    return app.engine.pairs[app.key]


def live(app: QuantApp):
    return pair_of(app).live


def cell(app: QuantApp, key: str) -> str:
    return app.monitor.metric_text(key)


def text_of(app: QuantApp, wid: str) -> str:
    return str(app.query_one(wid).render())


async def test_live_app_shows_data_every_key_works_and_quit_flushes(
    history_db: Path, real_data: Path, tmp_path: Path
) -> None:
    trades = trades_from_ticks(read_ndjson(real_data / RECORDING))
    preloaded = count_ticks(history_db)
    out = tmp_path / "exports"
    async with asyncio.timeout(90), FakeExchange(trades, rate=150, restamp=True) as ex:
        app = QuantApp(app_config(history_db, ex.ws_base, ex.rest_base, out), "BTCUSDT", "ETHUSDT")
        async with app.run_test(size=(120, 40)) as pilot:
            assert "BTCUSDT -> ETHUSDT" in text_of(app, "#title")
            assert "ETHUSDT = a + b*BTCUSDT" in text_of(app, "#title")
            await until(lambda: app.snapshot is not None and app.snapshot.zscore is not None)
            await until(lambda: app.feed_state == "live" and app.engine.feed.writer.inserted > 50)
            await until(lambda: app.snapshot.adf_p is not None)
            await pilot.pause(0.5)
            assert cell(app, "zscore") != "—" and cell(app, "adf_p") != "—"
            assert app.snapshot.bars >= 400  # history loaded from the database
            await until(lambda: "LIVE" in text_of(app, "#status"))

            await pilot.press("e")
            await until(lambda: len(list(out.glob("*.csv"))) == 4)
            files = {p.name.rsplit("_", 1)[1]: p for p in out.glob("*.csv")}
            with files["ticks.csv"].open() as fh:
                rows = list(csv.reader(fh))
            assert rows[0] == ["time", "symbol", "trade_id", "price", "qty", "is_buyer_maker"]
            assert len(rows) - 1 >= preloaded - 98  # the 98 zero rows are stored too
            assert rows[1][0].endswith("Z")
            with files["bars.csv"].open() as fh:
                bars = list(csv.reader(fh))
            with files["analytics.csv"].open() as fh:
                analytics = list(csv.reader(fh))
            # analytics of the settled bars; the bars file adds the one still open, marked 0
            # (and the next, if it opened while the export ran)
            assert bars[0][-1] == "settled"
            settled = [r for r in bars[1:] if r[-1] == "1"]
            assert len(settled) == len(analytics) - 1 > 400
            assert [r[0] for r in settled] == [r[0] for r in analytics[1:]]
            assert len(bars) - 1 - len(settled) <= 2
            assert not list(out.glob("*.part"))

            await pilot.press("t")
            assert app.params.timeframe == "1m"
            await until(lambda: live(app) is not None and live(app).params.timeframe == "1m")
            assert "1m" in text_of(app, "#title")
            await pilot.press("t", "t")
            assert app.params.timeframe == "1s"
            await pilot.press("right_square_bracket")
            assert app.params.window == 120
            await pilot.press("left_square_bracket", "left_square_bracket")
            assert app.params.window == 30
            await pilot.press("h")
            assert app.params.hedge == "log"
            await until(
                lambda: (
                    app.snapshot is not None
                    and app.snapshot.hedge == "log"
                    and app.snapshot.zscore is not None
                )
            )
            await pilot.press("s")
            assert (app.params.symbol_x, app.params.symbol_y) == ("ETHUSDT", "BTCUSDT")
            assert "ETHUSDT -> BTCUSDT" in text_of(app, "#title")
            await until(lambda: app.snapshot is not None and app.snapshot.symbol_x == "ETHUSDT")
            await pilot.press("p")
            assert app.paused and "PAUSED" in text_of(app, "#title")
            await pilot.press("p")
            assert not app.paused
            log = app.query_one("#alerts", LogLines)
            await until(lambda: len(log) > 0)
            before = set(log.keys())
            await pilot.press("c")
            assert not before & set(log.keys())  # alerts may arrive after the clear
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("question_mark")
            assert app.screen is app.monitor
            await pilot.press("q")
        received = app.engine.feed.feed.stats.ticks
    assert app.return_code == 0
    assert received > 50
    assert count_ticks(history_db) == preloaded + received


async def test_offline_app_opens_with_history_and_says_why(
    history_db: Path, tmp_path: Path
) -> None:
    app = QuantApp(
        app_config(history_db, "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path),
        "BTCUSDT",
        "ETHUSDT",
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await until(
            lambda: app.feed_state in ("offline", "reconnecting") and app.snapshot is not None
        )
        await pilot.pause(1.1)
        status = text_of(app, "#status")
        assert "OFFLINE" in status or "RECONNECTING" in status
        assert "Connect" in status or "refused" in status.lower() or "Error" in status
        assert "no trades" in status
        assert app.snapshot.zscore is not None
        await pilot.press("q")
    assert app.return_code == 0


async def test_empty_db_shows_dashes_not_errors(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    app = QuantApp(
        app_config(db, "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path),
        "BTCUSDT",
        "ETHUSDT",
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: live(app) is not None)
        await pilot.pause(1.1)
        assert cell(app, "zscore") == "—"
        assert "loading" not in text_of(app, "#status")
        assert "filling window 0/60" in text_of(app, "#status")
        await pilot.press("e")
        await until(lambda: len(list(tmp_path.glob("*.csv"))) == 4)
        await pilot.press("q")


async def test_stale_leg_is_shown(fixed_db: Path, real_data: Path, tmp_path: Path) -> None:
    trades = [
        t for t in trades_from_ticks(read_ndjson(real_data / RECORDING)) if t.symbol == "BTCUSDT"
    ]
    both = {"BTCUSDT": "TRADING", "ETHUSDT": "TRADING"}
    async with FakeExchange(trades, rate=100, restamp=True, symbols=both) as ex:
        app = QuantApp(
            app_config(fixed_db, ex.ws_base, ex.rest_base, tmp_path), "BTCUSDT", "ETHUSDT"
        )
        async with app.run_test(size=(120, 40)) as pilot:
            await until(lambda: app.engine.feed.feed.stats.per_symbol["BTCUSDT"] > 5)
            await pilot.pause(1.1)
            status = text_of(app, "#status")
            assert "ETHUSDT: no trades" in status and "LIVE" in status
            await pilot.press("q")


async def test_unwritable_export_dir_reports_and_writes_nothing(
    fixed_db: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    app = QuantApp(
        app_config(fixed_db, "ws://127.0.0.1:1/market", "http://127.0.0.1:1", blocker / "sub"),
        "BTCUSDT",
        "ETHUSDT",
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: live(app) is not None)
        await pilot.press("e")
        await until(lambda: any("Export failed" in (n.title or "") for n in app._notifications))
        failed = next(n for n in app._notifications if n.title == "Export failed")
        assert "cannot create export dir" in failed.message
        await pilot.press("q")
    assert blocker.read_text() == "x"


async def test_rules_dialog_adds_refuses_and_removes(fixed_db: Path, tmp_path: Path) -> None:
    app = QuantApp(
        app_config(fixed_db, "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path),
        "BTCUSDT",
        "ETHUSDT",
    )
    async with app.run_test(size=(80, 24)) as pilot:
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert "Rules (a)" in commands
        await pilot.press("a")
        assert isinstance(app.screen, RulesScreen)
        listed = app.screen.query_one("#rule-list", OptionList)
        assert [str(listed.get_option_at_index(i).prompt) for i in range(listed.option_count)] == [
            "abs(zscore) >= 2"
        ]
        await pilot.press(*"zscor > 2", "enter")
        errors = [n for n in app._notifications if n.title == "Rule not added"]
        assert [n.message for n in errors] == [
            "bad alert rule 'zscor > 2' at column 1: unknown metric 'zscor' (known: "
            + ", ".join(METRIC_NAMES)
            + ")"
        ]
        assert app.screen.query_one("#rule-input", Input).value == "zscor > 2"
        app.screen.query_one("#rule-input", Input).value = ""
        await pilot.press(*"corr < 0.6", "enter")
        assert [r.text for r in pair_of(app).book.rules.rules] == ["abs(zscore) >= 2", "corr < 0.6"]
        assert listed.option_count == 2
        # Tab lands on the list with the rule just added highlighted (shown even unfocused)
        assert app.screen.highlighted == "corr < 0.6"
        await pilot.press("tab")
        assert listed.has_focus and app.screen.highlighted == "corr < 0.6"
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmRemove) and app.screen.rule == "corr < 0.6"
        await pilot.press("n")  # kept
        assert isinstance(app.screen, RulesScreen)
        assert [r.text for r in pair_of(app).book.rules.rules] == ["abs(zscore) >= 2", "corr < 0.6"]
        await pilot.press("up", "delete")
        assert app.screen.rule == "abs(zscore) >= 2"
        await pilot.press("y")
        await until(lambda: [r.text for r in pair_of(app).book.rules.rules] == ["corr < 0.6"])
        assert listed.option_count == 1 and app.screen.highlighted == "corr < 0.6"
        await pilot.press("escape")
        assert not isinstance(app.screen, RulesScreen)
        await pilot.press("t")
        await until(lambda: live(app) is not None and live(app).params.timeframe == "1m")
        assert [r.text for r in pair_of(app).book.rules.rules] == ["corr < 0.6"]
        await pilot.press("q")


async def test_events_flow_recompute_then_snapshots(fixed_db: Path, tmp_path: Path) -> None:
    """The engine's events in publish order: the load's `Recomputed` first, a snapshot
    before the stationarity tests are in, then one with them."""
    app = QuantApp(
        app_config(fixed_db, "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path),
        "BTCUSDT",
        "ETHUSDT",
    )
    seen: list[tuple[str, bool]] = []

    class Recorder(Mailbox):
        def put(self, event: object) -> None:
            if isinstance(event, SnapshotEvent):
                seen.append(("snapshot", event.snapshot.adf_p is not None))
            elif not isinstance(event, Status):
                seen.append((type(event).__name__, False))

    app.engine.subscribe(Recorder())
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: ("snapshot", True) in seen)
        await until(lambda: app.snapshot is not None and app.snapshot.adf_p is not None)
        await pilot.press("q")
    names = [n for n, _ in seen]
    assert names.index("Recomputed") < names.index("snapshot")
    assert seen.index(("snapshot", False)) < seen.index(("snapshot", True))
    assert names[-1] == "Finished"


async def test_backtest_screen_runs_shows_and_exports(fixed_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    app = QuantApp(
        app_config(fixed_db, "ws://127.0.0.1:1/market", "http://127.0.0.1:1", out),
        "BTCUSDT",
        "ETHUSDT",
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: live(app) is not None)
        await pilot.press("b")
        assert isinstance(app.screen, BacktestScreen)
        await until(lambda: app.screen.report is not None)
        report = app.screen.report
        with sqlite3.connect(fixed_db) as conn:
            bars = load_pair_bars(conn, "BTCUSDT", "ETHUSDT", "1s", max_gap_bars=120)
            series = load_funding_series(conn, ["BTCUSDT", "ETHUSDT"])
        funding = (series["BTCUSDT"], series["ETHUSDT"])
        cli = backtest_bars(bars, app.params, BacktestParams(2.0, 0.0, None, 4.0), funding=funding)
        assert report.as_json() == cli.as_json()
        assert report.bars == len(bars) > 400
        assert len(report.result.trades) >= 1
        table = app.screen.query_one("#bt-trades", DataTable)
        assert table.row_count == len(report.result.trades)
        summary = str(app.screen.query_one("#bt-summary").render())
        assert f"trades {len(report.result.trades)}" in summary and "fee 4 bps" in summary
        await pilot.press("e")
        await until(lambda: len(list(out.glob("*_backtest_*.csv"))) == 2)
        (equity,) = out.glob("*_backtest_equity.csv")
        assert equity.read_text().count("\n") == report.bars + 1
        await pilot.press("escape")
        assert not isinstance(app.screen, BacktestScreen)
        await pilot.press("q")
    assert app.return_code == 0


async def test_replay_at_50x_through_the_app(real_data: Path, tmp_path: Path) -> None:
    src = prepare_source([real_data / RECORDING], tmp_path / "source.db")
    session = tmp_path / "session.db"
    cfg = app_config(session, "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path / "x")
    # A slow writer (one batch per 2 s) leaves ticks queued when the replay ends; the
    # export must still hold every one of them.
    cfg = dataclasses.replace(
        cfg, storage=dataclasses.replace(cfg.storage, flush_interval_ms=10_000)
    )
    app = QuantApp(cfg, "BTCUSDT", "ETHUSDT", replay=ReplaySpec(src, 50.0))
    async with asyncio.timeout(60), app.run_test(size=(120, 40)) as pilot:
        assert "REPLAY" in text_of(app, "#title")
        await until(lambda: app.feed_state == "replay")
        await pilot.pause(1.1)
        status = text_of(app, "#status")
        assert "REPLAY" in status and "50x" in status and "2025-12-15 08:4" in status
        await until(lambda: app.feed_state == "finished", 30)
        await until(lambda: app.snapshot is not None and app.snapshot.bars >= 400)
        assert app.snapshot.zscore is not None
        # The recording's 98 zero-price, zero-quantity rows are not trades: dropped by
        # the same drop_empty() as the live feed's, so neither the session database nor
        # the export holds them.
        assert (app.engine.feed.stats.ticks, app.engine.feed.stats.empty) == (19_182, 98)
        await pilot.press("e")
        out = tmp_path / "x"
        await until(lambda: len(list(out.glob("*.csv"))) == 4)
        (ticks_csv,) = out.glob("*_ticks.csv")
        ticks = pd.read_csv(ticks_csv)
        assert len(ticks) == 19_182
        assert (ticks.price > 0).all() and (ticks.qty > 0).all()
        await pilot.press("t")
        await until(lambda: live(app) is not None and live(app).params.timeframe == "1m")
        assert live(app).engine.bars == 7
        await pilot.press("q")
    assert app.return_code == 0
    assert count_ticks(session) == 19_182


async def test_warm_start_on_an_empty_db_shows_a_full_window_z_at_1m(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    db = tmp_path / "empty.db"
    async with FakeExchange([], klines=pair_klines(now, 300)) as ex:
        cfg = app_config(db, ex.ws_base, ex.rest_base, tmp_path, timeframe="1m")
        app = QuantApp(cfg, "BTCUSDT", "ETHUSDT")
        async with app.run_test(size=(120, 40)) as pilot:
            t0 = time.monotonic()
            await until(lambda: app.snapshot is not None and app.snapshot.zscore is not None, 5.0)
            assert time.monotonic() - t0 < 5.0
            assert app.snapshot.bars == 130  # 2W + max(10, W/10) closed minutes
            assert app.engine.backfill.state == "done"
            await pilot.press("q")
        with sqlite3.connect(db) as c:
            last = c.execute("SELECT max(open_ms) FROM klines").fetchone()[0]
        first_launch = len(ex.rest_requests)
        again = QuantApp(cfg, "BTCUSDT", "ETHUSDT")
        async with again.run_test(size=(120, 40)) as pilot:
            await until(
                lambda: again.engine.backfill is not None and again.engine.backfill.state == "done"
            )
            await pilot.press("q")
        starts = kline_starts(ex)[2:]
        assert all(s > last for s in starts)  # only minutes that closed since
        again_requests = [
            p for p in ex.rest_requests[first_launch:] if not p.startswith("/fapi/v1/funding")
        ]  # the funding warm start asks for its own history
        assert len(again_requests) <= 1 + len(starts)  # + exchangeInfo


async def test_backfill_progress_is_on_screen_and_the_ui_stays_live(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    faults = Faults(history_delay_s=1.5)
    async with FakeExchange([], klines=pair_klines(now, 300), faults=faults) as ex:
        cfg = app_config(tmp_path / "e.db", ex.ws_base, ex.rest_base, tmp_path, timeframe="1m")
        app = QuantApp(cfg, "BTCUSDT", "ETHUSDT")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(lambda: "backfilling 0/260 bars" in text_of(app, "#status"))
            await pilot.press("p")  # keys are handled while the backfill waits on the network
            assert app.paused
            await pilot.press("p")
            await until(lambda: "backfilling 130/260 bars" in text_of(app, "#status"))
            await until(lambda: app.snapshot is not None and app.snapshot.zscore is not None)
            await until(lambda: "backfilling" not in text_of(app, "#status"))
            await pilot.press("q")


async def test_leaving_without_quit_still_stops_and_flushes(
    history_db: Path, real_data: Path, tmp_path: Path
) -> None:
    """Textual's own shutdown (here: the test body raising) must end the app, not hang,
    and the writer must still be closed."""
    trades = trades_from_ticks(read_ndjson(real_data / RECORDING))[:400]
    async with FakeExchange(trades, rate=400, restamp=True) as ex:
        app = QuantApp(
            app_config(history_db, ex.ws_base, ex.rest_base, tmp_path), "BTCUSDT", "ETHUSDT"
        )
        async with asyncio.timeout(30):
            with pytest.raises(RuntimeError, match="test body failed"):
                async with app.run_test(size=(80, 24)):
                    await until(lambda: app.engine.feed.writer.inserted > 20)
                    raise RuntimeError("test body failed")
    assert app.runner.done.is_set()
    assert app.engine.feed._closed and app.engine.feed.writer._db is None


def quiet_leg_minute_ticks(t0: int) -> list[Tick]:
    """Six minutes of trades, X every second; in minute 3, Y trades only in its first
    10 s, at a level it never returns to, so that minute's Y close exists only before
    a rebuild made in the middle of the minute."""
    rng = np.random.default_rng(3)
    ticks, ids = [], {"BTCUSDT": 0, "ETHUSDT": 0}
    for s in range(360):
        ts = t0 + s * 1000 + 100
        quiet = 180 <= s < 240
        for sym, px in (("BTCUSDT", 90_000.0), ("ETHUSDT", 3000.0)):
            if sym == "ETHUSDT" and quiet and s >= 190:
                continue
            level = 50.0 if sym == "ETHUSDT" and quiet else 0.0
            ids[sym] += 1
            price = px + level + float(rng.normal(0, 1))
            ticks.append(Tick(sym, ids[sym], ts, round(price, 2), 0.01, False))
    return ticks


async def test_a_rebuild_mid_bar_keeps_the_trades_already_in_that_bar(tmp_path: Path) -> None:
    t0 = 1_765_000_000_000 - 1_765_000_000_000 % 60_000
    src = tmp_path / "src.db"
    store_ticks(src, quiet_leg_minute_ticks(t0)).close()
    session = tmp_path / "session.db"
    cfg = app_config(session, "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path, window=3)
    app = QuantApp(cfg, "BTCUSDT", "ETHUSDT", replay=ReplaySpec(src, 20.0))
    async with asyncio.timeout(60), app.run_test(size=(120, 40)) as pilot:
        await until(lambda: app.engine.feed.stats.ticks >= 2 * 190 + 5, 30)  # Y's last, X at 194 s
        assert app.engine.now() < t0 + 230_000
        await pilot.press("t")  # 1s -> 1m: the minute with Y's last trades is open
        await until(lambda: live(app) is not None and live(app).params.timeframe == "1m")
        await until(lambda: app.feed_state == "finished", 30)
        await until(lambda: live(app).engine.bars == 5)
        shown = [(m.ts_ms, m.x, m.y) for m in live(app).engine.history]
        await pilot.press("q")
    with sqlite3.connect(session) as conn:
        bars = load_pair_bars(conn, "BTCUSDT", "ETHUSDT", "1m", t0 + 300_000)
    assert shown == list(
        zip(bars.ts_ms.tolist(), bars.x.close.tolist(), bars.y.close.tolist(), strict=True)
    )
    assert shown[3][2] > 3040  # minute 3 closes on Y's raised level


async def test_trades_backfilled_after_a_stall_are_recomputed_into_the_bars(
    tmp_path: Path,
) -> None:
    """The exchange stops sending for longer than `stale_after_s`; after the reconnect
    the missed trades come over REST, too late for bars the clock has closed. The app
    recomputes, so its bars then equal a recompute from the database."""
    db = tmp_path / "stall.db"
    faults = Faults(stall_after=120)
    async with (
        asyncio.timeout(60),
        FakeExchange(synthetic_trades(600), rate=40, restamp=True, faults=faults) as ex,
    ):
        cfg = app_config(db, ex.ws_base, ex.rest_base, tmp_path, window=20)
        cfg = dataclasses.replace(
            cfg, feed=dataclasses.replace(cfg.feed, stale_after_s=1.5, backfill="off")
        )
        app = QuantApp(cfg, "BTCUSDT", "ETHUSDT")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(lambda: ex.stalls == 1, 20)
            await until(lambda: app.engine.feed.feed.stats.backfilled > 0, 20)
            await until(lambda: pair_of(app).resync.count >= 1 and live(app) is not None, 20)
            await until(lambda: ex.done.is_set(), 30)
            await pilot.pause(1.0)
            await until(lambda: pair_of(app).resync.pending is False and live(app) is not None)
            shown = [(m.ts_ms, m.x, m.y) for m in live(app).engine.history]
            gap = live(app).params.max_gap_bars
            await pilot.press("q")
    with sqlite3.connect(db) as conn:
        bars = load_pair_bars(conn, "BTCUSDT", "ETHUSDT", "1s", max_gap_bars=gap)
    keep = (bars.ts_ms >= shown[0][0]) & (bars.ts_ms <= shown[-1][0])
    stored = zip(
        bars.ts_ms[keep].tolist(),
        bars.x.close[keep].tolist(),
        bars.y.close[keep].tolist(),
        strict=True,
    )
    assert len(shown) >= 12
    assert shown == list(stored)


async def test_every_chart_keeps_up_when_snapshots_outpace_frames(
    real_data: Path, tmp_path: Path
) -> None:
    """The demo's pace (1 s bars at 5x, after a pre-filled window) publishes more
    snapshots than the screen draws pieces; the table must not starve the charts."""
    src = prepare_source([real_data / RECORDING], tmp_path / "source.db")
    cfg = app_config(tmp_path / "s.db", "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path)
    app = QuantApp(cfg, "BTCUSDT", "ETHUSDT", replay=ReplaySpec(src, 5.0, prefill_ms=120_000))
    async with asyncio.timeout(60), app.run_test(size=(120, 40)):
        charts = list(app.query(Chart))
        assert len(charts) == 3
        await until(lambda: app.snapshot is not None and app.snapshot.zscore is not None)
        await until(lambda: all(c.shown_ms is not None for c in charts), 3)
        for _ in range(6):
            await asyncio.sleep(0.5)
            now = app.snapshot.time_ms
            lags = [None if c.shown_ms is None else now - c.shown_ms for c in charts]
            assert all(lag is not None and lag <= 10_000 for lag in lags), lags
