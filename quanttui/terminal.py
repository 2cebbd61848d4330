"""Leave when the terminal goes away.

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
"""

from __future__ import annotations

import contextlib
import select
import sys
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def watch_hangup(on_hangup: Callable[[], None], poll_s: float = 0.5) -> Iterator[None]:
    """Run the body; call `on_hangup` if the terminal hangs up meanwhile. Without a
    terminal it only runs the body."""
    fd = _tty_fd()
    if fd is None or not hasattr(select, "poll"):
        yield
        return
    done = threading.Event()
    watch = threading.Thread(
        target=_watch, args=(fd, done, on_hangup, poll_s), name="hangup", daemon=True
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


def _watch(fd: int, done: threading.Event, on_hangup: Callable[[], None], poll_s: float) -> None:
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
        on_hangup()
