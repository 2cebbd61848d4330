"""The engine in a process of its own, for the Textual app.

On its thread (`EngineThread`) the engine shares the interpreter with the UI: the GIL,
and one cyclic GC whose full collections walk the objects of both. At 5,000 trades/s that
stopped the UI loop for 40-56 ms at a time (over the 33 ms frame budget), whatever the
screen did. `EngineProcess` runs the same `Engine`, on an `EngineThread`, in a child
process (`python -m quanttui.engine.child`), and is a drop-in for `EngineThread` where
the app and `ShutdownGuard` use one: `start`, `call_method`, `stop`, `wait`, `done`,
`result`, `alive`.

The link is the child's stdin and stdout, both pipes, carrying frames of a 4-byte
big-endian length and a pickle (this process made the child and reads only what it
writes; nothing else can write to these pipes):

* to the child: `("call", id, method, args, kwargs)` (an engine method; a coroutine is
  awaited on the engine's loop) and `("stop",)`;
* from the child: `("ready", pair_infos, rules_by_pair)` once the engine exists;
  `("events", events, latest)`: what its mailbox held, the ordered events then the
  latest snapshot per pair and status; `("reply", id, ok, value)`, sent after the events
  published before it (so a pair added is in `PairsChanged` before `add_pair` returns);
  and `("done", Finished)` last.

The child's mailbox coalesces snapshots like any view's, so a UI that stops reading (a
stalled terminal) holds up only the child's sender thread, never its engine. The child
ignores SIGINT and SIGHUP (this process decides when to stop, and a terminal's hang-up or
Ctrl-C reaches the whole process group); SIGTERM, a `stop` frame, or the end of its
stdin (this process died) stop its engine, which commits what was received; and it exits
by itself `HARD_EXIT_S` after that, whatever happens, so nothing outlives its terminal.
Its stderr is relayed to this process's `sys.stderr`, line by line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from quanttui.engine.events import EngineReady, Finished
from quanttui.engine.mailbox import Mailbox
from quanttui.engine.runner import HARD_EXIT_S

if TYPE_CHECKING:
    from quanttui.config import Config
    from quanttui.feed.replay import ReplaySpec

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30


def write_frame(fd: int, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    parts = [HEADER.pack(len(data)), memoryview(data)]
    while parts:
        n = os.writev(fd, parts)
        while parts and n >= len(parts[0]):
            n -= len(parts[0])
            parts.pop(0)
        if parts and n:
            parts[0] = memoryview(parts[0])[n:]


def read_exact(fd: int, n: int) -> bytearray | None:
    """`n` bytes from `fd` into one buffer, or None at its end."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if not k:
            return None
        got += k
    return buf


def read_frame(fd: int) -> object | None:
    """The next frame's object, or None at the end of the stream."""
    head = read_exact(fd, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"engine link: frame of {size} bytes")
    body = read_exact(fd, size)
    return None if body is None else pickle.loads(body)


class EngineProcess:
    def __init__(
        self,
        config: Config,
        pairs: Sequence[tuple[str, str]],
        box: Mailbox,
        *,
        rules: Sequence[str] = (),
        replay: ReplaySpec | None = None,
        baskets: Sequence[Sequence[str]] = (),
    ) -> None:
        self.spec = (
            config,
            [tuple(p) for p in pairs],
            list(rules),
            replay,
            [tuple(b) for b in baskets],
        )
        self.box = box
        self.done = threading.Event()
        self.ready = threading.Event()
        self.result: Finished | None = None
        self._proc: subprocess.Popen | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self._stopping = False

    @property
    def alive(self) -> bool:
        return self._proc is not None and not self.done.is_set()

    @property
    def pid(self) -> int | None:
        """The engine process's id once started."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> EngineProcess:
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "quanttui.engine.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self._send(self.spec)
        threading.Thread(target=self._read, name="quanttui-engine-link", daemon=True).start()
        threading.Thread(target=self._relay_stderr, name="quanttui-engine-err", daemon=True).start()
        return self

    def _send(self, obj: object) -> bool:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        with self._lock:
            try:
                write_frame(proc.stdin.fileno(), obj)
            except (OSError, ValueError):
                return False
        return True

    def call_method(self, name: str, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Run `Engine.<name>(*args, **kwargs)` in the child; the future gets its result
        (pickled back) or an exception carrying its one-line reason."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self.done.is_set():
            fut.set_exception(RuntimeError("the engine has stopped"))
            return fut
        cid = next(self._ids)
        self._pending[cid] = fut
        if not self._send(("call", cid, name, args, kwargs)):
            self._pending.pop(cid, None)
            fut.set_exception(RuntimeError("the engine has stopped"))
        return fut

    def call_soon(self, name: str) -> None:
        """Fire and forget; only `stop` is meaningful across the process boundary."""
        if name == "stop":
            self._request_stop()
        else:
            self.call_method(name)

    def _request_stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            self._send(("stop",))

    def stop(self, timeout: float | None = HARD_EXIT_S) -> bool:
        """Ask the engine to stop (the child commits what was received and exits); wait
        up to `timeout`. Returns whether it finished."""
        if self._proc is None:
            self.done.set()
            return True
        self._request_stop()
        return self.done.wait(timeout)

    async def wait(self) -> Finished | None:
        """Await the engine's end from an event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.done.wait)
        return self.result

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        try:
            while True:
                frame = read_frame(fd)
                if frame is None:
                    break
                self._handle(frame)
                if self.result is not None:
                    break
        except Exception as exc:  # noqa: BLE001 - a broken link ends the engine's life
            if self.result is None:
                self.result = Finished(1, f"engine link: {exc.__class__.__name__}: {exc}")
        finally:
            self._finish(proc)

    def _handle(self, frame: Any) -> None:
        kind = frame[0]
        if kind == "events":
            for ev in (*frame[1], *frame[2]):
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

    def _finish(self, proc: subprocess.Popen) -> None:
        if self.result is None:
            code = None
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(timeout=0.5)
            self.result = Finished(1, f"the engine process ended unexpectedly (exit {code})")
            self.box.put(self.result)
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(RuntimeError("the engine has stopped"))
        self._pending.clear()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)
        self.done.set()

    def _relay_stderr(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        for line in iter(proc.stderr.readline, b""):
            with contextlib.suppress(Exception):
                sys.stderr.write(line.decode("utf-8", "replace"))
