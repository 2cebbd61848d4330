"""The `outbox` table: one row per alert (or retraction) and destination.

Rows are written by the engine's writer in the same transaction as the alert row
(`alert_statements`: the alert's INSERT with the outbox INSERTs in its `then`, which
`quanttui.store.writer` runs all or none), so an alert is never stored without its
deliveries nor a delivery without its alert. A retraction's rows are inserted by the
statement that marks the alert withdrawn, one per destination the alert went to.

States: ``pending`` (due at `next_try_ms`), ``sending`` (an attempt is under way: a
process killed then leaves it so, and the next start sends it again, hence at least
once), ``delivered`` (`delivered_ms` set; never sent again), ``failed`` (the attempt cap
was reached; `last_error` says why).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from quanttui.model import Alert
from quanttui.notify.message import Legs, alert_message, retraction_message
from quanttui.notify.urls import Destination
from quanttui.store.db import connect
from quanttui.store.writer import LASTROWID

INSERT_OUTBOX = (
    "INSERT OR IGNORE INTO outbox(alert_id, kind, destination, idem_key, title, body, "
    "attempts, next_try_ms, state, created_ms) "
    "VALUES (?, 'alert', ?, 'qt-' || ? || '-' || ? || '-' || ?, ?, ?, 0, ?, 'pending', ?)"
)
"""Parameters: alert id, destination key, alert id, alert ts_ms, destination hash,
title, body, now, now (the alert id as `LASTROWID`)."""

INSERT_RETRACTION = (
    "INSERT OR IGNORE INTO outbox(alert_id, kind, destination, idem_key, title, body, "
    "attempts, next_try_ms, state, created_ms) "
    "SELECT o.alert_id, 'retraction', o.destination, o.idem_key || '-withdrawn', ?, ?, 0, ?, "
    "'pending', ? FROM outbox o JOIN alerts a ON a.id = o.alert_id "
    "WHERE o.kind = 'alert' AND a.ts_ms = ? AND a.pair = ? AND a.rule = ? AND a.withdrawn_ms = ?"
)
"""Parameters: title, body, now, now, ts_ms, pair, rule, withdrawn_ms."""


def dest_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def now_ms() -> int:
    return int(time.time() * 1000)


def alert_rows(
    alert: Alert,
    destinations: tuple[Destination, ...],
    hedge: float | None,
    method: str,
    *,
    revised: bool = False,
    legs: Legs | None = None,
) -> tuple[tuple[str, tuple], ...]:
    """The `then` statements of an alert's INSERT: one outbox row per destination."""
    if not destinations:
        return ()
    title, body = alert_message(alert, hedge, method, revised=revised, legs=legs)
    t = now_ms()
    return tuple(
        (
            INSERT_OUTBOX,
            (LASTROWID, d.key, LASTROWID, alert.ts_ms, dest_hash(d.key), title, body, t, t),
        )
        for d in destinations
    )


def retraction_rows(alert: Alert, withdrawn_ms: int, reason: str) -> tuple[tuple[str, tuple], ...]:
    """The `then` statement of an alert's withdrawal: a retraction for each destination
    the alert went (or is going) to."""
    title, body = retraction_message(alert, withdrawn_ms, reason)
    t = now_ms()
    return (
        (
            INSERT_RETRACTION,
            (title, body, t, t, alert.ts_ms, alert.pair, alert.rule, withdrawn_ms),
        ),
    )


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    alert_id: int
    kind: str
    destination: str
    idem_key: str
    title: str
    body: str
    attempts: int
    next_try_ms: int
    last_error: str | None
    state: str
    delivered_ms: int | None

    @property
    def dest_name(self) -> str:
        return self.destination.rsplit("#", 1)[0]


_COLUMNS = (
    "id, alert_id, kind, destination, idem_key, title, body, attempts, next_try_ms, "
    "last_error, state, delivered_ms"
)


def rows(
    conn: sqlite3.Connection, where: str = "1", params: tuple = (), limit: int = -1
) -> list[OutboxRow]:
    sql = f"SELECT {_COLUMNS} FROM outbox WHERE {where} ORDER BY id LIMIT {int(limit)}"
    return [OutboxRow(*r) for r in conn.execute(sql, params)]


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int = 0
    failed: int = 0
    delivered: int = 0


def counts(conn: sqlite3.Connection) -> OutboxCounts:
    got = dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
    return OutboxCounts(
        got.get("pending", 0) + got.get("sending", 0), got.get("failed", 0), got.get("delivered", 0)
    )


def delivered_alert_ids(conn: sqlite3.Connection) -> set[int]:
    """Alerts delivered to every destination they had (for an alert log's mark)."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT alert_id FROM outbox WHERE kind = 'alert' GROUP BY alert_id "
            "HAVING sum(state != 'delivered') = 0"
        )
    }


def read_status(db: str | Path) -> tuple[OutboxCounts, list[OutboxRow]]:
    """Counts and the pending and failed rows of a database, read-only."""
    conn = connect(db, readonly=True)
    try:
        has = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='outbox'"
        ).fetchone()
        if not has:
            return OutboxCounts(), []
        return counts(conn), rows(conn, "state IN ('pending', 'sending', 'failed')")
    finally:
        conn.close()
