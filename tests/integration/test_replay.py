"""Replay (`--replay SOURCE --speed N`) and the demo, headless, as real subprocesses."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quanttui.alerts import build_engine
from quanttui.analytics.engine import PairAnalytics
from quanttui.cli import DEMO_FILE
from quanttui.feed.recordings import read_ndjson
from quanttui.feed.replay import Replay, prepare_source
from quanttui.model import iso_utc
from quanttui.store.db import connect
from quanttui.store.queries import load_pair_bars
from tests.app.conftest import RECORDING
from tests.helpers import alert_lines, run_cli, store_ticks
from tests.ptyrun import ROOT, PtyApp

W = 30
ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[a-zA-Z]")


def offline_alerts(db: Path) -> list[tuple[str, float]]:
    """The default rule evaluated bar by bar over the bars a recompute builds, without
    the last bar (a replay's clock stops at the last trade, so that bar never closes)."""
    conn = connect(db, readonly=True)
    bars = load_pair_bars(conn, "BTCUSDT", "ETHUSDT", "1s", max_gap_bars=2 * W)
    conn.close()
    engine = PairAnalytics(W)
    rules = build_engine(
        "BTCUSDT/ETHUSDT", [], entry_z=2.0, exit_z=0.0, hysteresis=0.25, cooldown_s=30.0
    )
    out = []
    for i in range(len(bars) - 1):
        m = engine.update(int(bars.ts_ms[i]), float(bars.x.close[i]), float(bars.y.close[i]))
        for a in rules.evaluate({"zscore": m.zscore}, m.ts_ms):
            out.append((iso_utc(a.ts_ms), a.value))
    return out


@pytest.fixture
def recording_db(real_data: Path, tmp_path: Path) -> Path:
    db = tmp_path / "rec.db"
    store_ticks(db, read_ndjson(real_data / RECORDING)).close()
    return db


def test_headless_replay_at_50x_and_max_speed_match_a_recompute(
    real_data: Path, recording_db: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[alerts]\nbell = false\n")
    base = ["BTCUSDT", "ETHUSDT", "--headless", "--window", str(W), "--config", str(cfg)]
    before = hashlib.sha256(recording_db.read_bytes()).hexdigest()
    runs = {}
    for source, speed in ((real_data / RECORDING, "50"), (recording_db, "0")):
        code, out, err = run_cli(*base, "--replay", str(source), "--speed", speed)
        assert code == 0, err
        assert "feed: replay" in err and "feed: finished end of the recording" in err
        assert "stopped: 19,182 trades" in err  # 19,280 rows less the 98 zero rows
        runs[speed] = alert_lines(out)
    expected = offline_alerts(recording_db)
    assert len(expected) >= 2
    for lines in runs.values():
        assert [(a["time"], a["rule"]) for a in lines] == [
            (t, "abs(zscore) >= 2") for t, _ in expected
        ]
        for a, (_, v) in zip(lines, expected, strict=True):
            assert a["value"] == pytest.approx(v, rel=1e-9)
    assert hashlib.sha256(recording_db.read_bytes()).hexdigest() == before


def test_replay_of_binance_archive_files(tmp_path: Path) -> None:
    rows = {
        "BTCUSDT": [(1000 + i, 42000 + (i % 7), 1_704_067_200_000 + 400 * i) for i in range(600)],
        "ETHUSDT": [
            (5000 + i, 2300 + (i % 5) * 0.5, 1_704_067_200_100 + 400 * i) for i in range(600)
        ],
    }
    files = []
    for sym, rs in rows.items():
        f = tmp_path / f"{sym}-aggTrades-2024-01-01.csv"
        f.write_text("".join(f"{a},{p},0.1,{a},{a},{t},true\n" for a, p, t in rs))
        files += ["--replay", str(f)]
    code, _out, err = run_cli(
        "BTCUSDT", "ETHUSDT", "--headless", "--window", "20", *files, "--speed", "0"
    )
    assert code == 0, err
    assert "stopped: 1,200 trades" in err


def test_replay_errors_are_one_line_exit_2(recording_db: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("BTCUSDT", "ETHUSDT", "--replay", str(tmp_path / "nope.ndjson"))
    assert (code, err.strip()) == (
        2,
        f"quanttui: error: replay source {tmp_path / 'nope.ndjson'}: no such file",
    )
    code, _, err = run_cli("BTCUSDT", "SOLUSDT", "--headless", "--replay", str(recording_db))
    assert code == 2
    assert err.strip().endswith(
        f"quanttui: error: the replay source {recording_db} has no trades for SOLUSDT"
    )
    code, _, err = run_cli("BTCUSDT", "ETHUSDT", "--speed", "-1", "--replay", str(recording_db))
    assert code == 2 and "invalid speed '-1': must be >= 0" in err
    code, _, err = run_cli("BTCUSDT", "ETHUSDT", "--speed", "2")
    assert (code, err.strip()) == (2, "quanttui: error: --speed needs --replay SOURCE")


def test_demo_runs_with_the_network_unreachable(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "quanttui",
        "demo",
        "--headless",
        "--speed",
        "50",
        "--window",
        "20",
    ]
    isolated = (
        shutil.which("unshare")
        and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0
    )
    if isolated:
        cmd = ["unshare", "-rn", *cmd]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, text=True
    )
    time.sleep(8)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "feed: replay 50x" in err
    trades = int(err.split("stopped: ")[1].split(" trades")[0].replace(",", ""))
    assert trades > 5000
    for line in alert_lines(out):
        assert line["pair"] == "BTCUSDT/ETHUSDT"
    assert not list(tmp_path.iterdir())  # the demo leaves nothing behind


def test_stderr_holds_only_status_lines_even_on_flat_windows(real_data: Path) -> None:
    """The small recording's ETH leg stops after 17 s: flat windows make statsmodels warn,
    and those warnings must not reach the status stream."""
    code, out, err = run_cli(
        "BTCUSDT",
        "ETHUSDT",
        "--headless",
        "--window",
        "10",
        "--speed",
        "0",
        "--replay",
        str(real_data / "ticks_2025-11-01T09-54-08.557Z.ndjson"),
    )
    assert code == 0, err
    assert alert_lines(out) == []
    assert all(
        line.startswith(("feed: ", "headless ", "stopped: ")) for line in err.splitlines()
    ), err


def test_corrupt_gzip_recording_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "rec.ndjson.gz"
    bad.write_bytes(b"\x1f\x8b\x08truncated")
    code, _, err = run_cli("BTCUSDT", "ETHUSDT", "--replay", str(bad))
    assert code == 2
    assert err.startswith(f"quanttui: error: replay source {bad}: cannot read (")
    assert len(err.strip().splitlines()) == 1


GIVEN = f"tests/data/{RECORDING}"  # relative to the repository, where the CLI runs


def test_a_missing_symbol_names_the_recording_the_user_gave() -> None:
    """Headless: not the scratch database it was loaded into (`.../source.db`)."""
    proc = subprocess.run(
        [sys.executable, "-m", "quanttui", "BTCUSDT", "SOLUSDT", "--headless"]
        + ["--replay", GIVEN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"quanttui: error: the replay source {GIVEN} has no trades for SOLUSDT"
    )
    assert "source.db" not in proc.stderr and "quanttui-replay" not in proc.stderr


def test_a_missing_symbol_names_the_recording_the_user_gave_in_the_app() -> None:
    app = PtyApp(["BTCUSDT", "SOLUSDT", "--replay", GIVEN], cols=200, rows=30)
    app.pump(30, b"SOLUSDT\r\n")
    app.proc.wait(30)
    os.close(app.master)
    text = ANSI.sub(b"", bytes(app.buf)).decode(errors="replace")
    assert f"quanttui: error: the replay source {GIVEN} has no trades for SOLUSDT" in text
    assert "source.db" not in text and "quanttui-replay" not in text


DEMO_SPAN = "the recording spans 6 min 47 s"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            ["--timeframe", "1m"],
            f"{DEMO_SPAN}, 8 bars of 1m; the first z-score with --window 60 (ols) needs 119 "
            "(2W-1): use --timeframe 1s",
        ),
        (
            ["--timeframe", "5m", "--window", "10", "--hedge", "log"],
            f"{DEMO_SPAN}, 3 bars of 5m; the first z-score with --window 10 (log) needs 19 "
            "(2W-1): use --timeframe 1s",
        ),
        (
            ["--window", "205"],
            f"{DEMO_SPAN}, 408 bars of 1s; the first z-score with --window 205 (ols) needs 409 "
            "(2W-1): use --window 204 or less",
        ),
        (
            ["--window", "409", "--hedge", "kalman"],
            f"{DEMO_SPAN}, 408 bars of 1s; the first z-score with --window 409 (kalman) needs "
            "409 (W): use --window 408 or less",
        ),
    ],
)
def test_demo_refuses_a_window_its_recording_cannot_fill(args: list[str], reason: str) -> None:
    """Without the check, `demo --timeframe 1m` loops the recording for ever with every
    metric at "-"."""
    code, out, err = run_cli("demo", "--headless", *args)
    assert (code, out, err) == (2, "", f"quanttui: error: demo: {reason}\n")


def test_demo_at_the_largest_window_that_fits_has_a_z_score_within_one_pass() -> None:
    """W = 204 needs 2W-1 = 407 of the recording's 408 one-second bars: the first z-score
    comes at 08:50:01, inside the prefill (history: not alerted, as a live warm start's
    history is not), so the first alert at |z| >= 0.001 names 08:50:02, the first bar
    after the prefill and before the first pass ends at 08:50:02.550 (later passes are
    shifted by the recording's span)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "quanttui", "demo", "--headless", "--window", "204"]
        + ["--speed", "0", "--entry-z", "0.001"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = json.loads(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert first["time"] == "2025-12-15T08:50:02.000Z"
    assert first["metric"] == "zscore" and abs(first["value"]) >= 0.001


def test_the_demo_recording_replays_without_its_zero_rows(tmp_path: Path) -> None:
    """The demo's session database, and so its ticks export, holds the 19,182 trades of
    the recording and none of its 98 zero-price, zero-quantity rows."""
    demo = resources.files("quanttui").joinpath("data", DEMO_FILE)
    with resources.as_file(demo) as path:
        src = prepare_source([path], tmp_path / "source.db")
    conn = connect(src, readonly=True)
    assert conn.execute("SELECT count(*) FROM ticks WHERE price = 0").fetchone()[0] == 98
    conn.close()
    session = tmp_path / "session.db"

    async def replay_all() -> Replay:
        replay = Replay(src, ["BTCUSDT", "ETHUSDT"], session, speed=0)
        await replay.start()
        await asyncio.wait_for(replay.finished.wait(), 60)
        await replay.stop()
        return replay

    replay = asyncio.run(replay_all())
    assert (replay.stats.ticks, replay.stats.empty) == (19_182, 98)
    code, _, err = run_cli(
        "export", "BTCUSDT", "ETHUSDT", "--db", str(session), "--out", str(tmp_path)
    )
    assert code == 0, err
    (ticks_csv,) = tmp_path.glob("*_ticks.csv")
    ticks = pd.read_csv(ticks_csv)
    assert len(ticks) == 19_182
    assert (ticks.price > 0).all() and (ticks.qty > 0).all()


def test_the_replay_clock_never_runs_ahead_of_delivery(
    recording_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source read slower than the replay clock (a loaded machine): the clock waits at
    the next undelivered trade, so no trade is delivered at or before a time the clock
    has already shown (bars would have closed without it, and a resync would revise
    their alerts)."""
    import quanttui.feed.replay as replay_mod

    monkeypatch.setattr(replay_mod, "BATCH", 200)
    original = Replay._batches

    def slow(self: Replay, *args):
        for page in original(self, *args):
            time.sleep(0.05)  # in the reader thread, as a slow disk would be
            yield page

    monkeypatch.setattr(Replay, "_batches", slow)
    seen = {"clock": 0, "late": 0, "ticks": 0}

    async def run() -> None:
        replay: Replay

        def on_ticks(ticks) -> None:
            seen["late"] += sum(t.ts_ms <= seen["clock"] for t in ticks)
            seen["ticks"] += len(ticks)

        replay = Replay(
            recording_db, ["BTCUSDT", "ETHUSDT"], tmp_path / "s.db", speed=200, on_ticks=on_ticks
        )
        await replay.start()

        async def watch() -> None:
            while True:
                seen["clock"] = max(seen["clock"], replay.now_ms())
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        try:
            await asyncio.wait_for(replay.finished.wait(), 120)
        finally:
            watcher.cancel()
            await replay.stop()

    asyncio.run(run())
    assert seen["ticks"] > 10_000
    assert seen["late"] == 0


def test_a_loop_has_no_seam_each_pass_starts_where_the_last_ended(
    recording_db: Path, tmp_path: Path
) -> None:
    """The demo's loop: pass k's prices are the recording's times (last/first)^k per
    symbol, so the return across a seam is that of one ordinary trade, not a jump back
    to the first prices (which swung the correlation of returns once a pass)."""
    delivered: list = []

    async def run() -> None:
        two_passes = asyncio.Event()

        def on_ticks(ticks: list) -> None:
            delivered.extend(ticks)
            if len(delivered) > 19_182 * 2 + 50:
                two_passes.set()

        replay = Replay(
            recording_db, ["BTCUSDT", "ETHUSDT"], tmp_path / "s.db", speed=0, loop=True,
            on_ticks=on_ticks,
        )  # fmt: skip
        await replay.start()
        try:
            await asyncio.wait_for(two_passes.wait(), 60)
        finally:
            await replay.stop()

    asyncio.run(run())
    per_pass = 19_182
    first, second = delivered[:per_pass], delivered[per_pass : 2 * per_pass]
    for sym in ("BTCUSDT", "ETHUSDT"):
        a = [t.price for t in first if t.symbol == sym]
        b = [t.price for t in second if t.symbol == sym]
        ratio = a[-1] / a[0]
        assert b == pytest.approx([p * ratio for p in a], rel=1e-12)
        assert b[0] == pytest.approx(a[-1], rel=1e-12)  # continuous at the seam
        moves = np.abs(np.diff(np.log(a)))
        assert abs(np.log(b[0] / a[-1])) <= moves.max()
    assert second[0].ts_ms > first[-1].ts_ms
