"""A `quanttui serve --web` / `quanttui web` process for the browser-view tests and
`benchmarks/bench_web.py`: started with its stderr read on a thread, its URL (and
generated token) taken from the one line it prints, its descendants (the web front and
every tab's app) tracked so none outlives the test, and a textual-serve websocket client
that speaks the page's protocol without a browser.

textual-serve's websocket, as textual.js speaks it: the page connects to
``/ws?width=W&height=H``; binary frames from the server are the app's terminal output;
text frames from the page are JSON ``["stdin", text]`` (keys), ``["resize", {"width",
"height"}]``, ``["ping", t]`` (answered ``["pong", t]``), ``["focus"]``, ``["blur"]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
URL_LINE = re.compile(r"browser view on (http://\S+?)(?:\?token=([A-Za-z0-9._~-]+))? ")


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Linux /proc)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                for child in (task / "children").read_text().split():
                    if int(child) not in out:
                        out.add(int(child))
                        todo.append(int(child))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def tab_apps(pid: int) -> set[int]:
    """The tabs' app processes below `pid` (``python -m quanttui attach``, not their
    ``sh -c``)."""
    out = set()
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
            if argv[1:4] == [b"-m", b"quanttui", b"attach"]:
                out.add(p)
    return out


class WebServer:
    """``python -m quanttui ARGS`` that prints ``browser view on URL``."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quanttui", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.seen: set[int] = set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""
        self.token: str | None = None

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with open(self.log_path, "w") as log:
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                log.write(line)
                log.flush()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_url(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                m = URL_LINE.search(line)
                if m:
                    self.url, self.token = m.group(1), m.group(2)
                    return self.url
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise AssertionError(f"exited {self.proc.returncode}:\n{self.text}")
            time.sleep(0.05)
        raise AssertionError(f"no 'browser view on' line within {timeout:g} s:\n{self.text}")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].strip("/"))

    def session_db(self) -> Path:
        """The database the server writes (the demo's temporary one included)."""
        for line in self.lines:
            m = re.search(r"\(pid \d+, db (.+)\)$", line)
            if m:
                return Path(m.group(1))
        raise AssertionError(f"no 'serving' line:\n{self.text}")

    def track(self) -> set[int]:
        """Remember the processes below the server now (the front, the tabs' apps)."""
        self.seen |= descendants(self.proc.pid)
        return self.seen

    def stop(self, timeout: float = 5.0) -> tuple[int | None, float]:
        """SIGTERM; (exit code or None if it had to be killed, seconds to exit)."""
        self.track()
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - t0
        self.kill()
        return code, took

    def leftovers(self, timeout: float = 5.0) -> list[int]:
        """Tracked processes still alive after `timeout` (then killed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(alive(p) for p in self.seen):
            time.sleep(0.1)
        left = [p for p in self.seen if alive(p)]
        for p in left:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        return left

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.track()
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)


def tab(
    url: str,
    *,
    width: int = 120,
    height: int = 40,
    headers: dict[str, str] | None = None,
    rcvbuf: int | None = None,
) -> ClientConnection:
    """A textual-serve websocket, as a browser tab opens it (see the module docstring).
    `rcvbuf`: a small socket receive buffer, for a tab that stops reading."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    ws = connect(
        f"ws://{host}:{port}/ws?width={width}&height={height}",
        sock=sock,
        additional_headers=headers or {},
        open_timeout=10,
        max_size=None,
        ping_interval=None,  # a test's tab may stop reading on purpose
    ).__enter__()  # as `with connect(...)` does (websockets 17.1 warns otherwise)
    ws.send(json.dumps(["resize", {"width": width, "height": height}]))
    return ws


def read_output(ws: ClientConnection, seconds: float, until: bytes | None = None) -> bytes:
    """The app's terminal output for `seconds`, or until it holds `until`."""
    out = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = ws.recv(timeout=max(deadline - time.monotonic(), 0.01))
        except TimeoutError:
            break
        if isinstance(msg, bytes):
            out += msg
            if until is not None and until in out:
                break
    return bytes(out)
