"""Database health: integrity before writing, and quarantine of implausible rows.

Two faults can be found in a database that opens normally:

* **Damaged pages.** A file whose header is intact but whose pages are not passes the
  schema check in `quanttui.store.db`, and writing into it spreads the damage.
  `check_integrity` runs ``PRAGMA quick_check`` (https://www.sqlite.org/pragma.html
  #pragma_quick_check: every page and record checked, O(N), without the index/table
  cross-check of ``integrity_check``) and refuses such a file untouched; `import` and
  `doctor` run it first.
* **Implausible trade times.** A database written before every source held trade times
  to `quanttui.plausible` may hold rows stamped in the future (or before the market
  opened). Bars already ignore rows after ``now + FUTURE_TOLERANCE_MS``; such rows are
  moved, whole, into the ``quarantine`` table, where they can be inspected or put back
  by hand. At start-up (`startup_quarantine`) this happens only when they are few
  (at most 100 rows, or 1% of their table): many future rows more likely mean that the
  system clock is wrong, and then nothing is moved and the user is told; ``quanttui
  doctor --quarantine`` moves them on request.

The ``quarantine`` table (``id, tbl, reason, moved_ms, row``; ``row`` is the original
row as a JSON object) is created when first needed; older quanttui versions ignore it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from quanttui.model import iso_utc
from quanttui.plausible import BEFORE_LISTING, FUTURE, FUTURES_LAUNCH_MS, latest_ms, wall_ms
from quanttui.store.db import StoreError, connect

AUTO_SHARE = 0.01
AUTO_MIN_ROWS = 100
"""Start-up quarantine moves implausible rows only when they are at most
``max(AUTO_MIN_ROWS, AUTO_SHARE × rows)`` of their table."""

QUARANTINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id       INTEGER PRIMARY KEY,
    tbl      TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    moved_ms INTEGER NOT NULL,
    row      TEXT    NOT NULL
)
"""

_TABLES = {
    "ticks": (
        "ts_ms",
        ("symbol", "trade_id", "ts_ms", "price", "qty", "is_buyer_maker"),
    ),
    "klines": (
        "open_ms",
        (
            "symbol",
            "interval",
            "open_ms",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "close_ms",
            "quote_volume",
            "trades",
        ),
    ),
}


def integrity_problem(conn: sqlite3.Connection) -> str | None:
    """The first findings of ``PRAGMA quick_check`` in one line, or None when it says ok."""
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if rows == ["ok"]:
        return None
    text = "; ".join(" ".join(r.split()) for r in rows)
    return text if len(text) <= 200 else text[:199] + "…"


def check_integrity(path: str | Path) -> None:
    """Raise `StoreError` if an existing quanttui database is damaged (or is no quanttui
    database at all). Read-only: the file is left exactly as it was. A missing or empty
    file passes: there is nothing to damage."""
    path = Path(path).expanduser()
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        conn = connect(path, readonly=True)
    except StoreError as exc:
        if str(exc).endswith(": empty database"):
            return
        raise
    try:
        problem = integrity_problem(conn)
    finally:
        conn.close()
    if problem is not None:
        raise StoreError(
            f"{path}: database is damaged (PRAGMA quick_check: {problem}); nothing was "
            f"written. Restore a backup, or recover the data with `sqlite3 {path} .recover`"
        )


@dataclass
class Implausible:
    """Rows whose time no trade can have, per table and reason, and the table sizes
    (filled in only when some were found)."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    cutoff_ms: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def in_table(self, table: str) -> int:
        return sum(n for (t, _), n in self.counts.items() if t == table)

    def describe(self) -> str:
        return ", ".join(
            f"{n:,} {'trade' if t == 'ticks' else 'kline'}{'s' if n != 1 else ''} ({reason})"
            for (t, reason), n in sorted(self.counts.items())
            if n
        )


def _symbols(conn: sqlite3.Connection, table: str) -> list[str]:
    """Distinct symbols by successive primary-key seeks: O(k log N), not a table scan."""
    out: list[str] = []
    last = ""
    while True:
        row = conn.execute(f"SELECT min(symbol) FROM {table} WHERE symbol > ?", (last,)).fetchone()
        if row[0] is None:
            return out
        last = row[0]
        out.append(last)


def find_implausible(conn: sqlite3.Connection, now_ms: int | None = None) -> Implausible:
    """Count the rows of ``ticks`` and ``klines`` stamped after ``now + tolerance`` or
    before the futures launch, symbol by symbol along the ``(symbol, time)`` indexes."""
    now = wall_ms() if now_ms is None else now_ms
    found = Implausible(cutoff_ms=latest_ms(now))
    for table, (col, _) in _TABLES.items():
        for sym in _symbols(conn, table):
            for reason, cond, arg in (
                (FUTURE, f"{col} > ?", found.cutoff_ms),
                (BEFORE_LISTING, f"{col} < ?", FUTURES_LAUNCH_MS),
            ):
                n = conn.execute(
                    f"SELECT count(*) FROM {table} WHERE symbol = ? AND {cond}", (sym, arg)
                ).fetchone()[0]
                if n:
                    key = (table, reason)
                    found.counts[key] = found.counts.get(key, 0) + n
        if found.in_table(table):
            found.totals[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return found


def move_to_quarantine(conn: sqlite3.Connection, found: Implausible) -> int:
    """Move the rows `found` describes into ``quarantine``, in one transaction; returns
    how many moved."""
    moved = 0
    stamp = wall_ms()
    with conn:
        conn.execute(QUARANTINE_SCHEMA)
        for table, (col, cols) in _TABLES.items():
            if not found.in_table(table):
                continue
            for reason, cond, arg in (
                (FUTURE, f"{col} > ?", found.cutoff_ms),
                (BEFORE_LISTING, f"{col} < ?", FUTURES_LAUNCH_MS),
            ):
                if not found.counts.get((table, reason)):
                    continue
                rows = conn.execute(
                    f"SELECT {', '.join(cols)} FROM {table} WHERE {cond}", (arg,)
                ).fetchall()
                conn.executemany(
                    "INSERT INTO quarantine(tbl, reason, moved_ms, row) VALUES (?, ?, ?, ?)",
                    [
                        (table, reason, stamp, json.dumps(dict(zip(cols, r, strict=True))))
                        for r in rows
                    ],
                )
                conn.execute(f"DELETE FROM {table} WHERE {cond}", (arg,))
                moved += len(rows)
    return moved


def quarantined(conn: sqlite3.Connection) -> int:
    try:
        return conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def startup_quarantine(path: str | Path) -> list[str]:
    """The start-up check of a writable database: moves a few implausible rows to the
    quarantine table, or leaves many in place; returns warning lines for the user."""
    conn = connect(path)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        found = find_implausible(conn)
        if not found.total:
            return []
        many = [
            t
            for t, total in found.totals.items()
            if found.in_table(t) > max(AUTO_MIN_ROWS, AUTO_SHARE * total)
        ]
        if many:
            return [
                f"{path}: {found.describe()} have times no trade can have (after "
                f"now + 60 s or before 2019-09-01); they are ignored but not moved, as they "
                f"are more than {AUTO_MIN_ROWS} rows and {AUTO_SHARE:.0%} of the table: is the "
                "system clock right? "
                "`quanttui doctor --quarantine` moves them"
            ]
        moved = move_to_quarantine(conn, found)
        return [
            f"{path}: moved {moved:,} row{'s' if moved != 1 else ''} with impossible times "
            f"to the quarantine table: {found.describe()} (see `quanttui doctor`)"
        ]
    finally:
        conn.close()


def doctor(path: str | Path, *, fix: bool) -> tuple[int, list[str]]:
    """`quanttui doctor`: check integrity, report (and with `fix`, quarantine) implausible
    rows. Returns the exit code (0 healthy, 1 a problem left) and the report lines.
    Raises `StoreError` for a database that cannot be opened or is damaged."""
    path = Path(path).expanduser()
    check_integrity(path)
    lines = [f"{path}: integrity ok (PRAGMA quick_check)"]
    conn = connect(path) if fix else connect(path, readonly=True)
    try:
        found = find_implausible(conn)
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("ticks", "klines")
        }
        lines.append(f"ticks: {counts['ticks']:,} rows; klines: {counts['klines']:,} rows")
        code = 0
        if not found.total:
            lines.append("no row with an implausible time")
        elif fix:
            moved = move_to_quarantine(conn, found)
            lines.append(f"moved to the quarantine table: {found.describe()} ({moved:,} rows)")
        else:
            lines.append(
                f"implausible times (after {iso_utc(found.cutoff_ms)} or before 2019-09-01): "
                f"{found.describe()}; `quanttui doctor --quarantine` moves them"
            )
            code = 1
        lines.append(f"quarantine table: {quarantined(conn):,} rows")
        return code, lines
    finally:
        conn.close()
