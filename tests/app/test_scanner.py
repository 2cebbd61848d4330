"""The scanner screen: under Pilot on a real SQLite file, on a real pty in a 16-colour
terminal and under NO_COLOR, and in tmux at 80x24 against the fake exchange."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import DataTable

from quanttui.analytics.funding import pair_carry_bps_day, signal_side
from quanttui.analytics.scan import rank_pairs
from quanttui.app.scan_app import ScanApp
from quanttui.app.screens.monitor import MonitorScreen
from quanttui.app.screens.scanner import TOP_ROWS, ScannerScreen
from quanttui.app.widgets.heatmap import BINS, CorrelationHeatmap, bin_index
from quanttui.feed.klines import Universe
from quanttui.scan_report import COLUMNS
from quanttui.scanner import ScanRequest, compute, refresh
from quanttui.store.db import connect
from quanttui.store.importer import INSERT_KLINE, kline_row
from quanttui.store.writer import UPSERT_INTERVAL, UPSERT_MARK
from tests.app.test_app import until
from tests.app.test_terminal import GREYS, colour_codes
from tests.fakes.exchange import FakeExchange, KlineTape, scan_universe
from tests.ptyrun import PtyApp

MINUTE = 60_000
ORIGIN = 1_764_547_200_000  # 2025-12-01 00:00 UTC
SYMBOLS = [f"S{k:02d}USDT" for k in range(24)]
NOW = ORIGIN + 1441 * MINUTE + 5_000  # a day of closed minutes


@pytest.fixture
def scan_db(tmp_path: Path) -> Path:
    """A day of deterministic 1m klines of 24 symbols, stored as the fetch stores them."""
    tape = KlineTape(SYMBOLS, seed=3, origin_ms=ORIGIN, minutes=1500)
    db = tmp_path / "scan.db"
    conn = connect(db)
    q = {"startTime": str(ORIGIN), "endTime": str(ORIGIN + 1440 * MINUTE - 1), "limit": "1500"}
    with conn:
        for s in SYMBOLS:
            rows = [kline_row(s, "1m", [str(v) for v in k]) for k in tape.klines(s, q)]
            assert len(rows) == 1440
            conn.executemany(INSERT_KLINE, rows)
    conn.close()
    return db


def request(db: Path) -> ScanRequest:
    dead = "127.0.0.1:9"
    return ScanRequest(db, f"http://{dead}", symbols=tuple(SYMBOLS), ws_url=f"ws://{dead}/market")


def table_pairs(app: ScanApp) -> list[tuple[str, str]]:
    table = app.screen.query_one("#scan-table", DataTable)
    return [tuple(str(k.value).split("/")) for k in table.rows]


async def test_heatmap_and_table_show_sort_by_column_and_enter_opens_the_pair(
    scan_db: Path, tmp_path: Path
) -> None:
    want = compute(request(scan_db), Universe(tuple(SYMBOLS)), NOW)
    app = ScanApp(request(scan_db), Universe(tuple(SYMBOLS)), NOW, export_dir=str(tmp_path / "x"))
    seen: list[ScannerScreen.OpenPairRequested] = []

    def hook(m: object) -> None:
        if isinstance(m, ScannerScreen.OpenPairRequested):
            seen.append(m)

    async with asyncio.timeout(60), app.run_test(size=(80, 24), message_hook=hook) as pilot:
        screen = app.screen
        assert isinstance(screen, ScannerScreen)
        heat = screen.query_one(CorrelationHeatmap)
        await until(lambda: screen.ranked is not None, 30)
        assert heat.symbols == tuple(SYMBOLS)
        assert np.array_equal(heat._bins[0, 1:], bin_index(want.result.corr[0, 1:]))
        # the top block is on screen: the header, the first symbols' labels and cells
        lines = [heat.render_line(y).text for y in range(3)]
        assert "1 ·" in lines[0] and lines[1].lstrip().startswith("1 S00") and "╲╲" in lines[1]
        by_q = rank_pairs(want.result, bar_ms=MINUTE, limit=TOP_ROWS)
        assert table_pairs(app) == [(r.y, r.x) for r in by_q]
        assert len(table_pairs(app)) == min(TOP_ROWS, 24 * 23)
        title = str(screen.query_one("#scan-title").render())
        assert "24 symbols" in title and "552 tests" in title

        await pilot.press("3")  # |z|, largest first
        await until(lambda: screen.ranked.key == "abs_z", 10)
        zs = [r.abs_z for r in screen.ranked.rows]
        assert zs == sorted(zs, reverse=True)
        assert zs[0] == pytest.approx(np.nanmax(np.abs(want.result.zscore)))
        table = screen.query_one("#scan-table", DataTable)
        assert str(table.get_cell_at((0, 5))) == f"{zs[0]:.2f}"
        col = next(c for c in table.columns.values() if c.key.value == "abs_z")
        assert str(col.label) == "|z|▼"
        await pilot.press("3")  # again: smallest first
        await until(lambda: not screen.ranked.descending, 10)
        assert screen.ranked.rows[0].abs_z == pytest.approx(np.nanmin(np.abs(want.result.zscore)))

        await pilot.press("2")  # half-life, shortest first
        await until(lambda: screen.ranked.key == "half_life", 10)
        hl = [r.half_life for r in screen.ranked.rows if math.isfinite(r.half_life)]
        assert hl == sorted(hl) and hl[0] == pytest.approx(np.nanmin(want.result.half_life))

        await pilot.press("down", "down", "enter")
        third = screen.ranked.rows[2]
        await until(lambda: bool(seen), 5)
        assert len({id(m) for m in seen}) == 1  # one request (the hook sees each hop)
        assert (seen[0].symbol_x, seen[0].symbol_y) == (third.x, third.y)
        assert app.opened == [(third.x, third.y)]
        i, j = SYMBOLS.index(third.y), SYMBOLS.index(third.x)
        assert heat.marked == (i, j)
        # the pair's monitor, in this process on the scan's database; Esc comes back
        key = f"{third.x}/{third.y}"
        await until(lambda: isinstance(app.screen, MonitorScreen) and app.screen.key == key, 10)
        assert app.engine is not None and app.engine.cfg.db_path == scan_db
        # as the scan measured it: its 1m bars, the log hedge, the lookback's 1440 bars
        info = app.screen.info
        assert (info.timeframe, info.hedge, info.window) == ("1m", "log", 1440)
        await until(lambda: app.engine.pairs[key].params.hedge == "log", 10)
        p = app.engine.pairs[key].params
        assert (p.timeframe, p.window) == ("1m", 1440)
        await pilot.press("escape")
        assert app.screen is screen

        await pilot.press("e")
        await until(lambda: list((tmp_path / "x").glob("scan_1m_*_ranking.csv")), 10)
        path = next((tmp_path / "x").glob("scan_1m_*_ranking.csv"))
        with path.open() as fh:
            rows = list(csv.reader(fh))
        assert tuple(rows[0]) == COLUMNS and len(rows) == 1 + 24 * 23
        assert (rows[1][1], rows[1][2]) == (screen.ranked.rows[0].y, screen.ranked.rows[0].x)
        await pilot.press("q")


def store_rates(db: Path, rates: dict[str, float], intervals: dict[str, int]) -> None:
    """Rates as a live session or an earlier scan leaves them: the latest mark-price update
    of each symbol, and the fundingInfo intervals."""
    conn = connect(db)
    with conn:
        conn.executemany(
            UPSERT_MARK, [(s, NOW - 1000, 10.0, 10.0, r, NOW + 3_600_000) for s, r in rates.items()]
        )
        conn.executemany(UPSERT_INTERVAL, [(s, h, NOW) for s, h in intervals.items()])
    conn.close()


async def test_carry_column_shows_each_pairs_carry_and_sorts(scan_db: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rates = {s: float(r) for s, r in zip(SYMBOLS[1:], rng.normal(1e-4, 2e-4, 23), strict=True)}
    intervals = {"S02USDT": 4, "S05USDT": 1}
    store_rates(scan_db, rates, intervals)  # S00USDT: no rate

    def expected(y: str, x: str, z: float, b: float) -> float | None:
        side = signal_side(z)
        if side is None or y not in rates or x not in rates:
            return None
        return pair_carry_bps_day(
            side, b, 1.0, 1.0, rates[x], rates[y], intervals.get(x, 8), intervals.get(y, 8),
            log_hedge=True,
        )  # fmt: skip

    app = ScanApp(request(scan_db), Universe(tuple(SYMBOLS)), NOW, export_dir=str(tmp_path))
    async with asyncio.timeout(60), app.run_test(size=(120, 30)) as pilot:
        screen = app.screen
        await until(lambda: screen.ranked is not None, 30)
        table = screen.query_one("#scan-table", DataTable)
        col = next(c for c in table.columns.values() if c.key.value == "carry_bps_day")
        assert str(col.label) == "carry bp/d"
        missing = 0
        for p in screen.ranked.rows:
            want = expected(p.y, p.x, p.zscore, p.beta)
            text = str(table.get_cell(f"{p.y}/{p.x}", "carry_bps_day"))
            assert text == ("—" if want is None else f"{want:+.1f}"), (p.y, p.x)
            if want is None:
                assert math.isnan(p.carry_bps_day)
                missing += 1
            else:
                assert abs(p.carry_bps_day - want) < 1e-9
        assert 0 < missing < len(screen.ranked.rows)

        await pilot.press("6")  # carry, largest first
        await until(lambda: screen.ranked.key == "carry_bps_day", 10)
        top = screen.ranked.rows[0]
        r = compute(request(scan_db), Universe(tuple(SYMBOLS)), NOW).result
        assert top.carry_bps_day == np.nanmax(r.carry_bps_day)
        assert str(table.get_cell_at((0, 10))) == f"{top.carry_bps_day:+.1f}"
        assert str(col.label) == "carry bp/d▼"
        await pilot.press("q")


async def test_live_kline_streams_store_each_closed_minute_and_rescan(tmp_path: Path) -> None:
    status, infos, volumes, tape = scan_universe(16)
    syms = tuple(f"S{k:02d}USDT" for k in range(10))
    async with (
        asyncio.timeout(90),
        FakeExchange([], symbols=status, infos=infos, volumes=volumes, tape=tape) as ex,
    ):
        req = ScanRequest(tmp_path / "live.db", ex.rest_base, symbols=syms, ws_url=ex.ws_base)
        now = int(time.time() * 1000)
        universe = await refresh(req, now)
        app = ScanApp(req, universe, now, export_dir=str(tmp_path))
        async with app.run_test(size=(80, 24)):
            screen = app.screen
            await until(lambda: screen.ranked is not None, 30)
            end1 = screen.outcome.meta.end_ms
            want = {f"{s.lower()}@kline_1m" for s in syms}
            await until(lambda: list(ex.conns.values()) == [want], 10)
            assert "· LIVE" in str(screen.query_one("#scan-title").render())
            assert await ex.close_minute(end1) == 2 * len(syms)  # update + final, each
            await until(lambda: screen.outcome.meta.end_ms == end1 + MINUTE, 15)
            assert screen.outcome.meta.bars == 1440 and app.minutes_closed == 1
            with sqlite3.connect(req.db_path) as c:
                got = c.execute(
                    "SELECT symbol, close FROM klines WHERE open_ms = ? ORDER BY symbol", (end1,)
                ).fetchall()
            assert [g[0] for g in got] == list(syms)
            assert got[0][1] == float(tape.row_at("S00USDT", end1)[4])
            assert ex.connections == 1


async def test_no_color_draws_the_character_ramp(
    scan_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = ScanApp(request(scan_db), Universe(tuple(SYMBOLS)), NOW, export_dir=str(tmp_path))
    async with asyncio.timeout(60), app.run_test(size=(80, 24)) as pilot:
        assert app.no_color
        screen = app.screen
        await until(lambda: screen.ranked is not None, 30)
        heat = screen.query_one(CorrelationHeatmap)
        row = heat.render_line(1).text
        chars = {ch for _, _, ch in BINS}
        drawn = set(row[heat._label_w :].replace("╲", "").replace(" ", ""))
        assert drawn and drawn <= chars
        assert "@@<.2" not in str(screen.query_one("#scan-legend").render())
        assert "··<.2" in str(screen.query_one("#scan-legend").render())
        await pilot.press("q")


def scan_screen(db: Path, tmp_path: Path, env: dict[str, str]) -> bytes:
    args = ["scan", *SYMBOLS[:12], "--db", str(db), "--rest-url", "http://127.0.0.1:9"]
    args += ["--ws-url", "ws://127.0.0.1:9/market"]
    app = PtyApp([*args, "--export-dir", str(tmp_path)], cols=80, rows=24, env=env)
    assert app.pump(30, b"x/day") is not None, app.buf[-2000:]
    assert app.pump(30, b"12 symbols") is not None, app.buf[-2000:]  # the scan is in
    app.pump(1.0)
    assert app.quit() == 0
    return bytes(app.buf)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
@pytest.mark.parametrize("no_color", [False, True])
def test_scanner_in_a_16_colour_terminal_and_no_color(
    scan_db: Path, tmp_path: Path, no_color: bool
) -> None:
    """Stored klines, exchange unreachable: the scan runs on what is stored. Offline the
    span ends at the wall clock, far after the stored day, so the test data is moved."""
    with connect(scan_db) as c:
        shift = (int(time.time() * 1000) // MINUTE - 1441) * MINUTE - ORIGIN
        c.execute(
            "UPDATE klines SET open_ms = open_ms + ?, close_ms = close_ms + ?", (shift, shift)
        )
    env = {"TERM": "xterm"} | ({"NO_COLOR": "1"} if no_color else {})
    data = scan_screen(scan_db, tmp_path, env)
    codes, extended = colour_codes(data)
    assert not extended
    for text in (b"SCAN", b"12 symbols", b"half-life", b"corr of returns"):
        assert text in data
    if no_color:
        assert codes <= GREYS, codes
        assert b"**" in data or b"##" in data or b"++" in data  # the ramp, not colour
    else:
        assert len(codes & {"41", "42", "43", "44", "45", "46"}) >= 2, codes  # cell colours


def capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    ).stdout


def wait_screen(session: str, needle: str, limit_s: float = 40) -> str:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        screen = capture(session)
        if needle in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared:\n{capture(session)}")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_tmux_scan_of_the_top_40_at_80x24(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.serve", "--scan-universe", "64"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    session = f"qs{int(time.time() * 1000) % 10**8}"
    try:
        port = json.loads(server.stdout.readline())["port"]
        cmd = (
            f"{sys.executable} -m quanttui scan --top 40 --db {tmp_path / 's.db'} "
            f"--rest-url http://127.0.0.1:{port} --ws-url ws://127.0.0.1:{port}/market "
            f"--export-dir {tmp_path / 'exp'}; "
            f"echo EXIT=$?; sleep 30"
        )
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", "-c", str(root),
             cmd],
            check=True,
        )  # fmt: skip
        screen = wait_screen(session, "SCAN 40 symbols")
        wait_screen(session, "· LIVE")  # one kline_1m connection for the 40 symbols
        screen = wait_screen(session, "q▲")  # the ranking is in the table
        lines = screen.splitlines()
        assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
        assert "1 S00" in screen and "corr of returns" in screen
        head = next(i for i, line in enumerate(lines) if "x/day" in line)
        rows = [line.split() for line in lines[head + 1 : head + 4]]
        assert [r[0] for r in rows] == ["1", "2", "3"]
        assert all(r[1].startswith("S") and r[2].startswith("S") for r in rows)
        subprocess.run(["tmux", "send-keys", "-t", session, "3"], check=True)
        screen = wait_screen(session, "|z|▼")
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        screen = wait_screen(session, " = a + b*S")  # the pair's monitor, same process
        assert "LIVE  S" in screen and " -> S" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "Escape"], check=True)
        wait_screen(session, "x/day")
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        wait_screen(session, "EXIT=0")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        server.kill()
        server.wait()
