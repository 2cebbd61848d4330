from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from quanttui.model import Tick
from quanttui.store.db import connect
from quanttui.store.writer import INSERT_TICK
from tests.fakes.exchange import FakeExchange


def store_ticks(db: Path, ticks: Iterable[Tick]) -> sqlite3.Connection:
    conn = connect(db)
    with conn:
        conn.executemany(
            INSERT_TICK,
            [(t.symbol, t.trade_id, t.ts_ms, t.price, t.qty, int(t.is_buyer_maker)) for t in ticks],
        )
    return conn


def store_kline_csv(db: Path, csv_path: Path, symbol: str) -> int:
    """Load a Binance archive 1m kline CSV (header row) straight into the klines table."""
    import csv

    conn = connect(db)
    with csv_path.open() as fh:
        rows = list(csv.reader(fh))[1:]
    with conn:
        conn.executemany(
            "INSERT OR IGNORE INTO klines VALUES (?, '1m', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    symbol,
                    int(r[0]),
                    float(r[1]),
                    float(r[2]),
                    float(r[3]),
                    float(r[4]),
                    float(r[5]),
                    int(r[6]),
                    float(r[7]),
                    int(r[8]),
                )
                for r in rows
            ],
        )
    conn.close()
    return len(rows)


def run_cli(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    """Run ``python -m quanttui ARGS`` to the end: (exit code, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "quanttui", *args], capture_output=True, text=True, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


async def spawn(*args: str) -> asyncio.subprocess.Process:
    """Start ``python -m quanttui ARGS`` with stdout and stderr piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "quanttui",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def exchange_args(ex: FakeExchange) -> list[str]:
    """`--ws-url` and `--rest-url` pointing a subprocess at a `FakeExchange`."""
    return ["--ws-url", ex.ws_base, "--rest-url", ex.rest_base]


def alert_lines(out: bytes | str) -> list[dict]:
    """The alert objects of a `--headless` stdout (not its closing snapshot lines)."""
    text = out.decode() if isinstance(out, bytes) else out
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [r for r in rows if "snapshot" not in r]


def sqlite_locks_held(path: Path) -> list[str]:
    """This process's POSIX locks on `path`, as `/proc/locks` lists them."""
    st = os.stat(path)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    me = str(os.getpid())
    rows = Path("/proc/locks").read_text().splitlines()
    return [r for r in rows if "->" not in r and r.split()[4] == me and r.split()[5] == dev]


def thread_policies(pid: int) -> tuple[int, set[int]]:
    """How many threads process `pid` has, and their scheduling policies (a thread that
    ends between the listing and the query is left out)."""
    policies = set()
    tids = os.listdir(f"/proc/{pid}/task")
    for tid in tids:
        try:
            policies.add(os.sched_getscheduler(int(tid)))
        except ProcessLookupError:
            continue
    return len(tids), policies
