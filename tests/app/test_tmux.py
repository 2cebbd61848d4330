"""Tried as a new user would: the real `quanttui` in tmux against the fake exchange."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")


def capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    ).stdout


def metric_value(screen: str, label: str) -> float | None:
    """The number right of `label` in the metrics table (the right-most occurrence)."""
    for line in screen.splitlines():
        if label in line:
            rest = line.rsplit(label, 1)[1].split()
            try:
                return float(rest[0]) if rest else None
            except ValueError:
                continue
    return None


def wait_screen(session: str, needle: str, limit_s: float = 40) -> str:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        screen = capture(session)
        if needle in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared:\n{capture(session)}")


def test_tmux_user_session(real_data: Path, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.serve",
            "--ndjson",
            str(real_data / "ticks_2025-12-15T08-50-11.076Z.ndjson"),
            "--rate",
            "50",
            "--restamp",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    session = f"qt{int(time.time() * 1000) % 10**8}"
    try:
        port = json.loads(server.stdout.readline())["port"]
        quanttui = Path(sys.executable).with_name("quanttui")
        exe = str(quanttui) if quanttui.exists() else f"{sys.executable} -m quanttui"
        cmd = (
            f"{exe} BTCUSDT ETHUSDT --db {tmp_path / 't.db'} --export-dir {tmp_path / 'exp'} "
            f"--ws-url ws://127.0.0.1:{port}/market --rest-url http://127.0.0.1:{port}; "
            f"echo EXIT=$?; sleep 30"
        )
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd], check=True
        )
        screen = wait_screen(session, "LIVE  BTCUSDT -> ETHUSDT")
        assert "ETHUSDT = a + b*BTCUSDT" in screen
        wait_screen(session, "ticks/s")
        subprocess.run(["tmux", "send-keys", "-t", session, "e"], check=True)
        end = time.monotonic() + 40
        while len(list((tmp_path / "exp").glob("*.csv"))) < 4:
            assert time.monotonic() < end, capture(session)
            time.sleep(0.2)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        wait_screen(session, "EXIT=0")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        server.terminate()


def test_tmux_demo_shows_numbers_without_network(tmp_path: Path) -> None:
    session = f"qd{int(time.time() * 1000) % 10**8}"
    quanttui = Path(sys.executable).with_name("quanttui")
    exe = str(quanttui) if quanttui.exists() else f"{sys.executable} -m quanttui"
    cmd = f"cd {tmp_path} && {exe} demo; echo EXIT=$?; sleep 30"
    try:
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd], check=True
        )
        screen = wait_screen(session, " DEMO  BTCUSDT -> ETHUSDT")
        assert "REPLAY" in wait_screen(session, "5x 2025-12-15")
        end = time.monotonic() + 40
        while metric_value(capture(session), " z ") is None:
            assert time.monotonic() < end, capture(session)
            time.sleep(0.2)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        screen = wait_screen(session, "EXIT=0")
        assert "Traceback" not in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
