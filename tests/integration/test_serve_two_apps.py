"""Two attached app views of one server, each under Pilot in a process of its own: the
z-score each shows for a bar is the same, and the same as a third view's (`RemoteEngine`)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from quanttui.server.sessions import socket_path
from tests.app.test_app import until
from tests.fakes.exchange import FakeExchange, universe_trades
from tests.integration.test_serve import (
    RATE,
    Collector,
    runtime,  # noqa: F401 - a fixture
    server_log,
    start_server,
)

ROOT = Path(__file__).resolve().parents[2]


async def test_two_attached_apps_show_the_same_z_for_the_same_bar(
    tmp_path: Path,
    runtime: Path,  # noqa: F811
) -> None:
    db = tmp_path / "two.db"
    trades = universe_trades(40_000, ("BTCUSDT", "ETHUSDT"))
    async with asyncio.timeout(150), FakeExchange(trades, rate=RATE, restamp=True) as ex:
        server = await start_server(ex, db)
        try:
            third = Collector(socket_path(db)).start()
            await until(lambda: sum(v is not None for v in third.z.values()) >= 2, 60)
            views = [
                subprocess.Popen(  # noqa: ASYNC220
                    [sys.executable, "-m", "tests.viewprobe", str(db), "12"],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(2)
            ]
            outs = [await asyncio.to_thread(v.communicate, timeout=90) for v in views]
            third.close()
        finally:
            server.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.wait, 10)
    assert code == 0, server_log(db)
    shown = []
    for v, (out, err) in zip(views, outs, strict=True):
        assert v.returncode == 0, err[-2000:]
        shown.append({t: z for t, z in map(json.loads, out.splitlines())})
    a, b = shown
    both = sorted(set(a) & set(b))
    assert len(both) >= 5, (len(a), len(b))
    for t in both:
        assert a[t] == pytest.approx(b[t], rel=1e-12)
        assert third.z.get(t) is None or third.z[t] == pytest.approx(a[t], rel=1e-12)
    assert sum(t in third.z for t in both) >= 3
