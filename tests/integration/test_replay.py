"""Replay (`--replay SOURCE --speed N`) and the demo, headless, as real subprocesses."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quanttui.alerts import build_engine
from quanttui.analytics.engine import PairAnalytics
from quanttui.feed.recordings import read_ndjson
from quanttui.model import iso_utc
from quanttui.store.db import connect
from quanttui.store.queries import load_pair_bars
from tests.app.conftest import RECORDING
from tests.helpers import run_cli, store_ticks

W = 30


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
        assert "stopped: 19,280 trades" in err
        runs[speed] = [json.loads(line) for line in out.splitlines()]
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
    assert err.strip().endswith(f"the replay source {recording_db} has no trades for SOLUSDT")
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
    for line in out.splitlines():
        assert json.loads(line)["pair"] == "BTCUSDT/ETHUSDT"
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
    assert out == ""
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
