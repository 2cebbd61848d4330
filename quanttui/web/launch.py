"""Start and stop the browser view's HTTP process (`quanttui.web.front`) for a server.

The listening socket is bound here, in the server's process, before anything else
starts: a busy or unavailable address is one line and exit 1, and port 0 is resolved to
the port the kernel chose, so the URL printed is the URL that works. The socket is then
inherited by ``python -m quanttui.web.front`` (see its docstring for what it is told on
stdin), and this process keeps no copy.

The front runs in a session of its own, so a Ctrl-C in the server's terminal reaches the
server only; the server ends the front (and every tab's app, which are the front's
children, in its process group) with `WebFront.stop` and `WebFront.close`: SIGTERM and
the end of its stdin at once, then SIGKILL to the whole group after `STOP_S`. If the
server dies without that (SIGKILL), the front sees its stdin end and stops itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from quanttui.errors import UserError
from quanttui.web import TOKEN_ENV, WebSpec

STOP_S = 2.0
"""How long the front gets to close its tabs before its whole process group is killed."""
MAX_TABS = 16
"""Browser tabs open at a time (each is a process of the app, about 100 MB)."""


def bind(spec: WebSpec) -> socket.socket:
    """A listening TCP socket on the spec's address; `UserError` (exit 1) if it cannot
    be had."""
    a = spec.address
    try:
        infos = socket.getaddrinfo(a.host, a.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise UserError(f"--web {a.host}:{a.port}: cannot resolve {a.host!r} ({exc})") from None
    last: OSError | None = None
    for family, kind, proto, _name, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(128)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    why = last.strerror if last is not None and last.strerror else str(last)
    raise UserError(f"--web {a.host}:{a.port}: cannot listen there ({why})")


def tab_command(db: Path, config: str | None, pairs: Sequence[Sequence[str]] = ()) -> str:
    """The shell command each browser tab runs: this interpreter's `quanttui attach` on
    the server for `db` (textual-serve runs it with ``sh -c``)."""
    words = [sys.executable, "-m", "quanttui", "attach", "--db", str(Path(db).resolve())]
    if config:
        words += ["--config", str(Path(config).expanduser().resolve())]
    words += ["/".join(p) if len(p) == 2 else "+".join(p) for p in pairs]
    return " ".join(shlex.quote(w) for w in words)


class WebFront:
    """The browser view of one server: bound at construction, started by `start`."""

    def __init__(self, spec: WebSpec, command: str, title: str) -> None:
        self.spec = spec
        self.command = command
        self.title = title
        self.sock = bind(spec)
        self.port = int(self.sock.getsockname()[1])
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """The address to open, without any token (what `quanttui sessions` shows)."""
        a = self.spec.address
        host = socket.gethostname() if a.host in ("0.0.0.0", "::") else None
        return a.url(self.port) if host is None else f"http://{host}:{self.port}/"

    @property
    def url(self) -> str:
        """The address to open (with the token when it was generated here)."""
        return self.address + (f"?token={self.spec.token}" if self.spec.generated else "")

    def describe(self) -> str:
        """The one line the server prints about its browser view."""
        if self.spec.generated:
            return (
                f"browser view on {self.url} (a bind to {self.spec.address.host} needs a "
                "token; this one was generated and is printed only here)"
            )
        if self.spec.token is not None:
            return f"browser view on {self.url} (open it once with ?token=<your token>)"
        return f"browser view on {self.url} (this machine only; from elsewhere: ssh -L)"

    def start(self) -> WebFront:
        fd = self.sock.fileno()
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # it goes on stdin
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quanttui.web.front"],
            stdin=subprocess.PIPE,
            stdout=2,  # a tab's app's stderr, relayed by textual-serve, joins the server's
            pass_fds=(fd,),
            start_new_session=True,
            env=env,
        )
        settings = {
            "fd": fd,
            "token": self.spec.token,
            "loopback": self.spec.address.loopback,
            "command": self.command,
            "title": self.title,
            "max_tabs": MAX_TABS,
        }
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(settings).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            pass
        self.sock.close()  # the front holds it now
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Ask the front to end (non-blocking; safe in a signal handler)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGTERM)

    def close(self, timeout: float = STOP_S) -> None:
        """End the front and every tab's app within `timeout` (then SIGKILL)."""
        proc = self.proc
        if proc is None:
            self.sock.close()
            return
        self.stop()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        deadline = time.monotonic() + timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(deadline - time.monotonic(), 0.05))
        # the tabs' apps are in the front's process group: none outlives it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1.0)
