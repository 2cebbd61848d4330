"""How the processes of quanttui ask Linux's scheduler to favour the screen.

An engine (the app's child process, or `quanttui serve`) runs under ``SCHED_BATCH``
(`yield_to_screens`), and the UI thread asks for a short slice (`request_slice`).

**A short scheduler slice for the UI thread** (the EEVDF scheduler, Linux 6.12 and later).

Under EEVDF each task has a *slice*, the CPU time it may run before the scheduler picks
again, and a virtual deadline one slice past its eligible time; the eligible task with the
earliest deadline runs next, and a waking task whose deadline is earlier preempts the
one running. The default slice is about 1.4 ms on a 2-CPU machine. A task may ask for
its own slice, 0.1-100 ms, through ``sched_setattr(2)``'s ``sched_runtime`` with the policy
left ``SCHED_OTHER`` (no privilege needed; it is what the kernel offers latency-sensitive
tasks instead of a higher priority). The UI thread runs in short bursts (a timer, a
redraw), so a short slice gets it onto a CPU sooner when it wakes beside busy tasks (the
server, the feed). Its share of the CPU is unchanged: a longer burst gets the same share
in shorter turns.

Older kernels take the call and ignore the slice, other systems have no such call; both
leave the thread as it was.
"""

from __future__ import annotations

import struct
import sys

UI_SLICE_NS = 200_000
"""The slice asked for the UI thread: 0.2 ms."""

_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
_ATTR = struct.Struct("=IIQiIQQQII")
"""``struct sched_attr`` (version 1, 56 bytes): size, policy, flags, nice, priority,
runtime, deadline, period, util_min, util_max."""


def yield_to_screens() -> None:
    """Run this process's threads, those it has and those it starts, under ``SCHED_BATCH``:
    the same share of the CPU as any other process (nice is unchanged, so ingestion is not
    starved), but a wake-up of the engine no longer preempts a running task. On two busy cores a
    screen's event loop was preempted about 100 times a second by the engine's threads,
    in the middle of a frame or of a collection of a few hundred objects, for up to 35 ms.
    A child process it starts inherits the policy; a UI thread there asks for
    ``SCHED_OTHER`` again with its slice. Linux only; a no-op elsewhere."""
    import contextlib
    import os

    with contextlib.suppress(AttributeError, OSError):
        batch = os.SCHED_BATCH, os.sched_param(0)
        os.sched_setscheduler(0, *batch)
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                os.sched_setscheduler(int(tid), *batch)


def _sched_attr_call(offset: int, *args: object) -> bool:
    """``syscall(sched_setattr + offset, 0, *args) == 0`` (offset 1: ``sched_getattr``),
    False where there is no such call."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import platform

    nr = _SYS_SCHED_SETATTR.get(platform.machine())
    if nr is None:
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).syscall(nr + offset, 0, *args) == 0
    except (OSError, AttributeError):
        return False


def request_slice(ns: int = UI_SLICE_NS) -> bool:
    """Ask the scheduler for a slice of `ns` for the calling thread, keeping its policy
    (``SCHED_OTHER``) and nice value; 0 gives it the kernel's default again. Returns
    whether the kernel took the call."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import os

    nice = os.getpriority(os.PRIO_PROCESS, 0)
    attr = ctypes.create_string_buffer(_ATTR.pack(_ATTR.size, 0, 0, nice, 0, ns, 0, 0, 0, 0))
    return _sched_attr_call(0, attr, 0)


def current_slice() -> int | None:
    """The calling thread's slice in ns (``sched_getattr``), or None where unknown."""
    import ctypes

    buf = ctypes.create_string_buffer(_ATTR.size)
    if not _sched_attr_call(1, buf, _ATTR.size, 0):
        return None
    return _ATTR.unpack(buf.raw)[5]
