"""`quanttui attach --headless PAIRS...` against a real server (`quanttui serve X/Y` on the
loopback fake exchange): a basket the server lacks is added to it (every view sees it in
the server's welcome) and the headless view prints only the lines of what it named; a
pair with a symbol the exchange does not list gets one line and exit code 2, and the
server goes on unchanged."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from quanttui.modes.headless import _keys
from quanttui.server.client import probe
from quanttui.server.sessions import socket_path
from tests.app.test_app import until
from tests.fakes.exchange import FakeExchange
from tests.helpers import exchange_args, run_cli, store_ticks
from tests.integration.test_basket_headless import LEGS, history_ticks
from tests.integration.test_serve import runtime  # noqa: F401 - a fixture
from tests.integration.test_serve_basket import paused_live_trades

KEY = "+".join(LEGS)
PAIR = "BTCUSDT/ETHUSDT"


def test_an_entry_names_its_alerts_either_way_round() -> None:
    keys = _keys([("BTCUSDT", "ETHUSDT"), LEGS])
    assert keys == {"BTCUSDT/ETHUSDT", "ETHUSDT/BTCUSDT", KEY}


async def test_attach_headless_adds_what_it_names_and_prints_only_that(
    tmp_path: Path,
    runtime: Path,  # noqa: F811
) -> None:
    db = tmp_path / "s.db"
    store_ticks(db, history_ticks(int(time.time() * 1000) - 500)).close()
    path = socket_path(db)
    log = db.with_suffix(".serve.log")
    async with asyncio.timeout(180), FakeExchange(paused_live_trades(), shift=True) as ex:
        cmd = [sys.executable, "-m", "quanttui", "serve", PAIR, "--db", str(db)]
        cmd += [*exchange_args(ex), "--backfill", "off", "--timeframe", "1s", "--window", "30"]
        with log.open("wb") as err:
            server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)  # noqa: ASYNC220
        try:
            await until(lambda: probe(path) is not None or server.poll() is not None, 30)
            assert server.poll() is None, log.read_text()
            assert probe(path)["pairs"] == [PAIR]

            code, out, err_text = await asyncio.to_thread(
                run_cli, "attach", "--headless", "--db", str(db), "NOPEUSDT/BTCUSDT", timeout=60
            )
            assert code == 2, (out, err_text)
            lines = err_text.strip().splitlines()
            assert lines[-1].startswith("quanttui: error: cannot add NOPEUSDT/BTCUSDT: "), lines
            assert "NOPEUSDT" in lines[-1][len("quanttui: error: cannot add NOPEUSDT/BTCUSDT") :]
            assert "Traceback" not in err_text and out == ""
            assert server.poll() is None and probe(path)["pairs"] == [PAIR]

            headless = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "quanttui", "attach", "--headless", "--db", str(db), KEY],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            await until(lambda: (w := probe(path)) is not None and KEY in w["pairs"], 60)
            assert probe(path)["pairs"] == [PAIR, KEY]
            await asyncio.wait_for(ex.done.wait(), 90)
            await asyncio.sleep(2.0)
        finally:
            server.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.wait, 10)
        assert code == 0, log.read_text()
        out_b, err_b = await asyncio.to_thread(headless.communicate, timeout=20)
    assert headless.returncode == 0, err_b.decode()[-2000:]
    lines = [json.loads(x) for x in out_b.decode().splitlines() if x.strip()]
    snaps = [s["snapshot"]["pair"] for s in lines if "snapshot" in s]
    assert snaps == [KEY], (lines[-3:], err_b.decode()[-2000:])
    assert all(a["pair"] == KEY for a in lines if "rule" in a), lines
