"""Readers for recorded trades from other tools.

The NDJSON recordings in the wild (one object per line with `symbol`, `ts` as ISO-8601
UTC, `price`, `size`) carry no trade id, so rows get a synthetic id: their 1-based
position among the file's rows of the same symbol. Re-reading a file therefore yields the
same ids, which keeps imports idempotent. Zero-price rows (Binance's `"p":"0","q":"0"`
events) are read as recorded; a replay drops them where the live feed does
(`quanttui.feed.binance.drop_empty`). A trade time no trade can have
(`quanttui.plausible`) is a bad record.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from quanttui.model import Tick, parse_iso_ms
from quanttui.plausible import describe, wall_ms


class RecordingError(ValueError):
    """A recording line cannot be parsed; carries the line number."""


def read_ndjson(path: str | Path) -> Iterator[Tick]:
    """Ticks of a recording (`.gz` is read compressed); raises `RecordingError`."""
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            yield from _ticks(path, fh)
    except (OSError, EOFError) as exc:
        raise RecordingError(f"{path}: cannot read ({exc})") from None


def _ticks(path: Path, lines: Iterable[bytes]) -> Iterator[Tick]:
    counters: dict[str, int] = {}
    now = wall_ms()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            sym = str(row["symbol"]).upper()
            ts = row.get("ts", row.get("timestamp"))
            ts_ms = int(ts) if isinstance(ts, int | float) else parse_iso_ms(str(ts))
            price = float(row["price"])
            qty = float(row.get("size", row.get("qty")))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError) as exc:
            raise RecordingError(f"{path}:{lineno}: bad record ({exc})") from None
        if not (math.isfinite(price) and math.isfinite(qty)) or price < 0 or qty < 0:
            raise RecordingError(f"{path}:{lineno}: bad price or size")
        problem = describe(ts_ms, now)
        if problem is not None:
            raise RecordingError(f"{path}:{lineno}: {problem}")
        n = counters[sym] = counters.get(sym, 0) + 1
        yield Tick(sym, n, ts_ms, price, qty, False)
