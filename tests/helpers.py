from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from quanttui.model import Tick
from quanttui.store.db import connect
from quanttui.store.writer import INSERT_TICK


def store_ticks(db: Path, ticks: Iterable[Tick]) -> sqlite3.Connection:
    conn = connect(db)
    with conn:
        conn.executemany(
            INSERT_TICK,
            [(t.symbol, t.trade_id, t.ts_ms, t.price, t.qty, int(t.is_buyer_maker)) for t in ticks],
        )
    return conn
