"""The scanner's database under the sequence that corrupted it (issue 33): Enter opens a
pair's monitor (its engine in a child process, writing the same file), `t` changes the
timeframe, Esc goes back, `r` refreshes the klines; the scanner's own writers (the live
kline streams, the refresh) and its read-only scans share the file with the engine's
process throughout. A real fake exchange, a real SQLite file, the real engine process."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from quanttui.app.scan_app import ScanApp
from quanttui.app.screens.monitor import MonitorScreen
from quanttui.app.screens.scanner import ScannerScreen
from quanttui.scanner import ScanRequest, refresh
from tests.app.test_app import until
from tests.fakes.exchange import FakeExchange, scan_universe, universe_trades
from tests.helpers import sqlite_locks_held


async def test_enter_timeframe_escape_refresh_leaves_the_database_sound(tmp_path: Path) -> None:
    status, infos, volumes, tape = scan_universe(8)
    syms = tuple(f"S{k:02d}USDT" for k in range(6))
    trades = universe_trades(400_000, syms, start_ms=int(time.time() * 1000), per_ms=4)
    db = tmp_path / "scan.db"
    async with (
        asyncio.timeout(150),
        FakeExchange(
            trades,
            rate=3000.0,
            restamp=True,
            symbols=status,
            infos=infos,
            volumes=volumes,
            tape=tape,
            live_klines=True,
        ) as ex,
    ):
        req = ScanRequest(db, ex.rest_base, symbols=syms, ws_url=ex.ws_base)
        now = int(time.time() * 1000)
        universe = await refresh(req, now)
        app = ScanApp(req, universe, now, export_dir=str(tmp_path / "x"), engine_process=True)
        statuses: list[str] = []
        async with app.run_test(size=(100, 30)) as pilot:
            scanner = app.screen
            assert isinstance(scanner, ScannerScreen)
            await until(lambda: scanner.ranked is not None, 40)
            streams = {f"{s.lower()}@kline_1m" for s in syms}
            await until(lambda: streams in ex.conns.values(), 20)  # its writer is open

            async def rescan() -> None:
                done = scanner.outcome
                await pilot.press("r")
                await until(lambda: scanner.outcome is not done, 40)

            await rescan()
            # the live writer's connection still holds its SQLite lock on the file: a
            # refresh or a scan that dropped it let the engine's process reset the WAL
            assert sqlite_locks_held(db)
            for _ in range(3):
                await pilot.press("enter")
                await until(lambda: isinstance(app.screen, MonitorScreen), 20)
                monitor = app.screen
                before = monitor.info.timeframe
                for _ in range(40):  # until the monitor takes keys
                    await pilot.press("t")
                    await asyncio.sleep(0.25)
                    if monitor.info.timeframe != before:
                        break
                assert monitor.info.timeframe != before
                await asyncio.sleep(1.5)  # the engine rebuilds the pair from the database
                await pilot.press("escape")
                await until(lambda: app.screen is scanner, 5)
                await rescan()
                statuses.append(str(scanner.query_one("#scan-status").render()))
                assert sqlite_locks_held(db)
            await pilot.press("q")
    assert not [s for s in statuses if "failed" in s], statuses
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = conn.execute("SELECT count(*) FROM ticks").fetchone()[0]
        assert stored > 0
    finally:
        conn.close()
