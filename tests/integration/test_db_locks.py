"""Opening the database while this process holds a connection to it must keep SQLite's
locks: on POSIX, closing any descriptor of a file drops every advisory lock the process
holds on it, so a peek at the header with Python's ``open()`` let another process's
connection take the file for its last one, reset the WAL and corrupt the database
(issue 33). Real SQLite files, real child processes, the real ``/proc/locks``."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from quanttui.feed.replay import source_kind
from quanttui.store.db import StoreError, check_write_lock, connect, is_sqlite, prepare
from quanttui.store.health import check_integrity, startup_quarantine
from quanttui.store.state import load_last, save_last
from tests.helpers import sqlite_locks_held

CHILD_WRITES = r"""
import sqlite3, sys
for _ in range(int(sys.argv[2])):
    c = sqlite3.connect(sys.argv[1], timeout=10)
    c.execute("INSERT INTO alerts (ts_ms, pair, rule, metric, value, threshold) "
              "VALUES (1, 'A/B', 'r', 'zscore', 2.5, 2.0)")
    c.commit()
    c.close()
"""


def _held_connection(db: Path) -> sqlite3.Connection:
    connect(db).close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("SELECT count(*) FROM alerts").fetchone()
    return conn


OPENS: dict[str, Callable[[Path], object]] = {
    "connect": lambda p: connect(p).close(),
    "connect(readonly)": lambda p: connect(p, readonly=True).close(),
    "prepare": prepare,
    "check_write_lock": check_write_lock,
    "is_sqlite": is_sqlite,
    "replay.source_kind": source_kind,
    "check_integrity": check_integrity,
    "startup_quarantine": startup_quarantine,
    "load_last": load_last,
    "save_last": lambda p: save_last(p, "w", [("BTCUSDT", "ETHUSDT")]),
}


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")
@pytest.mark.parametrize("name", list(OPENS))
def test_every_open_of_ours_keeps_this_processs_sqlite_locks(tmp_path: Path, name: str) -> None:
    db = tmp_path / "q.db"
    held = _held_connection(db)
    try:
        before = sqlite_locks_held(db)
        assert before, "a WAL connection holds a SHARED lock on the database file"
        OPENS[name](db)
        assert sqlite_locks_held(db) == before, f"{name} dropped this process's SQLite locks"
    finally:
        held.close()


def test_opens_beside_a_held_connection_and_another_writer_leave_the_file_sound(
    tmp_path: Path,
) -> None:
    """The failure itself: a writer here, each of our opens between its transactions, and
    a child process that opens, writes and closes (so it checks whether it is the last
    connection). With the old header peek, the child reset the WAL under the writer and
    the next write here failed with ``database disk image is malformed``."""
    db = tmp_path / "q.db"
    writer = _held_connection(db)
    sent = 0
    try:
        for rnd in range(12):
            writer.execute("BEGIN")
            for _ in range(40):
                writer.execute(
                    "INSERT INTO alerts (ts_ms, pair, rule, metric, value, threshold) "
                    "VALUES (?, 'A/B', 'r', 'zscore', ?, 2.0)",
                    (rnd, float(sent)),
                )
                sent += 1
            writer.execute("COMMIT")
            list(OPENS.values())[rnd % len(OPENS)](db)
            subprocess.run([sys.executable, "-c", CHILD_WRITES, str(db), "4"], check=True)
            sent += 4
        assert writer.execute("SELECT count(*) FROM alerts").fetchone() == (sent,)
    finally:
        writer.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (sent,)
    finally:
        conn.close()


def test_the_header_check_still_refuses_a_foreign_file_and_leaves_it_untouched(
    tmp_path: Path,
) -> None:
    text = tmp_path / "notes.db"
    text.write_bytes(b"not a database at all, but long enough to hold a header\n" * 20)
    before = text.read_bytes()
    assert not is_sqlite(text)
    with pytest.raises(StoreError, match="not an SQLite database"):
        connect(text)
    with pytest.raises(StoreError, match="not an SQLite database"):
        prepare(text)
    assert text.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]
