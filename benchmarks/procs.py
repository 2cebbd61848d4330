"""What the benchmarks read about processes: memory and CPU from /proc (Linux), and the
fake exchange started as a process of its own (`python -m tests.fakes.serve`)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int | str = "self", children: bool = True) -> float:
    """VmRSS of `pid` in MB, plus its children's (the app's engine process) when asked;
    0.0 once the process is gone."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    total = int(line.split()[1]) / 1024
                    break
    except OSError:
        return 0.0
    if children:
        with contextlib.suppress(OSError):
            real = Path(f"/proc/{pid}").resolve().name
            for child in Path(f"/proc/{real}/task/{real}/children").read_text().split():
                total += rss_mb(int(child))
    return total


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(*args: str) -> tuple[subprocess.Popen, int]:
    """Start the fake exchange with `args` and return it with the port it listens on."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.serve", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return server, json.loads(server.stdout.readline())["port"]
