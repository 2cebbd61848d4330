"""`--headless` end to end: fake exchange -> feed -> bars -> alert rules -> JSON lines."""

from __future__ import annotations

import asyncio
import math
import re
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from quanttui.model import Tick, iso_utc, parse_iso_ms
from quanttui.store.queries import load_pair_bars
from tests.fakes.exchange import FakeExchange, FakeTrade, Faults, synthetic_trades
from tests.helpers import alert_lines, exchange_args, spawn, store_ticks

W = 20
RATE = 40
CALM_AMPLITUDE = 0.5
EXCURSION = 30.0


def _x(i: int) -> float:
    """A deterministic wiggle for the X leg, so the hedge regression is well posed."""
    return 100.0 + 3.0 * math.sin(i / 7.0) + 1.5 * math.sin(i / 2.3)


def _calm(i: int) -> float:
    """Y = 2 X + a slow sine: within any 20 s window |z| stays well under 1.75."""
    return 2.0 * _x(i) + CALM_AMPLITUDE * math.sin(2 * math.pi * i / (W * RATE))


def history_ticks(end_ms: int) -> list[Tick]:
    """60 s of calm 1s history (4 trades per leg per second) ending at `end_ms`."""
    out = []
    n = 60 * 4
    for k in range(n):
        ts = end_ms - (n - k) * 250
        i = -n + k
        out.append(Tick("BTCUSDT", 1 + k, ts, _x(i * RATE // 4), 0.01, False))
        out.append(Tick("ETHUSDT", 1 + k, ts, _calm(i * RATE // 4), 0.01, False))
    return out


def z_excursion_trades() -> list[FakeTrade]:
    """20 trade pairs/s, both legs of a pair at the same T: calm 3 s, Y +30 for 3 s, calm
    6 s, Y -30 for 3 s, calm 3 s.

    Each excursion is a large spread shock against a calm window, so it must fire the
    default rule abs(zscore) >= 2 exactly once; the second one is negative so that the
    first (still inside the 20-bar window) cannot mask it; calm bars after each shock
    bring |z| under 2 - hysteresis, which re-arms the rule.
    """
    out = []
    phases = [(3, 0.0), (3, EXCURSION), (6, 0.0), (3, -EXCURSION), (3, 0.0)]
    i = 0
    for seconds, shift in phases:
        for _ in range(seconds * RATE // 2):
            t = i * 1000 // (RATE // 2)
            out.append(FakeTrade("BTCUSDT", 1000 + i, f"{_x(i):.6f}", "0.01", t, False))
            out.append(FakeTrade("ETHUSDT", 1000 + i, f"{_calm(i) + shift:.6f}", "0.01", t, False))
            i += 1
    return out


def reference_z(x: np.ndarray, y: np.ndarray, w: int) -> np.ndarray:
    """z_t from the README definitions with plain numpy: OLS on each window, each bar's
    spread at its own time, then the rolling z of those spreads (ddof 1)."""
    s = np.full(x.size, np.nan)
    for t in range(w - 1, x.size):
        b, a = np.polyfit(x[t - w + 1 : t + 1], y[t - w + 1 : t + 1], 1)
        s[t] = y[t] - a - b * x[t]
    z = np.full(x.size, np.nan)
    for t in range(2 * w - 2, x.size):
        win = s[t - w + 1 : t + 1]
        z[t] = (s[t] - win.mean()) / win.std(ddof=1)
    return z


async def run_headless(
    ex: FakeExchange, cfg: Path, db: Path, *args: str
) -> tuple[int, bytes, bytes]:
    """`quanttui BTCUSDT ETHUSDT --headless ARGS` against `ex` until it has sent every
    trade, then 2 s more, then SIGINT: (exit code, stdout, stderr)."""
    proc = await spawn(
        "BTCUSDT",
        "ETHUSDT",
        "--headless",
        *args,
        "--config",
        str(cfg),
        "--db",
        str(db),
        *exchange_args(ex),
    )
    await asyncio.wait_for(ex.done.wait(), 60)
    await asyncio.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_headless_z_excursion_prints_exactly_the_expected_alerts(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[alerts]\ncooldown_s = 0\nhysteresis = 0.25\nbell = false\n")
    db = tmp_path / "h.db"
    store_ticks(db, history_ticks(int(time.time() * 1000) - 500)).close()
    started_ms = time.time() * 1000
    async with FakeExchange(z_excursion_trades(), shift=True) as ex:
        code, out, err = await run_headless(ex, cfg, db, "--window", str(W))
    assert code == 0, err.decode()
    live_from = parse_iso_ms(re.search(r"live from (\S+)", err.decode()).group(1))
    assert started_ms - 1000 <= live_from <= started_ms + 15_000  # the load's end, on the grid
    lines = alert_lines(out)

    with sqlite3.connect(db) as conn:
        bars = load_pair_bars(conn, "BTCUSDT", "ETHUSDT", "1s", max_gap_bars=2 * W)
        stored_alerts = conn.execute("SELECT ts_ms, rule, value FROM alerts").fetchall()
    z = reference_z(bars.x.close, bars.y.close, W)
    expected, armed = [], True
    for t in np.flatnonzero((bars.ts_ms >= live_from) & np.isfinite(z)):
        if armed and abs(z[t]) >= 2.0:
            armed = False
            expected.append((iso_utc(int(bars.ts_ms[t])), z[t]))
        elif not armed and abs(z[t]) < 2.0 - 0.25:
            armed = True
    assert len(expected) == 2
    assert expected[0][1] > 2.0 and expected[1][1] < -2.0
    assert [(a["time"], a["pair"], a["rule"], a["metric"], a["threshold"]) for a in lines] == [
        (t, "BTCUSDT/ETHUSDT", "abs(zscore) >= 2", "zscore", 2.0) for t, _ in expected
    ]
    for a, (_, zt) in zip(lines, expected, strict=True):
        assert a["value"] == pytest.approx(zt, rel=1e-9)
    assert [r[1] for r in stored_alerts] == ["abs(zscore) >= 2"] * 2


def excursion_trades() -> list[FakeTrade]:
    """20 trades/s; ETH at 100, then 110 for 3 s, back to 100, 110 again, then 100."""
    out = []
    ids = {"BTCUSDT": 100, "ETHUSDT": 500}
    phases = [100, 110, 100, 110, 100]
    for level in phases:
        for i in range(60):
            sym = "BTCUSDT" if i % 2 else "ETHUSDT"
            ids[sym] += 1
            price = "90000.0" if sym == "BTCUSDT" else f"{level:.1f}"
            out.append(FakeTrade(sym, ids[sym], price, "0.01", 0, False))
    return out


async def test_headless_price_rule_on_a_known_price_excursion(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[alerts]\ncooldown_s = 0\nhysteresis = 1.0\nbell = false\n")
    db = tmp_path / "h.db"
    async with FakeExchange(excursion_trades(), rate=20, restamp=True) as ex:
        code, out, err = await run_headless(
            ex, cfg, db, "--alert", "price_y > 105", "--window", "10"
        )
    assert code == 0, err.decode()
    lines = alert_lines(out)
    assert [(a["pair"], a["rule"], a["metric"], a["value"], a["threshold"]) for a in lines] == [
        ("BTCUSDT/ETHUSDT", "price_y > 105", "price_y", 110.0, 105.0),
    ] * 2
    assert all(a["time"].endswith("Z") for a in lines)
    assert "stopped:" in err.decode()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM alerts").fetchone()[0] == 2
        assert c.execute("SELECT count(*) FROM ticks").fetchone()[0] == 300


async def test_bad_alert_rule_exits_2(tmp_path: Path) -> None:
    proc = await spawn(
        "BTCUSDT",
        "ETHUSDT",
        "--headless",
        "--alert",
        "zscore >> 2",
        "--db",
        str(tmp_path / "x.db"),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert (
        err.decode().strip()
        == "quanttui: error: bad alert rule 'zscore >> 2' at column 9: expected a number, entry_z or exit_z, then the end"
    )


async def test_headless_recomputes_after_trades_missed_in_a_stall(tmp_path: Path) -> None:
    """A stall longer than `stale_after_s`: the missed trades come over REST after their
    bars closed, and the headless pipeline rebuilds from the database once."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[feed]\nstale_after_s = 1.5\nbackfill = "off"\n[alerts]\nbell = false\n')
    db = tmp_path / "h.db"
    faults = Faults(stall_after=120)
    async with FakeExchange(synthetic_trades(600), rate=40, restamp=True, faults=faults) as ex:
        code, _out, err = await run_headless(ex, cfg, db, "--window", "20")
    text = err.decode()
    assert code == 0, text
    assert ex.stalls == 1
    assert "recomputed from the database (1)" in text, text[-800:]
    assert re.search(r"stopped: 600 trades, \d+ alerts, [1-9]\d* recomputes", text), text[-400:]
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM ticks").fetchone()[0] == 600


async def test_two_quick_sigints_still_flush_and_exit_0(tmp_path: Path) -> None:
    """A second SIGINT during the clean shutdown changes nothing: same flush, exit 0."""
    db = tmp_path / "q.db"
    async with FakeExchange(synthetic_trades(3000), rate=500, restamp=True) as ex:
        proc = await spawn("BTCUSDT", "ETHUSDT", "--headless", "--db", str(db), *exchange_args(ex))
        for _ in range(300):
            if db.exists() and _count(db) >= 200:
                break
            await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
        received = ex.produced_ids()
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    got = re.search(r"stopped: ([\d,]+) trades", err.decode())
    assert got, err.decode()
    with sqlite3.connect(db) as c:
        stored = set(c.execute("SELECT symbol, trade_id FROM ticks").fetchall())
    assert int(got.group(1).replace(",", "")) == len(stored) and stored <= received


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute("SELECT count(*) FROM ticks").fetchone()[0]
    except sqlite3.Error:
        return 0
