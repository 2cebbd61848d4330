"""A hostile exchange cannot drive the user's terminal through `record` or `--headless`.

The fake exchange answers every REST call with a Binance-style error whose `msg` carries
Rich markup, an OSC 0 title set, an OSC 52 clipboard write and a clear-screen, or closes
every websocket with such a reason. The real binary runs against it; nothing it writes
may hold an ESC byte (neither mode draws with escape sequences when its output is a
pipe), and the server's text must still be there, escaped.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.fakes.exchange import HOSTILE, HOSTILE_CLOSE, FakeExchange, Faults, synthetic_trades
from tests.helpers import exchange_args, spawn

ESCAPED_TITLE = b"\\x1b]0;TITLEPWN\\x07"
ESCAPED_CLEAR = b"\\x1b[2J"
ESCAPED_CLIPBOARD = b"\\x1b]52;c;cHduZWQ=\\x07"
ELLIPSIS = "…".encode()


async def run_until(ex: FakeExchange, needle: bytes, *args: str) -> tuple[int, bytes, bytes]:
    """`quanttui ARGS` against `ex` until `needle` appears on stderr, then SIGINT:
    (exit code, stdout, stderr)."""
    proc = await spawn(*args, *exchange_args(ex))
    assert proc.stderr is not None
    err = b""
    try:
        async with asyncio.timeout(40):
            while needle not in err:
                line = await proc.stderr.readline()
                assert line, err.decode(errors="replace")
                err += line
    finally:
        proc.send_signal(signal.SIGINT)
    out, rest = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out, err + rest


def assert_neutralised(*streams: bytes) -> None:
    for data in streams:
        assert b"\x1b" not in data, data[-3000:]
        assert b"TITLEPWN\x07" not in data


def rest_exchange(msg: str = HOSTILE) -> FakeExchange:
    """Hostile REST, a working stream that drops every 100 frames (so the gaps it leaves
    are logged as not filled, with the REST error)."""
    faults = Faults(hostile_rest=msg, disconnect_every=100)
    return FakeExchange(synthetic_trades(20_000), rate=200, faults=faults)


def close_exchange() -> FakeExchange:
    """Working REST; every websocket closed at once with the hostile reason."""
    trading = {"BTCUSDT": "TRADING", "ETHUSDT": "TRADING"}
    return FakeExchange([], symbols=trading, faults=Faults(close_reason=HOSTILE_CLOSE))


async def test_record_shows_hostile_rest_errors_escaped(tmp_path: Path) -> None:
    async with rest_exchange() as ex:
        code, out, err = await run_until(
            ex, b"not filled", "record", "BTCUSDT", "ETHUSDT", "--db", str(tmp_path / "r.db")
        )
    assert code == 0, err.decode(errors="replace")
    assert_neutralised(out, err)
    lines = err.splitlines()
    warning = next(x for x in lines if x.startswith(b"quanttui: warning: could not verify"))
    backfill = next(x for x in lines if x.startswith(b"backfill skipped"))
    gap = next(x for x in lines if b"not filled" in x)  # a log record, through the guard
    for line in (warning, backfill, gap):
        for escaped in (ESCAPED_TITLE, ESCAPED_CLIPBOARD, ESCAPED_CLEAR):
            assert escaped in line, line
        assert b"[reverse]PWNED[/reverse] [link=http://evil]click[/link]" in line


async def test_record_shows_hostile_close_reason_escaped(tmp_path: Path) -> None:
    async with close_exchange() as ex:
        code, out, err = await run_until(
            ex,
            b"(closed: received 4000",
            "record",
            "BTCUSDT",
            "ETHUSDT",
            "--db",
            str(tmp_path / "r.db"),
            "--status-every",
            "0.3",
        )
    assert code == 0, err.decode(errors="replace")
    assert_neutralised(out, err)
    status = next(x for x in err.splitlines() if b"(closed: received 4000" in x)
    assert status.startswith(b"[reconnecting] ")
    assert ESCAPED_TITLE + ESCAPED_CLEAR + ESCAPED_CLIPBOARD + b" [reverse]PWNED" in status


async def test_headless_shows_hostile_rest_errors_escaped(tmp_path: Path) -> None:
    async with rest_exchange() as ex:
        code, out, err = await run_until(
            ex,
            b"backfill skipped",
            "BTCUSDT",
            "ETHUSDT",
            "--headless",
            "--db",
            str(tmp_path / "h.db"),
        )
    assert code == 0, err.decode(errors="replace")
    assert_neutralised(out, err)
    lines = err.splitlines()
    warning = next(x for x in lines if x.startswith(b"quanttui: warning: could not verify"))
    backfill = next(x for x in lines if x.startswith(b"backfill skipped"))
    for line in (warning, backfill):
        assert ESCAPED_TITLE in line and ESCAPED_CLIPBOARD in line and ESCAPED_CLEAR in line


async def test_headless_shows_hostile_close_reason_escaped(tmp_path: Path) -> None:
    async with close_exchange() as ex:
        code, out, err = await run_until(
            ex,
            b"feed: reconnecting closed:",
            "BTCUSDT",
            "ETHUSDT",
            "--headless",
            "--db",
            str(tmp_path / "h.db"),
        )
    assert code == 0, err.decode(errors="replace")
    assert_neutralised(out, err)
    line = next(x for x in err.splitlines() if x.startswith(b"feed: reconnecting closed:"))
    assert line.startswith(
        b"feed: reconnecting closed: received 4000 (private use) "
        + ESCAPED_TITLE
        + ESCAPED_CLEAR
        + ESCAPED_CLIPBOARD
        + b" [reverse]PWNED[/reverse]"
    )


async def test_a_1_mb_rest_error_is_cut_with_an_ellipsis(tmp_path: Path) -> None:
    async with rest_exchange(HOSTILE + " " + "A" * 1_000_000) as ex:
        code, out, err = await run_until(
            ex, b"backfill skipped", "record", "BTCUSDT", "ETHUSDT", "--db", str(tmp_path / "r.db")
        )
    assert code == 0, err.decode(errors="replace")
    assert_neutralised(out, err)
    lines = err.decode().splitlines()
    assert max(len(x) for x in lines) <= 400, max(len(x) for x in lines)
    warning = next(x for x in lines if x.startswith("quanttui: warning: could not verify"))
    backfill = next(x for x in lines if x.startswith("backfill skipped"))
    for line in (warning, backfill):
        assert "AAAA…" in line  # the message is cut where it is quoted, with an ellipsis
        assert "\\x1b]0;TITLEPWN" in line


async def test_cli_error_line_shows_hostile_symbol_status_escaped(tmp_path: Path) -> None:
    """exchangeInfo's `status` for ETHUSDT is the hostile text: exit 2 with one line."""
    status = {"BTCUSDT": "TRADING", "ETHUSDT": HOSTILE}
    async with FakeExchange([], symbols=status) as ex:
        proc = await spawn(
            "record", "BTCUSDT", "ETHUSDT", "--db", str(tmp_path / "r.db"), *exchange_args(ex)
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert_neutralised(out, err)
    assert err.decode() == (
        "quanttui: error: symbol ETHUSDT is not trading (status [reverse]PWNED[/reverse] "
        "[link=http://evil]click[/link] \\x1b]0;TITLEPWN\\x07 \\x1b]52;c;cHduZWQ=\\x07 "
        "\\x1b[2J)\n"
    )
