"""The SQLite file: schema, migrations and the checks that keep a foreign file safe.

One database holds every pair. The tick table is a public contract (README). Opening a
path that is not a quanttui database - a text file, a corrupt file, another program's
SQLite file, or one written by a newer quanttui - raises `StoreError` and leaves the file
untouched: nothing is created or migrated until the file has been recognised.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ticks (
    symbol         TEXT    NOT NULL,
    trade_id       INTEGER NOT NULL,
    ts_ms          INTEGER NOT NULL,
    price          REAL    NOT NULL,
    qty            REAL    NOT NULL,
    is_buyer_maker INTEGER NOT NULL,
    PRIMARY KEY (symbol, trade_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ticks_symbol_ts ON ticks (symbol, ts_ms);
CREATE TABLE IF NOT EXISTS klines (
    symbol       TEXT    NOT NULL,
    interval     TEXT    NOT NULL,
    open_ms      INTEGER NOT NULL,
    open         REAL    NOT NULL,
    high         REAL    NOT NULL,
    low          REAL    NOT NULL,
    close        REAL    NOT NULL,
    volume       REAL    NOT NULL,
    close_ms     INTEGER NOT NULL,
    quote_volume REAL    NOT NULL,
    trades       INTEGER NOT NULL,
    PRIMARY KEY (symbol, interval, open_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps (
    id          INTEGER PRIMARY KEY,
    symbol      TEXT    NOT NULL,
    first_id    INTEGER NOT NULL,
    last_id     INTEGER NOT NULL,
    detected_ms INTEGER NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('open', 'filled')),
    filled      INTEGER NOT NULL DEFAULT 0,
    resolved_ms INTEGER
);
CREATE TABLE IF NOT EXISTS alerts (
    id        INTEGER PRIMARY KEY,
    ts_ms     INTEGER NOT NULL,
    pair      TEXT    NOT NULL,
    rule      TEXT    NOT NULL,
    metric    TEXT    NOT NULL,
    value     REAL    NOT NULL,
    threshold REAL    NOT NULL
);
"""

MIGRATIONS: dict[int, str] = {1: SCHEMA_V1}


class StoreError(Exception):
    """The database cannot be used; the message says why in one line."""


def _check_header(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if path.is_dir():
        raise StoreError(f"{path}: is a directory, not a database file")
    if size == 0:
        return
    with path.open("rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise StoreError(f"{path}: not an SQLite database (refusing to touch it)")


def _inspect(conn: sqlite3.Connection, path: Path) -> int:
    """Schema version of an existing quanttui file, 0 for an empty file."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: corrupt or unreadable database ({exc})") from None
    if not tables:
        return 0
    if "meta" not in tables:
        raise StoreError(
            f"{path}: an SQLite file, but not a quanttui database (refusing to touch it)"
        )
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None or not str(row[0]).isdigit():
        raise StoreError(f"{path}: quanttui meta table has no schema_version")
    version = int(row[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} is newer than this quanttui supports "
            f"({SCHEMA_VERSION}); upgrade quanttui"
        )
    return version


def _uri(path: Path, query: str) -> str:
    return f"file:{quote(str(path.absolute()))}?{query}"


def _cannot_share(exc: sqlite3.Error) -> bool:
    """Whether `exc` is SQLite failing to open or create the -shm/-wal files beside a
    WAL database (read-only media or directory), rather than a fault of the file."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    name = getattr(exc, "sqlite_errorname", "") or ""
    return code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY) or "SHM" in name


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection that works on read-only media too.

    ``mode=ro`` on a WAL database needs its -shm file, which SQLite creates beside the
    database if it is missing; on read-only media (or in a read-only directory) it cannot,
    and the open fails with SQLITE_CANTOPEN although the file is sound. A cleanly closed
    WAL database has no -wal content (the last connection checkpoints it), so it is then
    opened with ``immutable=1``, which reads the main file alone and needs no side files
    (https://www.sqlite.org/uri.html#uriimmutable, https://www.sqlite.org/wal.html#readonly).
    A database whose -wal file still holds changes is refused rather than read without
    them."""
    try:
        return _probe(_uri(path, "mode=ro"))
    except sqlite3.DatabaseError as exc:
        if not _cannot_share(exc):
            raise StoreError(f"{path}: corrupt or unreadable database ({exc})") from None
        reason = exc
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreError(
            f"{path}: read-only, and its -wal file holds changes SQLite cannot read without "
            f"writing beside the database ({reason}); copy the database and its -wal file "
            "to writable storage"
        )
    try:
        return _probe(_uri(path, "immutable=1"))
    except sqlite3.DatabaseError as exc:
        if _cannot_share(exc):
            raise StoreError(f"{path}: cannot open read-only ({exc})") from None
        raise StoreError(f"{path}: corrupt or unreadable database ({exc})") from None


def _probe(uri: str) -> sqlite3.Connection:
    """Connect and read the schema once, so that a failure to open shows here."""
    conn = sqlite3.connect(uri, uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (creating or migrating unless `readonly`) a quanttui database. A read-only
    open also works on read-only media (`_open_readonly`)."""
    path = Path(path).expanduser()
    if readonly and path.exists() and not path.is_dir() and not os.access(path, os.R_OK):
        raise StoreError(f"{path}: permission denied (cannot read the file)")
    _check_header(path)
    if readonly:
        if not path.exists():
            raise StoreError(f"{path}: no such database")
        conn = _open_readonly(path)
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path)
        except (OSError, sqlite3.OperationalError) as exc:
            raise StoreError(f"{path}: cannot open ({exc})") from None
    try:
        version = _inspect(conn, path)
        if readonly:
            if version == 0:
                raise StoreError(f"{path}: empty database")
            return conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        _migrate(conn, version)
        return conn
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path}: corrupt or unreadable database ({exc})") from None
    except StoreError:
        conn.close()
        raise


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with conn:
            conn.executescript(MIGRATIONS[target])
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(target),),
            )


def prepare(path: str | Path) -> Path:
    """Validate, create or migrate the file, then close it: for callers that reopen it
    with aiosqlite."""
    connect(path).close()
    return Path(path).expanduser()
