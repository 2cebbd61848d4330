"""The last watchlist used, kept in the database's `meta` table.

`quanttui` with no pairs reopens it, so it lives with the data it was watching: another
`--db` has its own. One row, key ``watchlist``, value a JSON object
``{"name": "majors", "pairs": ["BTCUSDT/ETHUSDT", "BTCUSDT+ETHUSDT+SOLUSDT", ...]}``
(``name`` is null for pairs given on the command line; a basket is written ``A+B+C``
among the pairs, so a value saved before baskets existed reads the same). A running app writes it through the engine's writer
(`Engine.set_meta`) each time its pairs change; `save_last` is for a process without an
engine (the CLI before it starts one, the scanner).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from quanttui.config import entry_key, parse_watchlist_entry
from quanttui.store.db import connect

META_KEY = "watchlist"
SET_META = "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)"


@dataclass(frozen=True, slots=True)
class SavedWatchlist:
    name: str | None
    pairs: tuple[tuple[str, ...], ...]
    """Pairs (x, y) and baskets (three or more legs), in the order shown."""


def encode(name: str | None, pairs: Sequence[Sequence[str]]) -> str:
    """The `meta` value of a watchlist of pairs (x, y) and baskets (a, b, c, ...)."""
    return json.dumps({"name": name, "pairs": [entry_key(e) for e in pairs]})


def decode(text: str) -> SavedWatchlist | None:
    """None for a value this version cannot read (it is then ignored, not trusted)."""
    try:
        data = json.loads(text)
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            return None
        pairs: list[tuple[str, ...]] = []
        for p in data["pairs"]:
            pair = parse_watchlist_entry(p)
            if pair not in pairs:
                pairs.append(pair)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return SavedWatchlist(name, tuple(pairs))


def load_last(db_path: str | Path) -> SavedWatchlist | None:
    """The saved watchlist, or None (no database yet, nothing saved, unreadable value).
    Raises `StoreError` for a file that is not a quanttui database."""
    if not Path(db_path).expanduser().exists():
        return None
    conn = connect(db_path, readonly=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
    finally:
        conn.close()
    return decode(row[0]) if row else None


def save_last(db_path: str | Path, name: str | None, pairs: Sequence[Sequence[str]]) -> None:
    """Raises `StoreError` (or `sqlite3.Error`) when the database cannot take it."""
    conn = connect(db_path)
    try:
        with conn:
            conn.execute(SET_META, (META_KEY, encode(name, pairs)))
    finally:
        conn.close()
