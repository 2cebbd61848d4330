"""Schema v1 -> v2 on a real v1 file written by the v1 release (tests/data/v1.db)."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from quanttui.store.db import SCHEMA_VERSION, StoreError, connect
from tests.conftest import BUNDLED

V1 = BUNDLED / "v1.db"
V1_TABLES = ("meta", "ticks", "klines", "gaps", "alerts")
V1_COUNTS = {"ticks": 992, "klines": 240, "gaps": 2, "alerts": 2}


def rows(conn: sqlite3.Connection, table: str) -> list[tuple]:
    return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def dump(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: rows(conn, t) for t in V1_TABLES}
    finally:
        conn.close()


@pytest.fixture
def v1_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "v1.db"
    shutil.copyfile(V1, dst)
    return dst


def test_v1_file_is_what_it_claims() -> None:
    before = dump(V1)
    assert dict(before["meta"]) == {"schema_version": "1"}
    assert {t: len(before[t]) for t in V1_COUNTS} == V1_COUNTS
    conn = sqlite3.connect(f"file:{V1}?mode=ro", uri=True)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert tables == set(V1_TABLES)


def test_v1_migrates_to_the_current_version_keeping_every_row(v1_copy: Path) -> None:
    digest = hashlib.sha256(V1.read_bytes()).hexdigest()
    before = dump(v1_copy)
    conn = connect(v1_copy)
    try:
        assert SCHEMA_VERSION == 3
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            "3",
        )
        # v3 adds the notification outbox, empty
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
        for t in ("ticks", "klines", "gaps"):
            assert rows(conn, t) == before[t], t
            assert len(rows(conn, t)) == V1_COUNTS[t]
        # v2 adds alerts.withdrawn_ms, empty on every alert kept from v1
        assert rows(conn, "alerts") == [(*r, None) for r in before["alerts"]]
        assert len(before["alerts"]) == V1_COUNTS["alerts"]
        assert conn.execute("SELECT count(*) FROM funding").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM funding_info").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM mark_prices").fetchone() == (0,)
        conn.execute(
            "INSERT INTO funding(symbol, funding_ms, rate, mark_price) VALUES (?, ?, ?, ?)",
            ("BTCUSDT", 1_704_067_200_000, 1e-4, None),
        )
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO funding(symbol, funding_ms, rate, mark_price) VALUES (?, ?, ?, ?)",
                ("BTCUSDT", 1_704_067_200_000, 2e-4, 1.0),
            )
        conn.commit()
    finally:
        conn.close()
    # opening again is a no-op: still the current version, every row still there
    conn = connect(v1_copy)
    assert {t: rows(conn, t) for t in ("ticks", "klines", "gaps")} == {
        t: before[t] for t in ("ticks", "klines", "gaps")
    }
    assert rows(conn, "alerts") == [(*r, None) for r in before["alerts"]]
    assert conn.execute("SELECT count(*) FROM funding").fetchone() == (1,)
    conn.close()
    assert hashlib.sha256(V1.read_bytes()).hexdigest() == digest


def test_v1_file_works_read_only_without_migration(v1_copy: Path) -> None:
    conn = connect(v1_copy, readonly=True)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            "1",
        )
        assert conn.execute("SELECT count(*) FROM ticks").fetchone() == (992,)
    finally:
        conn.close()


def test_snapshot_cli_reads_a_v1_file_without_migrating_it(v1_copy: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "quanttui", "snapshot", "AVAXUSDT", "NEARUSDT"]
        + ["--db", str(v1_copy), "--timeframe", "1m", "--window", "30", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"bars":120' in proc.stdout


def test_a_newer_schema_is_refused(v1_copy: Path) -> None:
    connect(v1_copy).close()
    conn = sqlite3.connect(v1_copy)
    conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 4 is newer"):
        connect(v1_copy)
