"""`--headless` end to end: fake exchange -> feed -> bars -> alert rules -> JSON lines."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from pathlib import Path

from tests.fakes.exchange import FakeExchange, FakeTrade


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


async def test_headless_prints_exactly_the_expected_alerts(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[alerts]\ncooldown_s = 0\nhysteresis = 1.0\nbell = false\n")
    db = tmp_path / "h.db"
    async with FakeExchange(excursion_trades(), rate=20, restamp=True) as ex:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "quanttui",
            "BTCUSDT",
            "ETHUSDT",
            "--headless",
            "--alert",
            "price_y > 105",
            "--window",
            "10",
            "--config",
            str(cfg),
            "--db",
            str(db),
            "--ws-url",
            ex.ws_base,
            "--rest-url",
            ex.rest_base,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.wait_for(ex.done.wait(), 60)
        await asyncio.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [(a["pair"], a["rule"], a["metric"], a["value"], a["threshold"]) for a in lines] == [
        ("BTCUSDT/ETHUSDT", "price_y > 105", "price_y", 110.0, 105.0),
    ] * 2
    assert all(a["time"].endswith("Z") for a in lines)
    assert "stopped:" in err.decode()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM alerts").fetchone()[0] == 2
        assert c.execute("SELECT count(*) FROM ticks").fetchone()[0] == 300


async def test_bad_alert_rule_exits_2(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "quanttui",
        "BTCUSDT",
        "ETHUSDT",
        "--headless",
        "--alert",
        "zscore >> 2",
        "--db",
        str(tmp_path / "x.db"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert (
        err.decode().strip()
        == "quanttui: error: bad alert rule 'zscore >> 2' at column 9: expected a number, entry_z or exit_z, then the end"
    )
