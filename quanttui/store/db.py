"""The SQLite file: schema, migrations and the checks that keep a foreign file safe.

One database holds every pair. The tick table is a public contract (README). Opening a
path that is not a quanttui database - a text file, a corrupt file, another program's
SQLite file, or one written by a newer quanttui - raises `StoreError` and leaves the file
untouched: nothing is created or migrated until the file has been recognised.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 2
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

SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS funding (
    symbol     TEXT    NOT NULL,
    funding_ms INTEGER NOT NULL,
    rate       REAL    NOT NULL,
    mark_price REAL,
    PRIMARY KEY (symbol, funding_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS funding_info (
    symbol         TEXT    PRIMARY KEY,
    interval_hours INTEGER NOT NULL CHECK (interval_hours > 0),
    updated_ms     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mark_prices (
    symbol          TEXT    PRIMARY KEY,
    event_ms        INTEGER NOT NULL,
    mark_price      REAL    NOT NULL,
    index_price     REAL    NOT NULL,
    funding_rate    REAL    NOT NULL,
    next_funding_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""
"""Version 2 adds funding settlements, per-symbol funding intervals and the latest mark
price of each symbol (issue 18).

``funding`` holds one row per settlement: ``funding_ms`` is Binance's ``fundingTime``
(archive ``calc_time``), ``rate`` the rate settled then, ``mark_price`` the mark price
at settlement, NULL where the source does not give it (the archive files). A v1 file
gains the three empty tables and keeps every row; nothing else changes.
``funding_info`` holds each symbol's interval as last learnt (``GET
/fapi/v1/fundingInfo`` or an imported fundingRate archive); a symbol without a row
settles every 8 h (`quanttui.model.DEFAULT_FUNDING_INTERVAL_H`).
``mark_prices`` holds the latest ``markPrice@1s`` update of each symbol (one row per
symbol, replaced), so `quanttui snapshot` in another process sees the live basis and
funding rate."""

MIGRATIONS: dict[int, str] = {1: SCHEMA_V1, 2: SCHEMA_V2}


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


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (creating or migrating unless `readonly`) a quanttui database."""
    path = Path(path).expanduser()
    _check_header(path)
    if readonly:
        if not path.exists():
            raise StoreError(f"{path}: no such database")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
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
