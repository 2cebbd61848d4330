"""The server's C heap: glibc's malloc, kept from growing with what views send.

Each view's sender encodes a frame of every snapshot (chart series included) a few times
a second, on a thread of its own. With glibc's defaults those buffers made the server's
RSS climb without end (`benchmarks/bench_serve.py --trace-memory`: what malloc held in
use stayed at ~52 MB while what it held free grew from 4 to 39 MB in 60 s, Python's
blocks flat), for two reasons:

* the mmap threshold is dynamic: once a large mmapped buffer is freed the threshold
  rises to its size (up to 32 MB), and later frames of that size come from the arenas,
  where a small long-lived block above them keeps the freed space from being returned;
* each sender thread gets an arena of its own, trimmed only when its top is free.

`tune` fixes the threshold (``M_MMAP_THRESHOLD``, which also stops it moving), so every
frame-sized buffer is its own mapping, given back when freed; `trim` (``malloc_trim(0)``,
which since glibc 2.8 releases the free pages inside every arena, not only the top) runs
every `TRIM_S` on the server's main thread. Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024
"""glibc's own starting value, held fixed."""
TRIM_S = 30.0

_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name or "libc.so.6")
            lib.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            lib.malloc_trim.argtypes = (ctypes.c_size_t,)
        except (OSError, AttributeError):
            return None
        _libc = lib
    return _libc


def tune() -> bool:
    """Fix malloc's mmap threshold; True when glibc took it."""
    lib = _glibc()
    return bool(lib is not None and lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def trim() -> bool:
    """Give the free pages of every arena back to the system; True if any were."""
    lib = _glibc()
    return bool(lib is not None and lib.malloc_trim(0))
