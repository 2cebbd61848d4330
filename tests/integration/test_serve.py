"""`quanttui serve` and the views that attach to it: a real server process on the loopback
fake exchange, real Unix sockets, views as real processes (`attach --headless`), in this
process (`RemoteEngine`) and under Pilot (the app); and the socket's defences against
hostile input and other users."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from quanttui.config import load_config
from quanttui.engine.events import AlertEvent, SnapshotEvent, Status
from quanttui.engine.mailbox import Mailbox
from quanttui.server import protocol as P
from quanttui.server.client import RemoteEngine, handshake, probe, read_frame
from quanttui.server.server import peer_uid
from quanttui.server.sessions import list_sessions, socket_path
from tests.app.test_app import until
from tests.fakes.exchange import FakeExchange, synthetic_trades, universe_trades
from tests.helpers import exchange_args, thread_policies

RATE = 400.0


class Collector:
    """A view in this process: every snapshot's z by bar time, the alerts, the status."""

    def __init__(self, path: Path, history: bool = True) -> None:
        self.box = Mailbox()
        self.remote = RemoteEngine(path, self.box, history=history)
        self.z: dict[int, float | None] = {}
        self.alerts: list[AlertEvent] = []
        self.status: Status | None = None
        self.snapshots = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Collector:
        self.remote.connect().start()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.box.wait(0.1)
            events, latest = self.box.drain()
            for ev in [*events, *latest]:
                if isinstance(ev, SnapshotEvent) and ev.snapshot.time_ms is not None:
                    self.z[ev.snapshot.time_ms] = ev.snapshot.zscore
                    self.snapshots += 1
                elif isinstance(ev, AlertEvent):
                    self.alerts.append(ev)
                elif isinstance(ev, Status):
                    self.status = ev

    def close(self) -> None:
        self.remote.stop()
        self._stop.set()
        self._thread.join(2)


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    return d


def serve_cmd(ex: FakeExchange, db: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "quanttui",
        "serve",
        "BTCUSDT",
        "ETHUSDT",
        "--db",
        str(db),
        *exchange_args(ex),
        "--backfill",
        "off",
        "--timeframe",
        "1s",
        "--window",
        "20",
        "--entry-z",
        "1",
        *extra,
    ]


async def start_server(ex: FakeExchange, db: Path, *extra: str) -> subprocess.Popen:
    err = open(db.with_suffix(".serve.log"), "wb")  # noqa: ASYNC230, SIM115 - its stderr
    proc = subprocess.Popen(serve_cmd(ex, db, *extra), stdout=subprocess.DEVNULL, stderr=err)  # noqa: ASYNC220
    err.close()
    await until(lambda: probe(socket_path(db)) is not None or proc.poll() is not None, 30)
    assert proc.poll() is None, server_log(db)
    return proc


def server_log(db: Path) -> str:
    return db.with_suffix(".serve.log").read_text(errors="replace")


def stored_ids(db: Path) -> set[tuple[str, int]]:
    with sqlite3.connect(db) as c:
        return set(c.execute("SELECT symbol, trade_id FROM ticks").fetchall())


async def test_views_attach_detach_and_die_while_the_server_stores_every_trade(
    tmp_path: Path, runtime: Path
) -> None:
    db = tmp_path / "d.db"
    trades = universe_trades(60_000, ("BTCUSDT", "ETHUSDT"))
    async with asyncio.timeout(170), FakeExchange(trades, rate=RATE, restamp=True) as ex:
        server = await start_server(ex, db)
        path = socket_path(db)
        try:
            st = os.stat(path)
            assert (
                st.st_mode & 0o777 == 0o600
                and os.stat(runtime / "quanttui").st_mode & 0o777 == 0o700
            )
            assert [s.pid for s in list_sessions()] == [server.pid]
            if sys.platform == "linux":  # its wake-ups do not preempt attached screens
                threads, policies = thread_policies(server.pid)
                assert threads > 2 and policies == {os.SCHED_BATCH}

            doomed = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "quanttui", "attach", "--headless", "--db", str(db)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            b = Collector(path).start()
            await until(lambda: sum(v is not None for v in b.z.values()) >= 3, 90)

            from quanttui.app.app import QuantApp
            from quanttui.app.screens.monitor import MonitorScreen

            cfg = load_config(use_user_file=False, overrides={("storage", "db"): str(db)})
            app = QuantApp(cfg, pairs=[("BTCUSDT", "ETHUSDT")], engine_process=True, attach=path)
            shown: list = []
            async with app.run_test(size=(100, 30)):
                await until(lambda: isinstance(app.screen, MonitorScreen), 10)
                mon = app.screen
                # the first frame after attaching already shows the server's state
                await until(lambda: mon.snapshot is not None and mon.snapshot.bars >= 20, 5)
                assert list_sessions()[0].viewers == 3
                for _ in range(5):
                    await asyncio.sleep(1.0)
                    s = mon.snapshot
                    if s.zscore is not None:
                        shown.append((s.time_ms, s.zscore))
                # the app's alert log holds what the server fired before it attached
                assert len(app.alerts) >= min(len(b.alerts), 1)
                await until(lambda: all(t in b.z for t, _ in shown), 5)
            assert shown and all(b.z[t] == pytest.approx(z, rel=1e-12) for t, z in shown)

            # kill -9 one view: the server and the other view carry on
            doomed.send_signal(signal.SIGKILL)
            await asyncio.to_thread(doomed.wait, 5)
            n = b.snapshots
            await until(lambda: b.snapshots >= n + 3, 10)
            assert server.poll() is None

            # detach, let alerts fire, re-attach: the alerts of the gap are shown
            b.close()
            gone_at = int(time.time() * 1000)
            await asyncio.sleep(6)
            c = Collector(path).start()
            await until(lambda: c.status is not None, 10)
            await asyncio.sleep(0.5)
            away = [a for a in c.alerts if a.alert.ts_ms >= gone_at - 1000]
            with sqlite3.connect(db) as conn:
                fired = conn.execute(
                    "SELECT count(*) FROM alerts WHERE ts_ms >= ? AND ts_ms < ?",
                    (gone_at - 1000, int(time.time() * 1000) - 6000),
                ).fetchone()[0]
            assert fired == 0 or away, "alerts fired while detached were not shown on return"
            assert c.alerts, "the re-attached view shows the recent alerts"
            c.close()
            # the ledger: every trade the exchange sent is stored, once
            await ex.stop_producing()
            produced = ex.produced_ids()
            await until(lambda: produced <= stored_ids(db), 20)
        finally:
            server.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            code = await asyncio.to_thread(server.wait, 10)
            took = time.monotonic() - t0
            err = server_log(db)
        assert code == 0 and took < 5.0, (code, took, err)
        assert not path.exists()
        with sqlite3.connect(db) as conn:
            n = conn.execute("SELECT count(*) FROM ticks").fetchone()[0]
        assert n == len(produced) and produced == stored_ids(db)


async def test_a_view_that_stops_reading_does_not_slow_ingestion(
    tmp_path: Path, runtime: Path
) -> None:
    db = tmp_path / "d.db"
    async with (
        asyncio.timeout(120),
        FakeExchange(synthetic_trades(100_000), rate=1000.0, restamp=True) as ex,
    ):
        server = await start_server(ex, db)
        path = socket_path(db)
        try:
            live = Collector(path).start()
            await until(lambda: live.status is not None and live.status.stored > 1000, 30)
            stalled, _ = handshake(path)  # never read again
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            t0, s0 = time.monotonic(), live.status.stored
            await asyncio.sleep(20)
            rate = (live.status.stored - s0) / (time.monotonic() - t0)
            assert rate >= 0.85 * 1000.0, rate
            assert probe(path) is not None
            stalled.close()
            live.close()
        finally:
            server.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(server.wait, 10) == 0


async def test_an_attached_app_on_a_pty_that_is_not_read_for_60_s_costs_no_ingest(
    tmp_path: Path, runtime: Path
) -> None:
    """`quanttui attach` on a real pty whose master nobody reads (an SSH link that stalled):
    its terminal fills and its loop stops (its reader thread still empties the socket into
    a coalescing mailbox, so the server keeps it attached); the server's ingest rate over
    those 60 s is its rate before."""
    from tests.ptyrun import PtyApp

    db = tmp_path / "p.db"
    rate = 1000.0
    async with (
        asyncio.timeout(200),
        FakeExchange(synthetic_trades(150_000), rate=rate, restamp=True) as ex,
    ):
        server = await start_server(ex, db)
        path = socket_path(db)
        view = None
        try:
            live = Collector(path, history=False).start()
            await until(lambda: live.status is not None and live.status.stored > 1000, 30)

            async def stored_rate(seconds: float) -> float:
                t0, s0 = time.monotonic(), live.status.stored
                await asyncio.sleep(seconds)
                return (live.status.stored - s0) / (time.monotonic() - t0)

            before = await stored_rate(15)
            view = PtyApp(["attach", "--db", str(db)], cols=100, rows=30)
            drawn = await asyncio.to_thread(view.pump, 30, b"BTCUSDT")
            assert drawn is not None, bytes(view.buf[-500:])
            stalled = await stored_rate(60)  # the pty's master is not read meanwhile
            assert stalled >= 0.9 * before and stalled >= 0.85 * rate, (before, stalled)
            assert (w := probe(path)) is not None and w["viewers"] == 2 and live.remote.alive
            live.close()
        finally:
            if view is not None:
                view.proc.kill()
                os.close(view.master)
            server.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(server.wait, 10) == 0


def _raw(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    return s


def _answer(s: socket.socket) -> object:
    try:
        return read_frame(s, P.MAX_SERVER_FRAME)
    except (OSError, P.ProtocolError):
        return None


async def test_hostile_clients_get_an_error_or_a_closed_socket_and_the_server_serves_on(
    tmp_path: Path, runtime: Path
) -> None:
    db = tmp_path / "d.db"
    async with asyncio.timeout(90), FakeExchange(synthetic_trades(20_000), rate=RATE) as ex:
        server = await start_server(ex, db)
        path = socket_path(db)
        try:
            s = _raw(path)
            s.sendall(os.urandom(64))
            got = _answer(s)
            assert got is None or "error" in got
            s.close()
            assert probe(path) is not None

            s = _raw(path)
            s.sendall(struct.pack(">I", 1 << 30))
            got = _answer(s)
            assert isinstance(got, dict) and "over the limit" in got["error"]
            s.close()

            s = _raw(path)
            s.sendall(P.encode({"hello": "quanttui", "version": 999}))
            got = _answer(s)
            assert isinstance(got, dict) and "protocol version 999" in got["error"]
            s.close()

            for bad, why in [
                (["call", 1, "add_pair", [1, 2], {}], "wrong type"),
                (["call", 1, "set_params", ["BTCUSDT/ETHUSDT"], {"window": "300"}], "wrong type"),
                (["call", 1, "__class__", [], {}], "unknown command"),
                (["call", 1, "remove_pair", [], {}], "takes 1 arguments"),
                ({"x": 1}, "expected a call frame"),
            ]:
                s, _ = handshake(path)
                s.settimeout(5)
                s.sendall(P.encode(bad))
                frames = []
                while (f := _answer(s)) is not None:
                    frames.append(f)
                errors = [f for f in frames if isinstance(f, list) and f and f[0] == "error"]
                assert errors and why in errors[0][1], (bad, frames[-3:])
                s.close()
                assert probe(path) is not None

            # a valid command through the same gate works
            b = Collector(path).start()
            await until(lambda: b.status is not None, 10)
            assert b.remote.call_method("add_rule", "corr < 0.5", None).result(10) == "corr < 0.5"
            with pytest.raises(RuntimeError):
                b.remote.call_method("add_rule", "zscore >>> 2", None).result(10)
            b.close()
        finally:
            server.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(server.wait, 10) == 0
        err = server_log(db)
        assert "Traceback" not in err
        assert "protocol version 999" in err


def test_peer_credentials_name_this_process_on_a_socketpair() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        assert peer_uid(a) == (os.getpid(), os.getuid())
    finally:
        a.close()
        b.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="running a client as another uid needs root")
async def test_a_connection_from_another_uid_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import tempfile

    runtime = Path(tempfile.mkdtemp(prefix="quanttui-uid-"))
    runtime.chmod(0o755)  # reachable by the other uid (tmp_path's parents are not)  # noqa: ASYNC240
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    db = tmp_path / "d.db"
    async with asyncio.timeout(60), FakeExchange(synthetic_trades(5_000), rate=RATE) as ex:
        server = await start_server(ex, db)
        path = socket_path(db)
        try:
            # open the door wide, so that only the uid check stands in the way
            os.chmod(runtime / "quanttui", 0o755)
            os.chmod(path, 0o666)
            other = (
                "import os, socket, sys\n"
                "os.setgid(65534); os.setuid(65534)\n"
                "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
                "s.sendall(bytes.fromhex(sys.argv[2]))\n"
                "try:\n"
                "    got = s.recv(100)\n"
                "except ConnectionResetError:\n"
                "    got = b''\n"
                "print(repr(got))\n"
            )
            hello = P.encode(P.hello()).hex()
            out = subprocess.run(  # noqa: ASYNC221
                [sys.executable, "-I", "-c", other, str(path), hello],
                capture_output=True,
                timeout=20,
            )
            assert out.returncode == 0, out.stderr.decode()
            assert out.stdout.strip() == b"b''"  # closed with no welcome
            assert probe(path) is not None
        finally:
            server.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(server.wait, 10) == 0
            shutil.rmtree(runtime, ignore_errors=True)
        err = server_log(db)
        assert err.count("refused a connection from uid 65534") == 1
