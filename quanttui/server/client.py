"""A view's side of the server's socket: `RemoteEngine`, a drop-in for `EngineProcess`.

It has what the app and the headless view use of an engine runner (`start`,
`call_method`, `call_soon`, `stop`, `wait`, `done`, `ready`, `result`, `alive`, `pid`),
but `stop` detaches this view and leaves the server running. The protocol is
`quanttui.server.protocol`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import socket
import threading
from pathlib import Path
from typing import Any

from quanttui.engine.events import EngineReady, Finished
from quanttui.engine.mailbox import Mailbox
from quanttui.server import protocol as P


class AttachError(Exception):
    """No server to attach to, or it refused this view; one line."""


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            return None
        got += k
    return bytes(buf)


def read_frame(sock: socket.socket, limit: int) -> Any | None:
    """The next frame's object, None at the end of the stream; raises `ProtocolError`."""
    head = _recv_exact(sock, P.HEADER.size)
    if head is None:
        return None
    size = P.frame_size(head, limit)
    body = _recv_exact(sock, size)
    if body is None:
        return None
    return P.decode(body)


def handshake(
    path: Path, query: str | None = None, timeout: float = 5.0, *, history: bool = True
) -> tuple[socket.socket, dict]:
    """Connect to the server at `path` and say hello; returns the socket and the welcome.
    Raises `AttachError` with the server's or the system's one-line reason."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(P.encode(P.hello(query, history=history)))
        welcome = read_frame(sock, P.MAX_SERVER_FRAME)
    except (OSError, P.ProtocolError) as exc:
        sock.close()
        raise AttachError(f"no server answers at {path} ({exc})") from None
    if not isinstance(welcome, dict):
        sock.close()
        raise AttachError(f"{path}: the server closed the connection")
    if "error" in welcome:
        sock.close()
        raise AttachError(f"the server refused this view: {welcome['error']}")
    sock.settimeout(None)
    return sock, welcome


def probe(path: Path, timeout: float = 2.0) -> dict | None:
    """The welcome of the server at `path` (pid, db, pairs, started, viewers), or None."""
    try:
        sock, welcome = handshake(path, "info", timeout)
    except AttachError:
        return None
    sock.close()
    return welcome


class RemoteEngine:
    def __init__(self, path: Path, box: Mailbox, *, history: bool = True) -> None:
        """`history`: the server first sends the alerts it fired before this view
        attached (the app shows them; the headless view does not print them again)."""
        self.path = path
        self.history = history
        self.box = box
        self.done = threading.Event()
        self.ready = threading.Event()
        self.result: Finished | None = None
        self.welcome: dict = {}
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self._detached = False

    def connect(self) -> RemoteEngine:
        """The handshake, now (raises `AttachError`); `start` then reads the events."""
        self._sock, self.welcome = handshake(self.path, history=self.history)
        return self

    @property
    def alive(self) -> bool:
        return self._sock is not None and not self.done.is_set()

    @property
    def pid(self) -> int | None:
        """The server's process id."""
        return self.welcome.get("pid")

    def start(self) -> RemoteEngine:
        if self._sock is None:
            try:
                self.connect()
            except AttachError as exc:
                self.result = Finished(1, str(exc))
                self.box.put(self.result)
                self.done.set()
                return self
        threading.Thread(target=self._read, name="quanttui-attach", daemon=True).start()
        return self

    def _send(self, obj: object) -> bool:
        sock = self._sock
        if sock is None:
            return False
        with self._lock:
            try:
                sock.sendall(P.encode(obj))
            except (OSError, P.ProtocolError, TypeError):
                return False
        return True

    def call_method(self, name: str, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Ask the server to run `Engine.<name>`; the future gets the reply."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self.done.is_set():
            fut.set_exception(RuntimeError("detached from the server"))
            return fut
        cid = next(self._ids)
        self._pending[cid] = fut
        if not self._send(["call", cid, name, list(args), kwargs]):
            self._pending.pop(cid, None)
            fut.set_exception(RuntimeError("the server is gone"))
        return fut

    def call_soon(self, name: str) -> None:
        """`stop` detaches this view; the server keeps running."""
        if name == "stop":
            self.detach()
        else:
            self.call_method(name)

    def detach(self) -> None:
        if self._detached:
            return
        self._detached = True
        self._send(["detach"])
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self, timeout: float | None = 5.0) -> bool:
        self.detach()
        return self.done.wait(timeout)

    async def wait(self) -> Finished | None:
        await asyncio.get_running_loop().run_in_executor(None, self.done.wait)
        return self.result

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            while True:
                frame = read_frame(sock, P.MAX_SERVER_FRAME)
                if frame is None:
                    break
                self._handle(frame)
                if self.result is not None:
                    break
        except (OSError, P.ProtocolError) as exc:
            if self.result is None and not self._detached:
                self.result = Finished(1, f"server link: {exc}")
        finally:
            self._finish()

    def _handle(self, frame: Any) -> None:
        if not isinstance(frame, list) or not frame:
            raise P.ProtocolError("a frame that is not a list")
        kind = frame[0]
        if kind == "events":
            for ev in frame[1]:
                self.box.put(ev)
        elif kind == "reply":
            _, cid, ok, value = frame
            fut = self._pending.pop(cid, None)
            if fut is not None and not fut.done():
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(RuntimeError(value))
        elif kind == "ready":
            self.box.put(EngineReady(tuple(frame[1]), dict(frame[2])))
            self.ready.set()
        elif kind == "done":
            self.result = frame[1]
        elif kind == "error":
            self.result = Finished(1, f"the server closed this view: {frame[1]}")

    def _finish(self) -> None:
        if self.result is None:
            if self._detached:
                self.result = Finished(0)
            else:
                self.result = Finished(1, "the server closed the connection")
        if not self._detached or self.result.error:
            self.box.put(self.result)
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(RuntimeError("detached from the server"))
        self._pending.clear()
        with contextlib.suppress(OSError):
            if self._sock is not None:
                self._sock.close()
        self.done.set()
