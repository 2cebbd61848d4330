"""Run `quanttui` on the slave side of a real pty of a given size and read what it writes.

Shared by the terminal tests and `benchmarks/bench_app.py`. Linux/macOS only.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class PtyApp:
    def __init__(
        self, args: list[str], cols: int = 120, rows: int = 40, env: dict[str, str] | None = None
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLORTERM")}
        full_env = {"TERM": "xterm-256color", **base, **(env or {})}
        full_env.update(COLUMNS=str(cols), LINES=str(rows))
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quanttui", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=full_env,
            start_new_session=True,
            cwd=ROOT,
        )
        os.close(slave)
        self.master = master
        self.log: list[tuple[float, int]] = []
        self.buf = bytearray()

    def pump(self, seconds: float, until: bytes | None = None, keep: bool = True) -> float | None:
        """Read for `seconds`, or until `until` appears (returns its time since launch)."""
        end = time.perf_counter() + seconds
        while (left := end - time.perf_counter()) > 0:
            r, _, _ = select.select([self.master], [], [], min(left, 0.05))
            if not r:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return None
            now = time.perf_counter()
            self.log.append((now, len(chunk)))
            if keep or until is not None:
                self.buf += chunk
            if until is not None and until in self.buf:
                return now - self.t0
        return None

    def quit(self) -> int | None:
        try:
            os.write(self.master, b"q")
            self.pump(3)
            return self.proc.wait(10)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            return None
        finally:
            os.close(self.master)
