"""Makers of broken inputs: archives no reader can open, damaged databases, databases
holding rows stamped in 2076, and a runner for a read-only mount."""

from __future__ import annotations

import random
import shlex
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from quanttui.model import Tick
from tests.helpers import store_ticks

YEAR_2076 = 3_372_000_000_000
PAGE = 4096


def agg_lines(n: int, start_id: int = 1000, t0: int = 1_704_067_200_000) -> list[str]:
    return [
        f"{start_id + i},{42000 + (i % 50) * 0.1:.1f},0.{1 + i % 9},{10 * i},{10 * i + 2},"
        f"{t0 + 37 * i},{'true' if i % 3 else 'false'}"
        for i in range(n)
    ]


def agg_csv(path: Path, n: int = 50, *, bom: bool = False) -> Path:
    text = "\n".join(agg_lines(n)) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def _patch_central_directory(path: Path, offset: int, fmt: str, value: int) -> None:
    """Set a field of the (only) central-directory entry and of its local header."""
    data = bytearray(path.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into(fmt, data, cd + offset, value)
    struct.pack_into(fmt, data, 0 + offset - 2, value)  # local header fields sit 2 bytes earlier
    path.write_bytes(bytes(data))


def zipped(path: Path, compression: int = zipfile.ZIP_DEFLATED, n: int = 2000) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr(path.with_suffix(".csv").name, "\n".join(agg_lines(n)) + "\n")
    return path


def encrypted_zip(path: Path) -> Path:
    """A zip whose member is flagged as encrypted (general-purpose bit 0)."""
    zipped(path)
    _patch_central_directory(path, 8, "<H", 0x1)
    return path


def deflate64_zip(path: Path) -> Path:
    """A zip whose member claims compression method 9 (Deflate64), which zipfile lacks."""
    zipped(path)
    _patch_central_directory(path, 10, "<H", 9)
    return path


def corrupt_member_zip(path: Path, compression: int) -> Path:
    """An intact directory over compressed data that has been overwritten with noise."""
    zipped(path, compression)
    data = bytearray(path.read_bytes())
    rng = random.Random(7)
    start = 30 + len(path.with_suffix(".csv").name) + 40
    for i in range(start, start + 400):
        data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))
    return path


def truncated_zip(path: Path) -> Path:
    zipped(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def two_csv_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.csv", "1,2\n")
        zf.writestr("b.csv", "1,2\n")
    return path


def calm_ticks(end_ms: int, seconds: int = 90, start_id: int = 1) -> list[Tick]:
    """Two legs, 4 trades each per second, ending at `end_ms`: enough 1s bars for W=20."""
    rng = random.Random(5)
    out = []
    x = 100.0
    for k in range(seconds * 4):
        ts = end_ms - (seconds * 4 - k) * 250
        x += rng.gauss(0, 0.05)
        out.append(Tick("BTCUSDT", start_id + k, ts, round(x, 4), 0.01, False))
        y = 2 * x + rng.gauss(0, 0.02)
        out.append(Tick("ETHUSDT", start_id + k, ts, round(y, 4), 0.01, False))
    return out


def db_with_2076(path: Path, end_ms: int | None = None) -> Path:
    """Recent calm history plus one trade per leg stamped in 2076."""
    end = int(time.time() * 1000) - 500 if end_ms is None else end_ms
    extra = [
        Tick("BTCUSDT", 10**6, YEAR_2076, 1.0, 0.01, False),
        Tick("ETHUSDT", 10**6, YEAR_2076, 1.0, 0.01, False),
    ]
    store_ticks(path, [*calm_ticks(end), *extra]).close()
    return path


def damaged_db(path: Path) -> Path:
    """A quanttui database with an intact header, schema and meta table, whose trade pages
    (the second half of the file) are overwritten with noise."""
    store_ticks(path, calm_ticks(int(time.time() * 1000), seconds=3000)).close()
    assert not path.with_name(path.name + "-wal").exists()
    data = bytearray(path.read_bytes())
    pages = len(data) // PAGE
    assert pages > 40, pages
    rng = random.Random(11)
    for p in range(pages // 2, pages):
        data[p * PAGE : (p + 1) * PAGE] = rng.randbytes(PAGE)
    path.write_bytes(bytes(data))
    return path


def readonly_mount_works() -> bool:
    try:
        r = subprocess.run(
            [
                "unshare",
                "-rm",
                "sh",
                "-c",
                "d=$(mktemp -d) && mount --bind $d $d && mount -o remount,bind,ro $d "
                "&& ! touch $d/x 2>/dev/null",
            ],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def run_cli_readonly(directory: Path, *args: str, timeout: float = 120) -> tuple[int, str, str]:
    """`python -m quanttui ARGS` with `directory` bind-mounted read-only (a private mount
    namespace, as on read-only media)."""
    d = shlex.quote(str(directory))
    script = f'mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec "$@"'
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-m", "quanttui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr
