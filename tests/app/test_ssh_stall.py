"""Over SSH the terminal is the least reliable part (issue 16): a terminal that stops
reading, a pipe nobody reads, a hang-up in any state must never stall ingestion or leave
the process running.

The real binary against the fake exchange in its own process (`tests.fakes.serve`, which
answers `/debug/produced` with the ids it has sent), streaming the real recording at a
steady `RATE` trades/s into a database that already holds its history (so the screen is
full and alerts fire at once):

* the app on a 200x60 pty that is its controlling terminal, drained for 10 s, then not
  read for 60 s; the terminal fills up and Textual's output blocks;
* headless with stdout a one-page pipe that is read for 10 s, then not for 60 s, with
  enough alert rules that the pipe fills up;
* headless with stderr such a pipe, and an exchange that sends malformed frames, each
  logged as a warning from the engine's thread.

Meanwhile the database is polled read-only every 5 s: the committed trades must keep up
with what the exchange has sent, and the process's memory must stay flat. Then the
terminal is closed (the kernel hangs up the tty and sends SIGHUP) or the app gets
SIGTERM, or headless gets SIGTERM or loses its reader: the process must be gone within 5 s, with every trade the
exchange had sent in the database. The 60 s stalls are the issue's figure; they run side
by side (see `stalls`), so the module costs about one of them. Hang-ups right after `q`
(mid-shutdown) and while an export writes its files are short runs of their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from quanttui.engine.runner import COMMANDS_DRAIN_S
from quanttui.feed.recordings import read_ndjson
from quanttui.model import Tick
from tests.app.conftest import ID_OFFSET, RECORDING
from tests.conftest import real_dir
from tests.helpers import store_ticks
from tests.ptyrun import ROOT

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux ptys/pipes"),
    pytest.mark.slow,
]

RATE = 100
"""Trades/s the fake exchange sends."""
DRAIN_S = 10.0
STALL_S = 60.0
SAMPLE_S = 5.0
EXIT_S = 5.0
LAG_S = 2.0
"""How far the committed trades may trail the exchange at a sample (the writer commits
every 0.25 s at most; the rest is slack for a loaded machine)."""
PIPE_BYTES = 4096
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
CONFIG = "[alerts]\ncooldown_s = 0.0\nhysteresis = 0.0\nbell = false\n"
RULES = [f"zscore {op} {k / 4:g}" for k in range(-12, 13) for op in (">", "<")]
"""50 rules on z-score levels with no cooldown: alerts every few seconds, so that a
4 KB pipe fills within the stall."""
CTTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'quanttui', *sys.argv[1:]])"
)
"""Make the pty the child's controlling terminal, then become quanttui (same pid);
`preexec_fn` would not be safe here, since the stalls run in threads."""


# ----------------------------------------------------------------------------- parts
class Exchange:
    """`python -m tests.fakes.serve` streaming the real recording at `RATE` trades/s,
    each trade stamped with the wall clock as it is sent."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.serve", "--ndjson", str(real_dir() / RECORDING)]
            + ["--rate", str(RATE), "--restamp", *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = json.loads(self.proc.stdout.readline())["port"]

    @property
    def args(self) -> list[str]:
        base = f"127.0.0.1:{self.port}"
        return ["--ws-url", f"ws://{base}/market", "--rest-url", f"http://{base}"]

    def produced(self) -> set[tuple[str, int]]:
        """Every trade sent so far, as (symbol, id)."""
        url = f"http://127.0.0.1:{self.port}/debug/produced"
        with urllib.request.urlopen(url, timeout=10) as resp:
            ids = json.load(resp)["ids"]
        return {(sym, i) for sym, seq in ids.items() for i in seq}

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()


@contextlib.contextmanager
def exchange(*extra: str) -> Iterator[Exchange]:
    ex = Exchange(*extra)
    try:
        yield ex
    finally:
        ex.close()


def seed_history(db: Path, last: int | None = None) -> None:
    """The real recording (its `last` trades only, if given), shifted to end 2 s ago,
    ids clear of the exchange's (as the `history_db` fixture)."""
    ticks = list(read_ndjson(real_dir() / RECORDING))[-(last or 0) :]
    shift = int(time.time() * 1000) - 2000 - max(t.ts_ms for t in ticks)
    rows = [
        Tick(t.symbol, t.trade_id + ID_OFFSET, t.ts_ms + shift, t.price, t.qty, False)
        for t in ticks
    ]
    store_ticks(db, rows).close()


def live_count(db: Path) -> int:
    """Trades from the exchange committed so far, read as another process would."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
        return c.execute("SELECT count(*) FROM ticks WHERE trade_id < ?", (ID_OFFSET,)).fetchone()[
            0
        ]


def stored_ids(db: Path) -> set[tuple[str, int]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
        rows = c.execute("SELECT symbol, trade_id FROM ticks WHERE trade_id < ?", (ID_OFFSET,))
        return set(rows.fetchall())


def stored_alerts(db: Path) -> list[tuple[str, str]]:
    """(rule, time) of every stored alert, in the order they were written."""
    from quanttui.model import iso_utc

    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
        rows = c.execute("SELECT rule, ts_ms FROM alerts ORDER BY rowid").fetchall()
    return [(rule, iso_utc(ts)) for rule, ts in rows]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def pending(fd: int) -> int:
    """Bytes waiting to be read on `fd` (a pty master or a pipe's read end)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def read_for(fd: int, seconds: float, buf: bytearray, until: bytes | None = None) -> bool:
    """Read `fd` for `seconds` (or until `until` is in `buf`); False at end of file."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if until is not None and until in buf:
            return True
        if select.select([fd], [], [], min(left, 0.05))[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            buf += chunk
            del buf[: max(0, len(buf) - 1_000_000)]
    return until is None or until in buf


class Terminal:
    """`quanttui ARGS` as the session leader of a pty that is its controlling terminal:
    closing the master side is the terminal going away (the kernel hangs up the tty and
    sends SIGHUP to the session)."""

    def __init__(self, args: list[str], cols: int = 200, rows: int = 60) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLORTERM")}
        env.update(TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CTTY, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master: int | None = master
        self.buf = bytearray()

    def read(self, seconds: float, until: bytes | None = None) -> bool:
        assert self.master is not None
        return read_for(self.master, seconds, self.buf, until)

    def press(self, key: bytes) -> None:
        assert self.master is not None
        os.write(self.master, key)

    def pending(self) -> int:
        assert self.master is not None
        return pending(self.master)

    def close(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close()

    def tail(self) -> bytes:
        return bytes(self.buf[-3000:])


def session_members(sid: int) -> list[int]:
    """The live processes of session `sid` (the app and its engine process)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def session_left(sid: int, until: float) -> list[int]:
    """What is left of session `sid` at monotonic `until` (polling until then)."""
    while (left := session_members(sid)) and time.monotonic() < until:
        time.sleep(0.05)
    return left


def wait_exit(
    proc: subprocess.Popen, since: float, limit: float = 30.0
) -> tuple[int | None, float]:
    """(exit code or None if still running after `limit`, seconds from `since` to exit)."""
    try:
        code = proc.wait(limit)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - since
    return code, time.monotonic() - since


@dataclass
class Sample:
    at_s: float
    stored: int
    sent: int
    pending: int
    alerts: int = 0
    rss_mb: float = 0.0


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    code: int | None = None
    exit_s: float = 0.0
    sent: set[tuple[str, int]] = field(default_factory=set)
    missing: set[tuple[str, int]] = field(default_factory=set)
    lines: list[dict] = field(default_factory=list)
    alerts: list[tuple[str, str]] = field(default_factory=list)
    stderr: str = ""
    screen: bytes = b""
    left: list[int] = field(default_factory=list)
    """Processes of the app's session (its engine process) alive `EXIT_S` after the end."""

    def describe(self) -> str:
        rows = "\n".join(
            f"  {s.at_s:5.1f}s stored={s.stored} sent={s.sent} pending={s.pending} "
            f"alerts={s.alerts} rss={s.rss_mb:.0f}MB"
            for s in self.samples
        )
        return (
            f"code={self.code} exit={self.exit_s:.2f}s left={self.left} sent={len(self.sent)} "
            f"missing={len(self.missing)} {sorted(self.missing)[:5]}\n{rows}\n"
            f"stderr: {self.stderr[-1500:]}\nscreen: {self.screen[-1500:]!r}"
        )


def stall(
    ex: Exchange,
    db: Path,
    proc: subprocess.Popen,
    out_fd: int,
    alerts: bool = False,
) -> list[Sample]:
    """Read nothing for `STALL_S`; every `SAMPLE_S` note what is committed and sent."""
    t0 = time.monotonic()
    samples = []
    for k in range(1, int(STALL_S / SAMPLE_S) + 1):
        time.sleep(max(0.0, t0 + k * SAMPLE_S - time.monotonic()))
        assert proc.poll() is None, f"quanttui ended during the stall ({proc.returncode})"
        sent = len(ex.produced())
        samples.append(
            Sample(
                time.monotonic() - t0,
                live_count(db),
                sent,
                pending(out_fd),
                len(stored_alerts(db)) if alerts else 0,
                rss_mb(proc.pid),
            )
        )
    return samples


# ----------------------------------------------------------------------------- runs
def app_stall(tmp: Path, end: str = "hangup") -> Run:
    """`end`: "hangup" closes the terminal, "sigterm" signals the app and then closes it
    (the two processes found alive 53 minutes after their ssh sessions had ignored
    SIGTERM, stuck in Textual's shutdown)."""
    db = tmp / "app.db"
    seed_history(db)
    run = Run()
    with exchange() as ex:
        term = Terminal(
            ["BTCUSDT", "ETHUSDT", "--db", str(db), "--window", "60"]
            + ["--export-dir", str(tmp / "exp"), *ex.args]
        )
        try:
            assert term.read(60, b"ticks/s"), term.tail()
            term.read(DRAIN_S)
            assert term.master is not None
            run.samples = stall(ex, db, term.proc, term.master)
            run.sent = ex.produced()
            t0 = time.monotonic()
            if end == "sigterm":
                term.proc.send_signal(signal.SIGTERM)
            else:
                term.close()
            run.code, run.exit_s = wait_exit(term.proc, t0)
            run.left = session_left(term.proc.pid, t0 + EXIT_S)
        finally:
            run.screen = term.tail()
            term.kill()
    run.missing = run.sent - stored_ids(db)
    return run


def headless_stall(tmp: Path, end: str, blocked: str = "stdout") -> Run:
    """`blocked` is the stream that is a one-page pipe read for 10 s then not at all;
    the other goes to a file. A blocked stderr gets lines from the engine's thread: the
    exchange sends two malformed frames every 10 trades, each logged as a warning."""
    db = tmp / "headless.db"
    seed_history(db)
    cfg = tmp / "config.toml"
    cfg.write_text(CONFIG)
    run = Run()
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_BYTES)
    other = (tmp / "other.txt").open("wb")
    out = bytearray()
    streams = (
        {"stdout": w, "stderr": other} if blocked == "stdout" else {"stdout": other, "stderr": w}
    )
    with exchange(*(["--malformed-every", "10"] if blocked == "stderr" else [])) as ex:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quanttui", "BTCUSDT", "ETHUSDT", "--headless"]
            + ["--db", str(db), "--window", "60", "--config", str(cfg), *ex.args]
            + [a for rule in RULES for a in ("--alert", rule)],
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            **streams,
        )
        os.close(w)
        try:
            assert read_for(r, 60, out, b"\n"), (tmp / "other.txt").read_text()
            read_for(r, DRAIN_S, out)
            run.samples = stall(ex, db, proc, r, alerts=True)
            run.sent = ex.produced()
            t0 = time.monotonic()
            if end == "sigterm":
                proc.send_signal(signal.SIGTERM)
            else:
                os.close(r)
                r = -1
            run.code, run.exit_s = wait_exit(proc, t0)
            if r >= 0:
                read_for(r, 1.0, out)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if r >= 0:
                os.close(r)
            other.close()
    run.missing = run.sent - stored_ids(db)
    run.alerts = stored_alerts(db)
    if blocked == "stdout":
        run.stderr = (tmp / "other.txt").read_text(errors="replace")
        run.lines = [json.loads(line) for line in out.decode().splitlines() if line]
    else:
        run.stderr = out.decode(errors="replace")
        text = (tmp / "other.txt").read_text()
        run.lines = [json.loads(line) for line in text.splitlines() if line]
    return run


SCENARIOS: dict[str, Callable[[Path], Run]] = {
    "app": app_stall,
    "app-sigterm": lambda tmp: app_stall(tmp, "sigterm"),
    "headless-sigterm": lambda tmp: headless_stall(tmp, "sigterm"),
    "headless-reader-gone": lambda tmp: headless_stall(tmp, "close"),
    "headless-stderr-blocked": lambda tmp: headless_stall(tmp, "sigterm", "stderr"),
}


@pytest.fixture(scope="module")
def stalls(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Run]]]:
    """Start every selected 60 s run at once, in threads: each one is a few processes
    that mostly wait, so side by side they take as long as one."""
    wanted = []
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        if item.module is request.module and spec is not None and "scenario" in spec.params:
            wanted.append(spec.params["scenario"])
    with ThreadPoolExecutor(max(1, len(wanted))) as pool:
        yield {name: pool.submit(SCENARIOS[name], tmp_path_factory.mktemp(name)) for name in wanted}


def assert_kept_up(run: Run) -> None:
    """Committed trades trail the exchange by at most `LAG_S` at every sample, so they
    grew at the feed's rate throughout the stall."""
    assert len(run.samples) == int(STALL_S / SAMPLE_S), run.describe()
    for s in run.samples:
        assert s.sent - s.stored <= LAG_S * RATE, run.describe()
    grew = run.samples[-1].stored - run.samples[0].stored
    assert grew >= 0.8 * RATE * (run.samples[-1].at_s - run.samples[0].at_s), run.describe()


def assert_stored_everything(run: Run) -> None:
    assert run.code is not None and run.exit_s <= EXIT_S, run.describe()
    assert len(run.sent) > RATE * STALL_S
    assert not run.missing, run.describe()


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("scenario", ["app", "app-sigterm"])
def test_a_stalled_terminal_never_stops_ingestion_and_a_hangup_or_sigterm_ends_the_app(
    stalls: dict[str, Future[Run]], scenario: str
) -> None:
    run = stalls[scenario].result()
    # the terminal really stopped taking output: a full backlog that no longer moves
    # (a Linux pty holds 4,095 bytes on its master side)
    backlog = [s.pending for s in run.samples]
    assert backlog[-1] >= 4000 and len(set(backlog[-6:])) == 1, run.describe()
    assert_kept_up(run)
    assert_stored_everything(run)
    assert run.code == 0, run.describe()
    assert not run.left, run.describe()  # the engine's process went with the app


@pytest.mark.parametrize(
    "scenario", ["headless-sigterm", "headless-reader-gone", "headless-stderr-blocked"]
)
def test_a_blocked_stdout_or_stderr_never_stops_headless_ingestion_or_alerts(
    stalls: dict[str, Future[Run]], scenario: str
) -> None:
    run = stalls[scenario].result()
    # the pipe really was full for the last part of the stall
    assert all(s.pending >= PIPE_BYTES - 512 for s in run.samples[-6:]), run.describe()
    assert_kept_up(run)
    # alerts went on being evaluated and stored while nobody read them
    assert run.samples[-1].alerts > run.samples[len(run.samples) // 2].alerts, run.describe()
    # memory stays bounded: no growth beyond noise over the second half of the stall
    half = run.samples[len(run.samples) // 2 :]
    assert max(s.rss_mb for s in half) - half[0].rss_mb < 20, run.describe()
    assert_stored_everything(run)
    # what reached stdout is the stored alerts, in order (up to where the pipe stopped)
    shown = [(line["rule"], line["time"]) for line in run.lines if "rule" in line]
    assert shown and shown == run.alerts[: len(shown)], run.describe()
    assert "Traceback" not in run.stderr and "Fatal" not in run.stderr, run.stderr
    assert run.code == 0, run.describe()
    if scenario == "headless-stderr-blocked":
        assert "malformed frame (not JSON)" in run.stderr, run.stderr
    if scenario == "headless-reader-gone":
        assert "stdout has no reader any more; stopping" in run.stderr, run.stderr


def app_interrupted(tmp: Path, key: bytes) -> tuple[Run, bool, Path]:
    db = tmp / "app.db"
    seed_history(db)
    out = tmp / "exp"
    run = Run()
    with exchange() as ex:
        term = Terminal(
            ["BTCUSDT", "ETHUSDT", "--db", str(db), "--window", "60"]
            + ["--export-dir", str(out), *ex.args]
        )
        try:
            assert term.read(60, b"ticks/s"), term.tail()
            term.read(3.0)
            run.sent = ex.produced()
            term.press(key)
            if key == b"e":  # hang up while the CSVs are being written
                end = time.monotonic() + 15
                while not list(out.glob("*.part")) and time.monotonic() < end:
                    term.read(0.002)
            else:
                term.read(0.1)
            running = term.proc.poll() is None
            t0 = time.monotonic()
            term.close()
            run.code, run.exit_s = wait_exit(term.proc, t0)
            run.left = session_left(term.proc.pid, t0 + EXIT_S)
        finally:
            run.screen = term.tail()
            term.kill()
    run.missing = run.sent - stored_ids(db)
    return run, running, out


@pytest.mark.parametrize("key", [b"q", b"e"], ids=["mid-shutdown", "mid-export"])
def test_a_hangup_mid_shutdown_or_mid_export_still_flushes_and_exits(
    tmp_path: Path, key: bytes
) -> None:
    run, running, out = app_interrupted(tmp_path, key)
    assert running, run.describe()  # the hang-up came while it was still at work
    assert run.code is not None and run.exit_s <= EXIT_S, run.describe()
    assert not run.left, run.describe()
    assert not run.missing, run.describe()
    # the export in flight is given the time left to finish: `.part` files stay behind
    # only when it could not, and a CSV is never half-written under its own name
    files = sorted(p.name for p in out.glob("*")) if out.exists() else []
    parts = [f for f in files if f.endswith(".part")]
    assert not parts or run.exit_s >= COMMANDS_DRAIN_S, (files, run.describe())
    assert len(files) - len(parts) in (0, 4), files


def test_a_killed_app_takes_its_engine_process_with_it_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """SIGKILL leaves the app no say; its engine process sees its link end, commits what
    it received and exits within `EXIT_S` (nothing outlives its terminal)."""
    db = tmp_path / "app.db"
    seed_history(db)
    with exchange() as ex:
        term = Terminal(["BTCUSDT", "ETHUSDT", "--db", str(db), "--window", "60", *ex.args])
        try:
            assert term.read(60, b"ticks/s"), term.tail()
            term.read(3.0)
            members = session_members(term.proc.pid)
            assert len(members) == 2, members  # the app and its engine process
            sent = ex.produced()
            t0 = time.monotonic()
            term.proc.kill()
            left = session_left(term.proc.pid, t0 + EXIT_S)
        finally:
            term.kill()
    assert not left, left
    missing = sent - stored_ids(db)
    assert len(sent) > RATE and not missing, sorted(missing)[:5]
