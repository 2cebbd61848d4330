"""Leave when the terminal, or the reader of stdout, goes away.

Closing a terminal window hangs up its tty: the kernel sends SIGHUP, and from then on
every write to the tty fails. The app quits on SIGHUP, but Textual's shutdown can then
block for ever: with Textual 8.2.8, a demo whose terminal was closed stayed alive with
its main thread waiting in `LinuxDriver.close()` to queue the end marker of the output
thread, and so never reached the code that removes its temporary files.

`watch_hangup` watches the terminal from a daemon thread. A hung-up tty reports
``POLLHUP`` (Linux: ``hung_up_tty_poll``), so the watch costs one `poll` every half
second and never reads the user's input. On a hang-up it calls `on_hangup` once (the CLI
passes `ShutdownGuard.hangup`: flush, clean up, exit), whether or not a SIGHUP arrived.
Where `poll` cannot watch a tty (macOS answers ``POLLNVAL``), it does nothing.

`watch_reader` does the same for a pipe: `quanttui ... --headless | consumer` whose
consumer has exited. The write end of a pipe with no reader left reports ``POLLERR``
(Linux ``pipe_poll``), so a headless run notices at once rather than at its next alert,
which may be hours away. A pipe that is merely not read (full) reports nothing.

`relayed_stderr` keeps a stderr nobody reads from reaching the engine: log records are
written to `sys.stderr` by whichever thread logs them, the engine's included, and a full
pipe would block that thread in `write`. While it is in force, writes to `sys.stderr` are
queued for a daemon thread that does the blocking writes; the queue is bounded, oldest
text dropped first (and counted in one line once stderr drains again).
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import stat
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TextIO

MAX_STDERR_BACKLOG = 1 << 20
"""Characters of stderr output kept while nobody reads it (about 1 MB)."""


@contextlib.contextmanager
def watch_hangup(on_hangup: Callable[[], None], poll_s: float = 0.5) -> Iterator[None]:
    """Run the body; call `on_hangup` if the terminal hangs up meanwhile. Without a
    terminal it only runs the body."""
    with _watching(_tty_fd(), on_hangup, poll_s, "hangup"):
        yield


@contextlib.contextmanager
def watch_reader(fd: int, on_gone: Callable[[], None], poll_s: float = 0.5) -> Iterator[None]:
    """Run the body; call `on_gone` if `fd` is the write end of a pipe and its last
    reader closes it meanwhile. For any other file (a tty, a regular file) it only runs
    the body."""
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        is_pipe = False
    with _watching(fd if is_pipe else None, on_gone, poll_s, "reader"):
        yield


@contextlib.contextmanager
def _watching(
    fd: int | None, on_gone: Callable[[], None], poll_s: float, name: str
) -> Iterator[None]:
    if fd is None or not hasattr(select, "poll"):
        yield
        return
    done = threading.Event()
    watch = threading.Thread(
        target=_watch, args=(fd, done, on_gone, poll_s), name=name, daemon=True
    )
    watch.start()
    try:
        yield
    finally:
        done.set()


def _tty_fd() -> int | None:
    for stream in (sys.__stdin__, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None and stream.isatty():
                return stream.fileno()
        except (OSError, ValueError):
            continue
    return None


def _watch(fd: int, done: threading.Event, on_gone: Callable[[], None], poll_s: float) -> None:
    poller = select.poll()
    poller.register(fd, 0)
    while not done.is_set():
        events = poller.poll(poll_s * 1000)
        if not events:
            continue
        flags = events[0][1]
        if flags & select.POLLNVAL or not flags & (select.POLLHUP | select.POLLERR):
            return
        break
    if not done.is_set():
        on_gone()


class _Relay(io.TextIOBase):
    """A `sys.stderr` whose `write` never blocks; see the module docstring."""

    def __init__(self, target: TextIO, limit: int = MAX_STDERR_BACKLOG) -> None:
        super().__init__()
        self.target = target
        with contextlib.suppress(OSError, ValueError):
            target.flush()
        try:
            self._fd: int | None = target.fileno()
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            self._fd = None
        self.limit = limit
        self.dropped = 0
        self._chunks: deque[str] = deque()
        self._size = 0
        self._busy = False
        self._cond = threading.Condition()
        threading.Thread(target=self._serve, name="quanttui-stderr", daemon=True).start()

    def write(self, s: str) -> int:
        if s:
            with self._cond:
                self._chunks.append(s)
                self._size += len(s)
                while self._size > self.limit and len(self._chunks) > 1:
                    old = self._chunks.popleft()
                    self._size -= len(old)
                    self.dropped += len(old)
                self._cond.notify_all()
        return len(s)

    def flush(self) -> None:
        """Never waits (see `drain`)."""

    def writable(self) -> bool:
        return True

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` for everything queued to be written; True if it was."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._chunks and not self._busy, timeout)

    def _serve(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._chunks))
                text = "".join(self._chunks)
                self._chunks.clear()
                self._size = 0
                dropped, self.dropped = self.dropped, 0
                self._busy = True
            if dropped:
                text = f"quanttui: {dropped:,} characters of stderr dropped: not read\n" + text
            with contextlib.suppress(OSError, ValueError):
                self._put(text)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _put(self, text: str) -> None:
        """Straight to the file descriptor when there is one: blocked in `os.write`, this
        thread holds none of the locks of the `sys.stderr` object, whose last flush at
        exit then cannot wait for it."""
        if self._fd is None:
            self.target.write(text)
            self.target.flush()
            return
        data = text.encode(self.encoding, "backslashreplace")
        while data:
            data = data[os.write(self._fd, data) :]

    def fileno(self) -> int:
        return self.target.fileno()

    def isatty(self) -> bool:
        return self.target.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


@contextlib.contextmanager
def relayed_stderr(drain_s: float = 1.0) -> Iterator[None]:
    """Run the body with `sys.stderr` relayed (see the module docstring); at the end, wait
    up to `drain_s` for the queued text, then put the real stderr back."""
    relay = _Relay(sys.stderr)
    sys.stderr = relay
    try:
        yield
    finally:
        relay.drain(drain_s)
        if sys.stderr is relay:
            sys.stderr = relay.target
