"""`quanttui record` when its database fails for real: a full 1 MB tmpfs (in a private
mount namespace, `unshare -rm`), space freed mid-run, and a write lock held by another
process at start-up. The feed is the loopback fake exchange at about 1,000 trades/s."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quanttui.store.db import connect
from tests.fakes.exchange import FakeExchange, synthetic_trades
from tests.helpers import exchange_args, spawn


def _mount_ns_works(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = where / "probe"
    probe.mkdir()
    cmd = f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(probe))}"
    try:
        ok = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return ok.returncode == 0


@pytest.fixture
def mnt(tmp_path: Path) -> Path:
    if not _mount_ns_works(tmp_path):
        pytest.skip("mount namespaces (unshare -rm) are not available here")
    d = tmp_path / "mnt"
    d.mkdir()
    return d


def record_cmd(ex: FakeExchange, db: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "quanttui",
        "record",
        "BTCUSDT",
        "ETHUSDT",
        "--db",
        str(db),
        "--backfill",
        "off",
        "--status-every",
        "0.5",
        *exchange_args(ex),
    ]


class Lines:
    """stderr of a child, line by line, each with the monotonic time it arrived."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.rows: list[tuple[float, str]] = []
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.rows.append((time.monotonic(), line.decode(errors="replace").rstrip("\n")))

    def find(self, needle: str) -> tuple[float, str] | None:
        return next((r for r in self.rows if needle in r[1]), None)

    async def wait(self, needle: str, limit_s: float = 30.0) -> tuple[float, str]:
        end = time.monotonic() + limit_s
        while (hit := self.find(needle)) is None:
            if time.monotonic() > end:
                raise AssertionError(f"no {needle!r} on stderr:\n{self.text}")
            await asyncio.sleep(0.02)
        return hit

    async def done(self) -> None:
        await self._task

    @property
    def text(self) -> str:
        return "\n".join(r[1] for r in self.rows)


def _free_bytes(path: str) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


async def test_disk_full_is_reported_at_once_and_sigterm_ends_the_run(mnt: Path) -> None:
    trades = synthetic_trades(200_000)
    async with FakeExchange(trades, rate=1000) as ex:
        cmd = f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(mnt))} && exec " + shlex.join(
            record_cmd(ex, mnt / "r.db")
        )
        proc = await asyncio.create_subprocess_exec(
            "unshare",
            "-rm",
            "sh",
            "-c",
            cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        err = Lines(proc.stderr)
        # The tmpfs is visible through the child's root. The commit that fails takes the
        # last free pages (SQLite writes WAL frames until ENOSPC), so the first failure
        # is when fewer than the ~12 KB of frames a commit of ~50 trades needs are left.
        inside = f"/proc/{proc.pid}/root{mnt}"
        full_at = None
        end = time.monotonic() + 60
        while full_at is None:
            free = _free_bytes(inside)
            if free is not None and free < 16_384:
                full_at = time.monotonic()
            assert time.monotonic() < end, err.text
            await asyncio.sleep(0.005)
        reported_at, report = await err.wait("database write failed", 2.0)
        assert reported_at - full_at < 2.0
        assert report == (
            "quanttui: error: database write failed (disk full: database or disk is full); "
            "holding up to 200,000 trades in memory and retrying"
        )
        await err.wait("DB ERROR (disk full)")
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
        elapsed = time.monotonic() - t0
        await err.done()
    text = err.text
    assert elapsed < 5.0, text
    assert proc.returncode == 1, text
    assert "Traceback" not in text and "Exception" not in text
    assert text.count("database write failed") == 1
    held = [int(m.replace(",", "")) for m in re.findall(r"unsaved=([\d,]+)", text)]
    assert held and max(held) > 500, text
    lines = text.splitlines()
    got = re.match(r"stopped: received ([\d,]+) trades, stored ([\d,]+) new rows", lines[-2])
    assert got, text
    received, stored = (int(g.replace(",", "")) for g in got.groups())
    lost = re.match(
        r"quanttui: error: ([\d,]+) trades were not stored: ([\d,]+) unsaved at exit "
        r"\(disk full\); trade ids BTCUSDT \d+\.\.\d+; ETHUSDT \d+\.\.\d+$",
        lines[-1],
    )
    assert lost, text
    assert int(lost[1].replace(",", "")) == received - stored > 0


async def test_freeing_space_mid_run_loses_no_trade(mnt: Path) -> None:
    if shutil.which("nsenter") is None:
        pytest.skip("nsenter is not available")
    # A holder keeps the mount namespace, and so the tmpfs, alive after the recorder exits.
    filler = mnt / "filler"
    holder = await asyncio.create_subprocess_exec(
        "unshare",
        "-rm",
        "sh",
        "-c",
        f"mount -t tmpfs -o size=8m tmpfs {shlex.quote(str(mnt))} && "
        f"head -c 8000000 /dev/zero > {shlex.quote(str(filler))} && echo ready && exec sleep 600",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert (await asyncio.wait_for(holder.stdout.readline(), 20)).strip() == b"ready"
        inside = Path(f"/proc/{holder.pid}/root{mnt}")
        trades = synthetic_trades(12_000)
        async with FakeExchange(trades, rate=1000) as ex:
            proc = await asyncio.create_subprocess_exec(
                "nsenter",
                "-t",
                str(holder.pid),
                "-U",
                "-m",
                "--preserve-credentials",
                *record_cmd(ex, mnt / "r.db"),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            err = Lines(proc.stderr)
            await err.wait("database write failed (disk full")
            await err.wait("DB ERROR (disk full)")
            await asyncio.sleep(1.0)
            (inside / "filler").unlink()
            await err.wait("database writable again", 15)
            await asyncio.wait_for(ex.done.wait(), 60)
            await asyncio.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
            await err.done()
        assert proc.returncode == 0, err.text
        assert "Traceback" not in err.text
        assert "quanttui: database writable again, every held trade written" in err.text
        copy = mnt.parent / "copy.db"
        shutil.copyfile(inside / "r.db", copy)
        assert not (inside / "r.db-wal").exists()
    finally:
        holder.kill()
        await holder.wait()
    with sqlite3.connect(copy) as c:
        rows = set(c.execute("SELECT symbol, trade_id FROM ticks"))
        gaps = c.execute("SELECT count(*) FROM gaps").fetchone()[0]
    assert len(ex.produced) == 12_000
    assert rows == ex.produced_ids()
    assert gaps == 0


async def test_database_locked_by_another_process_is_refused_at_once(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    connect(db).close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n",
        str(db),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert (await asyncio.wait_for(holder.stdout.readline(), 20)).strip() == b"locked"
        t0 = time.monotonic()
        proc = await spawn(
            "record",
            "BTCUSDT",
            "ETHUSDT",
            "--db",
            str(db),
            "--ws-url",
            "ws://127.0.0.1:9/market",
            "--rest-url",
            "http://127.0.0.1:9",
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        elapsed = time.monotonic() - t0
    finally:
        holder.kill()
        await holder.wait()
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2
    assert elapsed < 10
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"quanttui: error: {db}: database is locked by another writer: ")
    assert f"pid {holder.pid} (" in lines[0] and "holds its SQLite write lock" in lines[0]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
