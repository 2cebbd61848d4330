"""A replay's temporary directory (`quanttui-replay-*`, about 7 MB for the demo) is gone
after every way a run can end: quit, SIGHUP, SIGTERM, a closed terminal, and SIGKILL
(which nothing can catch: the next replay run removes it)."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from quanttui.feed.replay import (
    PID_FILE,
    SCRATCH_PREFIX,
    ReplayError,
    make_scratch_dir,
    scratch_dir,
    sweep_scratch_dirs,
)
from tests.ptyrun import ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and ptys")

GIVEN = "tests/data/ticks_2025-12-15T08-50-11.076Z.ndjson"


def scratch_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob(SCRATCH_PREFIX + "*"))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def env_for(tmp: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp)}


def wait_until(pred, limit_s: float, what: str) -> None:
    end = time.monotonic() + limit_s
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_headless_demo(tmp: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "quanttui", "demo", "--headless", "--speed", "5"],
        cwd=tmp,
        env=env_for(tmp),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:
        if line.startswith("feed: replay"):
            break
    else:
        raise AssertionError(f"the demo never started replaying (exit {proc.wait()})")
    return proc


def test_sweep_removes_only_directories_of_processes_that_are_gone(tmp_path: Path) -> None:
    def made(pid: str | None) -> Path:
        d = tmp_path / f"{SCRATCH_PREFIX}{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        (d / "session.db").write_bytes(b"x" * 1000)
        if pid is not None:
            (d / PID_FILE).write_text(pid)
        return d

    dead = made(str(dead_pid()))
    mine, parent = made(str(os.getpid())), made(str(os.getppid()))
    being_made, garbage = made(None), made("not a pid")
    other = tmp_path / "someone-else"
    other.mkdir()
    assert sweep_scratch_dirs(tmp_path) == [dead]
    assert not dead.exists()
    assert all(d.exists() for d in (mine, parent, being_made, garbage, other))
    new = make_scratch_dir(tmp_path)
    assert (new / PID_FILE).read_text() == f"{os.getpid()}\n"
    assert new.name.startswith(SCRATCH_PREFIX) and new.stat().st_mode & 0o077 == 0


def test_a_folder_that_cannot_be_made_is_a_replay_error(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGHUP)
    with pytest.raises(ReplayError, match="^cannot make a temporary folder for the replay: "):
        with scratch_dir(tmp_path / "missing"):
            pass
    assert signal.getsignal(signal.SIGHUP) == before


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_headless_demo_removes_its_directory_on_a_signal(tmp_path: Path, sig: int) -> None:
    proc = start_headless_demo(tmp_path)
    (scratch,) = scratch_dirs(tmp_path)
    assert (scratch / PID_FILE).read_text() == f"{proc.pid}\n"
    assert (scratch / "session.db").is_file()
    proc.send_signal(sig)
    assert proc.wait(30) == 0
    assert scratch_dirs(tmp_path) == []


def test_a_hangup_during_start_up_removes_the_directory_too(tmp_path: Path) -> None:
    """SIGHUP as soon as the directory exists, while the recording is still being loaded
    and before the run has handlers of its own."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "quanttui", "demo", "--headless"],
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: scratch_dirs(tmp_path), 60, "the scratch directory")
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(30) in (0, 128 + signal.SIGHUP)
    assert scratch_dirs(tmp_path) == []


def test_sigkill_leaves_the_directory_and_the_next_replay_removes_it(tmp_path: Path) -> None:
    proc = start_headless_demo(tmp_path)
    (scratch,) = scratch_dirs(tmp_path)
    proc.kill()
    proc.wait(10)
    proc.stderr.close()
    assert scratch.is_dir()  # nothing can run on SIGKILL
    nxt = subprocess.run(
        [sys.executable, "-m", "quanttui", "BTCUSDT", "SOLUSDT", "--headless"]
        + ["--replay", str(ROOT / GIVEN)],
        env=env_for(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nxt.returncode == 2, nxt.stderr
    assert scratch_dirs(tmp_path) == []


class TerminalDemo:
    """`quanttui demo` as a terminal's session leader: the pty is its controlling
    terminal, so closing the master side is a terminal window closing (the kernel hangs
    up the tty and sends SIGHUP)."""

    def __init__(self, tmp: Path) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        env = {**env_for(tmp), "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quanttui", "demo"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=tmp,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.master: int | None = master
        self.buf = bytearray()

    def read_until(self, needle: bytes, limit_s: float) -> None:
        end = time.monotonic() + limit_s
        while needle not in self.buf:
            assert self.master is not None and time.monotonic() < end, self.buf[-2000:]
            if select.select([self.master], [], [], 0.1)[0]:
                self.buf += os.read(self.master, 65536)

    def close_terminal(self) -> None:
        assert self.master is not None
        os.close(self.master)
        self.master = None

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.master is not None:
            os.close(self.master)


@pytest.mark.parametrize("how", ["close the terminal", "SIGHUP"])
def test_the_demo_app_removes_its_directory_when_its_terminal_goes(
    tmp_path: Path, how: str
) -> None:
    """Closing the terminal used to leave the app hung for ever in Textual's shutdown,
    and the directory with it; SIGHUP alone (tmux kill-session) must clean up too."""
    demo = TerminalDemo(tmp_path)
    try:
        demo.read_until(b" DEMO ", 60)
        (scratch,) = scratch_dirs(tmp_path)
        wait_until(lambda: (scratch / "session.db").is_file(), 30, "the session database")
        demo.read_until(b"REPLAY", 30)
        if how == "SIGHUP":
            demo.proc.send_signal(signal.SIGHUP)
        else:
            demo.close_terminal()
        code = demo.proc.wait(30)
        assert code in (0, 128 + signal.SIGHUP)
        assert not scratch.exists() and scratch_dirs(tmp_path) == []
    finally:
        demo.end()


@pytest.mark.parametrize("key", [b"\x03", b"q"], ids=["ctrl+c", "q"])
def test_ctrl_c_quits_the_demo_app_as_q_does(tmp_path: Path, key: bytes) -> None:
    """Textual's default for Ctrl-C is a 'Press ctrl+q to quit' hint; the README promises
    that Ctrl-C quits as `q` does: status 0 and the temporary folder removed."""
    demo = TerminalDemo(tmp_path)
    try:
        demo.read_until(b" DEMO ", 60)
        (scratch,) = scratch_dirs(tmp_path)
        demo.read_until(b"REPLAY", 30)
        assert demo.master is not None
        os.write(demo.master, key)
        end = time.monotonic() + 20
        while demo.proc.poll() is None and time.monotonic() < end:
            if select.select([demo.master], [], [], 0.1)[0]:
                try:
                    demo.buf += os.read(demo.master, 65536)
                except OSError:
                    break
        assert demo.proc.wait(10) == 0, demo.buf[-2000:]
        assert b"to quit" not in demo.buf
        assert not scratch.exists() and scratch_dirs(tmp_path) == []
    finally:
        demo.end()
