"""The real binary on a real pty: 16-colour terminals and NO_COLOR stay legible."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.ptyrun import PtyApp

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")

SGR = re.compile(rb"\x1b\[([0-9;]*)m")
GREYS = {"30", "37", "90", "97", "40", "47", "100", "107"}


def colour_codes(data: bytes) -> tuple[set[str], bool]:
    """The basic colour parameters used, and whether any 256/true-colour one appears."""
    codes: set[str] = set()
    extended = False
    for m in SGR.finditer(data):
        params = m.group(1).decode().split(";")
        i = 0
        while i < len(params):
            p = params[i]
            if p in ("38", "48"):
                extended = True
                i += 5 if params[i + 1 : i + 2] == ["2"] else 3
                continue
            if p.isdigit() and (30 <= int(p) <= 37 or 40 <= int(p) <= 47 or 90 <= int(p) <= 107):
                codes.add(p)
            i += 1
    return codes, extended


def screen_of(fixed_db: Path, tmp_path: Path, env: dict[str, str]) -> bytes:
    app = PtyApp(
        [
            "BTCUSDT",
            "ETHUSDT",
            "--db",
            str(fixed_db),
            "--window",
            "60",
            "--backfill",
            "off",
            "--ws-url",
            "ws://127.0.0.1:1/market",
            "--rest-url",
            "http://127.0.0.1:1",
            "--export-dir",
            str(tmp_path),
        ],
        cols=80,
        rows=24,
        env=env,
    )
    assert app.pump(15, b" OFFLINE ") is not None, app.buf[-2000:]
    app.pump(2.0)
    assert app.quit() == 0
    return bytes(app.buf)


@pytest.mark.parametrize("no_color", [False, True])
def test_16_colour_terminal_and_no_color(fixed_db: Path, tmp_path: Path, no_color: bool) -> None:
    env = {"TERM": "xterm"}
    if no_color:
        env["NO_COLOR"] = "1"
    data = screen_of(fixed_db, tmp_path, env)
    codes, extended = colour_codes(data)
    assert not extended  # a 16-colour terminal gets only its 16 colours
    for text in (b"BTCUSDT -> ETHUSDT", b"OFFLINE", "±2 entry".encode(), b"ADF stat", b"UTC"):
        assert text in data
    if no_color:
        assert codes <= GREYS, codes  # NO_COLOR: black, white and greys only
    else:
        assert codes - GREYS  # real colours otherwise
