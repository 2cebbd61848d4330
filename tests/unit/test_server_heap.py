"""`quanttui.server.heap`: with the mmap threshold fixed, a frame-sized buffer is a mapping
of its own even after a larger one was freed (glibc's dynamic threshold would have moved
it into an arena, where it is not given back)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, json, sys
from quanttui.server import heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
tuned = heap.tune() if sys.argv[1] == "tuned" else None
big = bytearray(4 << 20)   # mmapped; freeing it raises a dynamic threshold to 4 MB
del big
before = libc.mallinfo2().hblkhd
frame = bytearray(300 << 10)  # a frame of snapshots
mapped = libc.mallinfo2().hblkhd - before
del frame
heap.trim()
print(json.dumps({"tuned": tuned, "mapped": mapped}))
"""


def probe(mode: str) -> dict:
    import json

    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_fixed_threshold_keeps_frame_buffers_out_of_the_arenas() -> None:
    default, tuned = probe("default"), probe("tuned")
    assert default["mapped"] == 0, "glibc's dynamic threshold no longer moves; see heap.py"
    assert tuned["tuned"] is True
    assert tuned["mapped"] >= 300 << 10
