"""Closes of many symbols on one bar grid, from stored 1m klines: the scanner's input.

Why this shape. The vectorised scan needs a T x N matrix with no holes, so the policy
for missing data lives here, in one place, and every exclusion is reported:

* a symbol with less than `min_coverage` of the span's minutes stored (listed recently,
  delisted, or not fetched) is *short*: left out, with the count in the reason;
* the grid starts at the latest first minute among the symbols kept, so no series is
  back-filled before it traded;
* an interior missing minute repeats the previous close (counted in `filled`);
* coarser bars (5m, 15m) are resampled from 1m: a bar's close is the close of the last
  minute of its bucket ``[t, t + tf)``, buckets aligned to the epoch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MINUTE = 60_000


@dataclass(frozen=True, slots=True, eq=False)
class ClosePanel:
    """`close[t, k]` is the close of `symbols[k]` in the bar opening at `times[t]`."""

    symbols: tuple[str, ...]
    times: np.ndarray
    close: np.ndarray
    timeframe_ms: int
    short: tuple[tuple[str, str], ...] = ()
    filled: dict[str, int] = field(default_factory=dict)

    @property
    def bars(self) -> int:
        return int(self.times.size)


def load_close_panel(
    conn: sqlite3.Connection,
    symbols: Sequence[str],
    start_ms: int,
    end_ms: int,
    timeframe_ms: int = MINUTE,
    *,
    min_coverage: float = 0.9,
) -> ClosePanel:
    """Closes of `symbols` over ``[start_ms, end_ms)`` (both multiples of `timeframe_ms`,
    itself a multiple of one minute) from the ``klines`` table's 1m rows."""
    if timeframe_ms % MINUTE or start_ms % timeframe_ms or end_ms % timeframe_ms:
        raise ValueError("span and timeframe must be whole minutes aligned to the timeframe")
    n = max(0, (end_ms - start_ms) // MINUTE)
    cols: list[np.ndarray] = []
    kept: list[str] = []
    short: list[tuple[str, str]] = []
    for sym in symbols:
        rows = conn.execute(
            "SELECT open_ms, close FROM klines WHERE symbol = ? AND interval = '1m' "
            "AND open_ms >= ? AND open_ms < ?",
            (sym, start_ms, end_ms),
        ).fetchall()
        have = len(rows)
        if have == 0:
            short.append((sym, f"no 1m klines stored in the span (0 of {n:,} minutes)"))
            continue
        if have < min_coverage * n:
            short.append((sym, f"too little history: {have:,} of {n:,} minutes"))
            continue
        a = np.array(rows, dtype=np.float64)
        col = np.full(n, np.nan)
        col[(a[:, 0].astype(np.int64) - start_ms) // MINUTE] = a[:, 1]
        cols.append(col)
        kept.append(sym)
    if not kept:
        return ClosePanel((), np.empty(0, np.int64), np.empty((0, 0)), timeframe_ms, tuple(short))
    m = np.column_stack(cols)
    present = np.isfinite(m)
    first = int(present.argmax(axis=0).max())
    step = timeframe_ms // MINUTE
    first = -(-first // step) * step
    m = m[first:]
    present = present[first:]
    idx = np.where(present, np.arange(m.shape[0])[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    filled_m = m[idx, np.arange(m.shape[1])]
    filled = {s: int(c) for s, c in zip(kept, (~present).sum(axis=0).tolist(), strict=True) if c}
    bars = filled_m.shape[0] // step
    close = filled_m[step - 1 : bars * step : step]
    times = start_ms + (first + np.arange(bars, dtype=np.int64) * step) * MINUTE
    return ClosePanel(tuple(kept), times, close, timeframe_ms, tuple(short), filled)
