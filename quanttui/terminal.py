"""Leave when the terminal goes away.

Closing a terminal window hangs up its tty: the kernel sends SIGHUP, and from then on
every write to the tty fails. The app quits on SIGHUP, but Textual's shutdown can then
block for ever: with Textual 8.2.8, a demo whose terminal was closed stayed alive with
its main thread waiting in `LinuxDriver.close()` to queue the end marker of the output
thread, and so never reached the code that removes its temporary files.

`exit_on_hangup` watches the terminal from a daemon thread. A hung-up tty reports
``POLLHUP`` (Linux: ``hung_up_tty_poll``), so the watch costs one `poll` every half
second and never reads the user's input. After a hang-up the app gets `grace_s` to end
by itself; if it has not, the watch runs `cleanup` and ends the process with status 129
(128 + SIGHUP), the status a shell reports for a job killed by its hang-up. Where `poll`
cannot watch a tty (macOS answers ``POLLNVAL``), the guard does nothing.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
from collections.abc import Callable, Iterator

HANGUP_STATUS = 129


@contextlib.contextmanager
def exit_on_hangup(
    cleanup: Callable[[], None], grace_s: float = 5.0, poll_s: float = 0.5
) -> Iterator[None]:
    """Run the body; if the terminal hangs up and the body has not ended `grace_s` later,
    call `cleanup` and `os._exit(129)`. Without a terminal it only runs the body."""
    fd = _tty_fd()
    if fd is None or not hasattr(select, "poll"):
        yield
        return
    done = threading.Event()
    watch = threading.Thread(
        target=_watch, args=(fd, done, cleanup, grace_s, poll_s), name="hangup", daemon=True
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


def _watch(
    fd: int, done: threading.Event, cleanup: Callable[[], None], grace_s: float, poll_s: float
) -> None:
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
    if done.wait(grace_s):
        return
    try:
        cleanup()
    finally:
        os._exit(HANGUP_STATUS)
