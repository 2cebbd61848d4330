"""One engine under every view: the app and `--headless` replaying the same recording
agree exactly, and every alert the app shows is what the database's analytics say."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sqlite3
import sys
from pathlib import Path

import pandas as pd
import pytest

from quanttui.app.app import QuantApp
from quanttui.engine.events import AlertEvent, AlertWithdrawn
from quanttui.feed.replay import ReplaySpec, prepare_source
from quanttui.model import iso_utc, parse_iso_ms
from tests.app.conftest import RECORDING, app_config
from tests.helpers import thread_policies


async def until(pred, limit_s: float = 30.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not pred():
        assert loop.time() < end, f"not reached in {limit_s:g}s: {what}"
        await asyncio.sleep(0.05)


def standing(app: QuantApp) -> list:
    """The app's alerts that stand (emitted and not withdrawn), in order."""
    gone = {
        (e.alert.ts_ms, e.alert.rule, e.alert.value)
        for e in app.alerts
        if isinstance(e, AlertWithdrawn)
    }
    return [
        e.alert
        for e in app.alerts
        if isinstance(e, AlertEvent) and (e.alert.ts_ms, e.alert.rule, e.alert.value) not in gone
    ]


@pytest.mark.parametrize("engine_process", [False, True], ids=["engine-thread", "engine-process"])
async def test_headless_and_the_app_give_the_same_alerts_and_final_snapshot(
    real_data: Path, tmp_path: Path, engine_process: bool
) -> None:
    """Also with the engine in a process of its own, as the CLI runs the app: every event
    crosses the link (pickled) and must arrive whole and in order."""
    recording = real_data / RECORDING
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "quanttui",
        "BTCUSDT",
        "ETHUSDT",
        "--headless",
        "--window",
        "60",
        "--speed",
        "0",
        "--replay",
        str(recording),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    rows = [json.loads(line) for line in out.decode().splitlines()]
    headless_alerts = [(r["time"], r["rule"], r["value"]) for r in rows if "rule" in r]
    (final,) = [r["snapshot"] for r in rows if "snapshot" in r]
    assert len(headless_alerts) >= 3

    src = prepare_source([recording], tmp_path / "source.db")
    cfg = app_config(tmp_path / "s.db", "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path)
    app = QuantApp(
        cfg, "BTCUSDT", "ETHUSDT", replay=ReplaySpec(src, 0.0), engine_process=engine_process
    )
    async with asyncio.timeout(120), app.run_test(size=(120, 40)) as pilot:
        await until(lambda: app.feed_state == "finished", 90, "the replay's end")
        await until(
            lambda: (
                app.snapshot is not None and app.snapshot.time_ms == parse_iso_ms(final["time"])
            ),
            30,
            "the last bar on screen",
        )
        await until(lambda: app.snapshot.adf_p is not None, 30, "the last bar's tests")
        if engine_process and sys.platform == "linux":
            threads, policies = thread_policies(app.runner.pid)
            assert threads > 2 and policies == {os.SCHED_BATCH}  # it yields to the screen
        await pilot.pause(0.5)
        shown = app.snapshot
        app_alerts = [(iso_utc(a.ts_ms), a.rule, a.value) for a in standing(app)]
        await pilot.press("q")
        await until(lambda: app.runner.done.is_set(), 10, "the engine's end")
    assert (app.engine is None) == engine_process
    assert app.runner.result is not None and app.runner.result.code == 0
    assert app_alerts == headless_alerts
    got = json.loads(json.dumps(shown.as_json()))
    assert {k: v for k, v in final.items() if k != "pair"} == got


async def test_every_alert_of_twenty_replays_at_5x_is_what_the_export_says(
    real_data: Path, tmp_path: Path
) -> None:
    """The start-up of a prefilled 5x replay (the demo's shape) once raced the load and
    alerted on bars the database later gave differently. Twenty launches: every alert
    standing in the log equals the exported analytics' z at its bar, and holds there."""
    src = prepare_source([real_data / RECORDING], tmp_path / "source.db")
    with sqlite3.connect(src) as conn:
        lo = conn.execute("SELECT min(ts_ms) FROM ticks").fetchone()[0]
    start = parse_iso_ms("2025-12-15T08:45:50Z")
    until_ms = parse_iso_ms("2025-12-15T08:46:05Z")
    checked = 0
    for run in range(20):
        out = tmp_path / f"x{run}"
        cfg = app_config(
            tmp_path / f"s{run}.db", "ws://127.0.0.1:1/market", "http://127.0.0.1:1", out
        )
        spec = ReplaySpec(src, 5.0, prefill_ms=start - lo)
        app = QuantApp(cfg, "BTCUSDT", "ETHUSDT", replay=spec)
        async with asyncio.timeout(60), app.run_test(size=(100, 30)) as pilot:
            await until(lambda app=app: app.engine.now() >= until_ms, 40, "the replay clock")
            await pilot.press("e")
            await until(lambda out=out: len(list(out.glob("*_analytics.csv"))) == 1, 20, "export")
            alerts = standing(app)
            await pilot.press("q")
        (csv,) = out.glob("*_analytics.csv")
        z = pd.read_csv(csv).set_index("time")["zscore"]
        assert alerts, f"run {run}: no alert by 08:46:05"
        for a in alerts:
            stored = float(z[iso_utc(a.ts_ms)])
            assert math.isclose(a.value, stored, rel_tol=1e-9, abs_tol=1e-12), (run, a, stored)
            assert abs(stored) >= a.threshold
            checked += 1
    assert checked >= 20
