"""The app on a real pty against a hostile exchange: the server's control sequences are
shown escaped, never written to the terminal.

Textual draws with escape sequences of its own, so the checks are specific to the
server's: its OSC 0 title (`ESC ] 0 ; TITLEPWN`), any OSC 52 clipboard write, and its
clear-screen, which in both payloads follows the title's BEL.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ptyrun import ROOT, PtyApp

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")

ESCAPED_TITLE = b"\\x1b]0;TITLEPWN\\x07"
CSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")


def shown(buf: bytes) -> bytes:
    """The text drawn, without Textual's CSI sequences (colours and cursor moves split a
    line wherever a style changes or widgets overlap)."""
    return CSI.sub(b"", buf)


def run_app(tmp_path: Path, hostile: str, until: bytes) -> tuple[bytes, int | None, float | None]:
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.serve", "--trades", "20000", "--rate", "200"]
        + ["--hostile", hostile],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = json.loads(server.stdout.readline())["port"]
        app = PtyApp(
            ["BTCUSDT", "ETHUSDT", "--db", str(tmp_path / "a.db"), "--window", "20"]
            + ["--export-dir", str(tmp_path), "--ws-url", f"ws://127.0.0.1:{port}/market"]
            + ["--rest-url", f"http://127.0.0.1:{port}"],
            cols=200,
            rows=40,
        )
        seen = app.pump(40, until)
        app.pump(1.0)
        code = app.quit()
    finally:
        server.terminate()
        server.wait(10)
    return bytes(app.buf), code, seen


def assert_neutralised(buf: bytes) -> None:
    assert b"\x1b]0;TITLEPWN" not in buf
    assert b"\x1b]52;" not in buf
    assert b"\x07\x1b[2J" not in buf and b"\x07 \x1b[2J" not in buf
    text = shown(buf)
    assert text.count(b"TITLEPWN") == text.count(b"\\x1b]0;TITLEPWN") > 0


def test_app_shows_hostile_rest_errors_escaped(tmp_path: Path) -> None:
    """The "Symbols not verified" and "Warm start" notifications quote the REST error."""
    buf, code, seen = run_app(tmp_path, "rest", b"Warm start")
    assert_neutralised(buf)
    assert seen is not None, buf[-3000:]
    assert code == 0
    text = shown(buf)
    assert b"Symbols not verified" in text
    for escaped in (ESCAPED_TITLE, b"\\x1b]52;c;cHduZWQ=\\x07", b"[reverse]PWNED[/reverse]"):
        assert escaped in text


def test_app_shows_hostile_close_reason_escaped(tmp_path: Path) -> None:
    """The status bar shows the close reason, cut to 80 characters."""
    buf, code, seen = run_app(tmp_path, "ws", ESCAPED_TITLE + b"\\x1b[2J")
    assert_neutralised(buf)
    assert seen is not None, buf[-3000:]
    assert code == 0
    assert b"closed: received 4000 (private use) " + ESCAPED_TITLE in shown(buf)


def test_app_exit_message_shows_hostile_status_escaped(tmp_path: Path) -> None:
    """exchangeInfo gives ETHUSDT a hostile status: the app ends with one line quoting it."""
    buf, _code, seen = run_app(tmp_path, "status", b"is not trading")
    assert_neutralised(buf)
    assert seen is not None, buf[-3000:]
    assert (
        b"quanttui: error: symbol ETHUSDT is not trading (status [reverse]PWNED[/reverse] "
        b"[link=http://evil]click[/link] " + ESCAPED_TITLE
    ) in shown(buf)
