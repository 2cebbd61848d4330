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

SCHEMA_VERSION = 3
_SQLITE_NOTADB = 26

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
ALTER TABLE alerts ADD COLUMN withdrawn_ms INTEGER;
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
funding rate. ``alerts.withdrawn_ms`` is set on an alert that a recompute from the
database contradicted (`quanttui.engine.alertbook`); the row stays."""

SCHEMA_V3 = """
CREATE TABLE IF NOT EXISTS outbox (
    id           INTEGER PRIMARY KEY,
    alert_id     INTEGER NOT NULL REFERENCES alerts(id),
    kind         TEXT    NOT NULL CHECK (kind IN ('alert', 'retraction')),
    destination  TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL UNIQUE,
    title        TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_try_ms  INTEGER NOT NULL,
    last_error   TEXT,
    state        TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'sending', 'delivered', 'failed')),
    created_ms   INTEGER NOT NULL,
    delivered_ms INTEGER,
    summary_key  TEXT,
    UNIQUE (alert_id, kind, destination)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, destination, next_try_ms);
"""
"""Version 3 adds the notification outbox (issue 30): one row per alert (or retraction)
and destination, inserted in the same transaction as the alert row. `destination` is
the URL with its secrets masked plus a hash of the whole URL (never the URL itself);
`idem_key` identifies the delivery to the receiving service; `summary_key` is the
`idem_key` of the summary message that carried a row sent in a rate-limited batch."""

MIGRATIONS: dict[int, str] = {1: SCHEMA_V1, 2: SCHEMA_V2, 3: SCHEMA_V3}


class StoreError(Exception):
    """The database cannot be used; the message says why in one line."""


def is_sqlite(path: Path) -> bool:
    """Whether `path` starts with SQLite's header, read by SQLite itself.

    Never with Python's ``open()``: on POSIX, closing any descriptor of a file drops every
    advisory lock the process holds on it, SQLite's included
    (https://www.sqlite.org/howtocorrupt.html, section 2.2). A process that holds a
    connection to the database and peeks at its header that way loses its SHARED lock on
    the file; another process's connection then believes itself the last one, checkpoints
    and resets the WAL under the first, and the file is corrupted. SQLite's own opens share
    one lock table per file within a process and defer such closes, so a probe through
    SQLite is safe. An empty file counts as SQLite's (an empty database); a file SQLite
    cannot open for another reason (permissions, read-only media) counts too, and is left
    for `connect` to diagnose."""
    try:
        conn = sqlite3.connect(_uri(path, "mode=ro"), uri=True)
    except sqlite3.Error:
        return True
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        return getattr(exc, "sqlite_errorcode", 0) & 0xFF != _SQLITE_NOTADB
    finally:
        conn.close()
    return True


def _check_header(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if path.is_dir():
        raise StoreError(f"{path}: is a directory, not a database file")
    if size == 0:
        return
    if not is_sqlite(path):
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


LOCK_WAIT_S = 2.0
"""How long a writer waits at start-up for another process's write lock before refusing."""

_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def prepare(path: str | Path, *, lock_wait: float = LOCK_WAIT_S) -> Path:
    """Validate, create or migrate the file, then close it: for callers that reopen it
    for writing. A file whose write lock another process holds for more than `lock_wait`
    seconds is refused with a `StoreError` naming the holder, never waited on for ever."""
    p = Path(path).expanduser()
    _check_header(p)
    check_write_lock(p, lock_wait)
    connect(p).close()
    return p


def check_write_lock(path: Path, wait: float = LOCK_WAIT_S) -> None:
    """Raise `StoreError` if another process keeps SQLite's write lock on `path` for
    `wait` seconds. `BEGIN IMMEDIATE` takes the write lock without writing anything, and
    the `ROLLBACK` releases it, so the file is left as it was. A missing or empty file has
    no holder; a file SQLite cannot read is left for `connect` to diagnose."""
    try:
        if path.stat().st_size == 0:
            return
    except OSError:
        return
    try:
        conn = sqlite3.connect(path, timeout=wait, isolation_level=None)
    except sqlite3.Error:
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            raise StoreError(lock_message(path, wait)) from None
    except sqlite3.DatabaseError:
        pass
    finally:
        conn.close()


def lock_message(path: Path, wait: float) -> str:
    """One line naming the lock and, when Linux lets us see it, the process holding it."""
    holders = lock_holders(path)
    if holders:
        who = ", ".join(f"pid {pid} ({cmd})" for pid, cmd in holders)
        held = f"{who} holds its SQLite write lock"
    else:
        users = open_by(path)
        held = "another process holds its SQLite write lock"
        if users:
            held += "; open in " + ", ".join(f"pid {pid} ({cmd})" for pid, cmd in users)
    return f"{path}: database is locked by another writer: {held} (gave up after {wait:g} s)"


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    cmd = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    cmd = "".join(c if c.isprintable() else "?" for c in cmd)
    return cmd[:77] + "..." if len(cmd) > 80 else cmd or "?"


def lock_holders(path: Path) -> list[tuple[int, str]]:
    """Processes (pid, command line) holding SQLite's write lock on `path`, read from
    Linux's `/proc/locks`; empty elsewhere or when nothing is found.

    SQLite locks with POSIX advisory locks (https://www.sqlite.org/lockingv3.html). In WAL
    mode the writer holds an exclusive lock on byte 120 of the `-shm` file, the
    WAL_WRITE_LOCK (https://www.sqlite.org/walformat.html, section 2.3.1); in rollback mode a
    writer holds a write lock on the database file itself (RESERVED, PENDING, EXCLUSIVE).
    `/proc/locks` rows read `1: POSIX ADVISORY WRITE <pid> <maj>:<min>:<inode> <start> <end>`.
    """
    wanted: dict[tuple[int, int, int], int | None] = {}
    for suffix, byte in (("", None), ("-shm", 120)):
        try:
            st = os.stat(f"{path}{suffix}")
        except OSError:
            continue
        wanted[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = byte
    try:
        rows = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids: list[int] = []
    for row in rows:
        f = row.split()
        if "->" in f:
            continue
        try:
            kind, pid = f[3], int(f[4])
            maj, mino, ino = f[5].split(":")
            key = (int(maj, 16), int(mino, 16), int(ino))
            start = int(f[6])
        except (IndexError, ValueError):
            continue
        if kind != "WRITE" or key not in wanted or pid in (os.getpid(), -1):
            continue
        byte = wanted[key]
        if (byte is None or start == byte) and pid not in pids:
            pids.append(pid)
    return [(pid, _cmdline(pid)) for pid in pids]


def open_by(path: Path, limit: int = 3) -> list[tuple[int, str]]:
    """Other processes with `path` open (a scan of `/proc/*/fd`, as `fuser` does), for
    when the lock table names nobody; only processes we may inspect are seen."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    found: list[tuple[int, str]] = []
    try:
        procs = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    except OSError:
        return []
    for p in procs:
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"/proc/{p}/fd/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                found.append((int(p), _cmdline(int(p))))
                break
        if len(found) >= limit:
            break
    return found
