"""Databases on read-only media, damaged or holding implausible rows: what each command
does with them (real files, the real binary)."""

from __future__ import annotations

import json
import math
import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quanttui.model import Tick
from quanttui.plausible import FUTURE, time_problem
from quanttui.store.db import StoreError, connect
from quanttui.store.health import check_integrity, find_implausible, startup_quarantine
from quanttui.store.importer import ArchiveError, import_file
from tests.badfiles import (
    YEAR_2076,
    agg_csv,
    calm_ticks,
    damaged_db,
    db_with_2076,
    readonly_mount_works,
    run_cli_readonly,
)
from tests.helpers import run_cli, store_ticks

readonly_media = pytest.mark.skipif(
    not readonly_mount_works(), reason="needs `unshare -rm` to make a read-only bind mount"
)


def good_wal_db(path: Path) -> Path:
    path.parent.mkdir(exist_ok=True)
    store_ticks(path, calm_ticks(int(time.time() * 1000) - 500)).close()
    with path.open("rb") as fh:
        assert fh.read(20)[18:20] == b"\x02\x02"  # WAL mode in the file header
    assert not path.with_name(path.name + "-wal").exists()
    return path


@readonly_media
def test_read_commands_work_on_a_good_wal_database_on_read_only_media(tmp_path: Path) -> None:
    db = good_wal_db(tmp_path / "ro" / "q.db")
    before = db.read_bytes()
    code, out, err = run_cli_readonly(
        db.parent, "snapshot", "BTCUSDT", "ETHUSDT", "--window", "20", "--json", "--db", str(db)
    )
    assert code == 0, err
    snap = json.loads(out)
    assert snap["bars"] >= 80 and snap["beta"] == pytest.approx(2.0, abs=0.1)
    code, out, err = run_cli_readonly(
        db.parent, "backtest", "BTCUSDT", "ETHUSDT", "--window", "20", "--json", "--db", str(db)
    )
    assert code == 0, err
    # the backtest still runs through the bar of the newest trade, which is not settled
    assert json.loads(out)["bars"] == snap["bars"] + 1
    code, out, err = run_cli_readonly(
        db.parent, "export", "BTCUSDT", "ETHUSDT", "--window", "20", "--db", str(db),
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, err
    assert len(list((tmp_path / "out").glob("*.csv"))) == 4
    assert db.read_bytes() == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["q.db"]


@readonly_media
def test_read_only_media_is_told_apart_from_corruption(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    damaged_db(ro / "bad.db")
    code, _, err = run_cli_readonly(
        ro, "snapshot", "BTCUSDT", "ETHUSDT", "--window", "20", "--db", str(ro / "bad.db")
    )
    assert code == 1
    assert err.startswith(f"quanttui: error: {ro / 'bad.db'}: corrupt or unreadable database")

    src = good_wal_db(tmp_path / "src" / "q.db")
    conn = sqlite3.connect(src)  # an open writer: its last commit is only in the -wal file
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    with conn:
        conn.executemany(
            "INSERT INTO ticks VALUES (?, ?, ?, ?, ?, 0)",
            [("BTCUSDT", 10**6 + i, int(time.time() * 1000), 1.0, 1.0) for i in range(50)],
        )
    shutil.copy(src, ro / "q.db")
    shutil.copy(src.with_name("q.db-wal"), ro / "q.db-wal")
    conn.close()
    code, _, err = run_cli_readonly(
        ro, "snapshot", "BTCUSDT", "ETHUSDT", "--window", "20", "--db", str(ro / "q.db")
    )
    assert code == 1
    assert err.strip().splitlines() == [
        f"quanttui: error: {ro / 'q.db'}: read-only, and its -wal file holds changes SQLite "
        "cannot read without writing beside the database (unable to open database file); copy "
        "the database and its -wal file to writable storage"
    ]


def test_check_integrity_passes_sound_files_and_refuses_damaged_ones(tmp_path: Path) -> None:
    check_integrity(tmp_path / "missing.db")
    (tmp_path / "empty.db").touch()
    check_integrity(tmp_path / "empty.db")
    check_integrity(good_wal_db(tmp_path / "good.db"))
    bad = damaged_db(tmp_path / "bad.db")
    before = bad.read_bytes()
    with pytest.raises(StoreError, match=r"bad.db: database is damaged \(PRAGMA quick_check: "):
        check_integrity(bad)
    assert bad.read_bytes() == before


def test_doctor_finds_and_quarantines_a_2076_trade(tmp_path: Path) -> None:
    db = db_with_2076(tmp_path / "f.db")
    code, out, err = run_cli("doctor", "--db", str(db), "--quarantine")
    assert code == 0, err
    assert out.splitlines()[2] == (
        "moved to the quarantine table: 2 trades (T in the future) (2 rows)"
    )
    assert out.splitlines()[3] == "quarantine table: 2 rows"
    code, out, err = run_cli("doctor", "--db", str(db))
    assert code == 0, err
    assert out.splitlines()[1:] == [
        "ticks: 720 rows; klines: 0 rows",
        "no row with an implausible time",
        "quarantine table: 2 rows",
    ]
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT tbl, reason, row FROM quarantine ORDER BY id").fetchall()
        assert c.execute("SELECT max(ts_ms) FROM ticks").fetchone()[0] < time.time() * 1000
    assert [(t, r, json.loads(x)) for t, r, x in rows] == [
        (
            "ticks",
            FUTURE,
            {
                "symbol": s,
                "trade_id": 10**6,
                "ts_ms": YEAR_2076,
                "price": 1.0,
                "qty": 0.01,
                "is_buyer_maker": 0,
            },
        )
        for s in ("BTCUSDT", "ETHUSDT")
    ]


def test_many_future_rows_are_left_in_place_with_a_clock_warning(tmp_path: Path) -> None:
    """A database whose rows are mostly "in the future" more likely means the clock is
    wrong: start-up moves nothing, says so, and bars ignore those rows meanwhile."""
    db = tmp_path / "m.db"
    future = [Tick("BTCUSDT", 10**6 + i, YEAR_2076 + i, 1.0, 1.0, False) for i in range(500)]
    store_ticks(db, [*calm_ticks(int(time.time() * 1000)), *future]).close()
    code, _out, err = run_cli(
        "import", str(agg_csv(tmp_path / "ETHUSDT-aggTrades-2024-01-01.csv")), "--db", str(db)
    )
    assert code == 0, err
    assert err.splitlines()[0] == (
        f"quanttui: warning: {db}: 500 trades (T in the future) have times no trade can have "
        "(after now + 60 s or before 2019-09-01); they are ignored but not moved, as they are "
        "more than 100 rows and 1% of the table: is the system clock right? `quanttui doctor "
        "--quarantine` moves them"
    )
    conn = connect(db, readonly=True)
    assert find_implausible(conn).counts == {("ticks", FUTURE): 500}
    conn.close()


def test_startup_quarantine_is_silent_on_a_clean_database(tmp_path: Path) -> None:
    db = good_wal_db(tmp_path / "g.db")
    assert startup_quarantine(db) == []
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM ticks").fetchone()[0] == 720
        assert not c.execute("SELECT name FROM sqlite_master WHERE name = 'quarantine'").fetchall()


def test_replay_of_a_database_holding_a_2076_trade_skips_it(tmp_path: Path) -> None:
    db = db_with_2076(tmp_path / "src.db", end_ms=int(time.time() * 1000) - 3_600_000)
    code, _out, err = run_cli(
        "BTCUSDT", "ETHUSDT", "--replay", str(db), "--speed", "0", "--headless", "--window", "20"
    )
    assert code == 0, err
    assert "feed: replay max speed (2 trades stamped in the future skipped)" in err
    assert "stopped: 720 trades" in err


def test_replay_of_a_recording_with_a_future_line_exits_2(tmp_path: Path) -> None:
    rec = tmp_path / "rec.ndjson"
    rec.write_text(
        '{"symbol":"BTCUSDT","ts":"2025-12-15T08:43:15.443Z","price":1.0,"size":1.0}\n'
        '{"symbol":"ETHUSDT","ts":"2076-11-17T00:00:00.000Z","price":1.0,"size":1.0}\n'
    )
    code, _out, err = run_cli("BTCUSDT", "ETHUSDT", "--replay", str(rec), "--headless")
    assert code == 2
    assert err.strip().splitlines() == [
        f"quanttui: error: replay source {rec}:2: trade time 2076-11-17T00:00:00.000Z is more "
        f"than 60 s ahead of the clock ({err.split('clock (')[1].split(')')[0]})"
    ]


VALID_TS = 1_704_067_200_000
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
FIELD = {
    "id": st.one_of(
        st.integers(0, 10**6).map(str),
        st.sampled_from(["-1", "1" + "0" * 30, "9223372036854775808", "x", "", "١٢"]),
    ),
    "price": st.one_of(
        st.floats(0.01, 1e6).map(repr),
        st.sampled_from(["0", "-1", "nan", "inf", "1e400", "abc", ""]),
    ),
    "qty": st.one_of(st.floats(0, 100).map(repr), st.sampled_from(["-0.1", "nan", "1e999"])),
    "time": st.one_of(
        st.integers(VALID_TS, VALID_TS + 10**9).map(str),
        st.integers(VALID_TS * 1000, VALID_TS * 1000 + 10**12).map(str),  # microseconds
        st.sampled_from(["1", "0", "-5", "9999999999999", "1" + "0" * 30, "1.5e12", "soon"]),
    ),
    "maker": st.sampled_from(["true", "false", "True", "0", "1", "yes", ""]),
}


@st.composite
def agg_row(draw: st.DrawFn) -> str:
    f = [draw(FIELD[k]) for k in ("id", "price", "qty", "id", "id", "time", "maker")]
    if draw(st.integers(0, 15)) == 0:
        f = f[: draw(st.integers(0, 6))]
    return ",".join(f)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(agg_row(), min_size=1, max_size=12), st.booleans())
def test_fuzzed_archive_rows_import_whole_or_not_at_all(
    tmp_path_factory: pytest.TempPathFactory, rows: list[str], bom: bool
) -> None:
    d = tmp_path_factory.mktemp("fuzz")
    path = d / "BTCUSDT-aggTrades-2024-01-01.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ("\n".join(rows) + "\n").encode())
    conn = connect(d / "q.db")
    try:
        try:
            res = import_file(conn, path)
        except ArchiveError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
            assert conn.execute("SELECT count(*) FROM ticks").fetchone()[0] == 0
            return
        stored = conn.execute("SELECT trade_id, ts_ms, price, qty FROM ticks").fetchall()
    finally:
        conn.close()
    data = [r for r in rows if r]
    header = bool(rows[0]) and not any(NUMBER.match(f.strip()) for f in rows[0].split(","))
    assert res.rows == len(data) - header
    # a repeated aggregate id is one trade (INSERT OR IGNORE)
    assert len(stored) == len({int(r.split(",")[0]) for r in data[int(header) :]})
    now = int(time.time() * 1000)
    for trade_id, ts, price, qty in stored:
        assert 0 <= trade_id < 2**63
        assert time_problem(ts, now) is None
        assert math.isfinite(price) and price > 0 and math.isfinite(qty) and qty >= 0
