"""Read side: load a pair's history as numpy arrays and bars.

Synchronous `sqlite3` on its own connection, meant for worker threads (WAL lets readers
run beside the writer). Every statement is parameterised, symbols included.

Rows stamped after `quanttui.plausible.latest_ms` (the clock plus a minute) are never
read: a database written before the boundary checks existed may hold a trade stamped
decades ahead, and one such row would otherwise open a bar in that future, after which
no bar could close. `quanttui.store.health` reports and quarantines them.
"""

from __future__ import annotations

import itertools
import sqlite3

import numpy as np

from quanttui.analytics.bars import (
    BasketBars,
    LegBars,
    PairBars,
    align,
    align_legs,
    leg_bars,
    settled_end,
)
from quanttui.analytics.funding import FundingSeries
from quanttui.analytics.live import CLOSE_GRACE_MS
from quanttui.config import TIMEFRAMES
from quanttui.model import DEFAULT_FUNDING_INTERVAL_H, MarkPrice, Tick
from quanttui.plausible import latest_ms

KLINE_INTERVALS = {"1m": 60_000, "5m": 300_000}


PAGE_ROWS = 10_000
"""Trades read at a time when a leg's stored history becomes bars (`leg_bars_paged`): a
recompute holds one page of rows (about 1.3 MB as Python rows) plus the bars, never every
stored trade (about 110 MB per million), so its memory does not grow with the database.
Small on purpose: a recompute runs while the feed goes on allocating, and the allocator
keeps a page's arenas that a surviving object pins, so a page's size becomes RSS that
stays (100,000-row pages cost about 4 MB more RSS per recompute in
`benchmarks/bench_memory.py`); reading in smaller pages is no slower."""

_LEG_SQL = (
    "SELECT ts_ms, price, qty FROM ticks WHERE symbol = ? AND ts_ms >= ? AND ts_ms < ? "
    "ORDER BY trade_id"
)


def _leg_arrays(rows: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(ts_ms, price, qty)` rows in trade-id order as arrays in time order (stable, so
    trades of the same millisecond stay in id order)."""
    flat = np.fromiter(itertools.chain.from_iterable(rows), np.float64, count=3 * len(rows))
    arr = flat.reshape(-1, 3)
    ts = arr[:, 0].astype(np.int64)
    if ts.size > 1 and (np.diff(ts) < 0).any():
        order = np.argsort(ts, kind="stable")
        return ts[order], arr[order, 1], arr[order, 2]
    return ts, arr[:, 1].copy(), arr[:, 2].copy()


def _bounds(start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
    """`[lo, hi)` of a leg's load; never past `latest_ms()` (an implausible future trade
    already stored is ignored by bars, see `quanttui.plausible`)."""
    lo = -(2**62) if start_ms is None else start_ms
    hi = latest_ms() + 1 if end_ms is None else min(end_ms, latest_ms() + 1)
    return lo, hi


def load_leg(
    conn: sqlite3.Connection, symbol: str, start_ms: int | None = None, end_ms: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(ts_ms, price, qty)` of one symbol's trades in `[start_ms, end_ms)` (and never
    after `latest_ms()`), ordered by trade time then trade id.

    Rows are read in primary-key order (a plain range scan of the table, no index
    lookups: about 40% faster on a million rows) and put in time order by a stable sort,
    which keeps id order among trades of the same millisecond."""
    rows = conn.execute(_LEG_SQL, (symbol, *_bounds(start_ms, end_ms))).fetchall()
    if not rows:
        return np.empty(0, np.int64), np.empty(0), np.empty(0)
    return _leg_arrays(rows)


def leg_bars_paged(
    conn: sqlite3.Connection,
    symbol: str,
    timeframe_ms: int,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> LegBars:
    """`leg_bars(*load_leg(...), timeframe_ms)`, the same numbers bit for bit, reading
    `PAGE_ROWS` trades at a time.

    Pages come in trade-id order, as `load_leg` reads them. The trades of a page's last
    bucket are held back and aggregated with the next page, so every bucket is built from
    all its trades at once. This equals the whole leg's stable sort by time as long as no
    page holds a trade older than the previous page's newest; ids out of time order
    across a page boundary (not seen in Binance data) make it read the leg whole."""
    cur = conn.execute(_LEG_SQL, (symbol, *_bounds(start_ms, end_ms)))
    parts: list[LegBars] = []
    held: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    while rows := cur.fetchmany(PAGE_ROWS):
        page = _leg_arrays(rows)
        del rows
        if held is not None:
            if page[0][0] < held[0][-1]:
                cur.close()
                return leg_bars(*load_leg(conn, symbol, start_ms, end_ms), timeframe_ms)
            page = tuple(np.concatenate(pair) for pair in zip(held, page, strict=True))
        ts = page[0]
        cut = int(np.searchsorted(ts, ts[-1] - ts[-1] % timeframe_ms, side="left"))
        parts.append(leg_bars(*(a[:cut] for a in page), timeframe_ms))
        held = tuple(a[cut:] for a in page)
    if held is not None:
        parts.append(leg_bars(*held, timeframe_ms))
    parts = [p for p in parts if p.ts_ms.size]
    if not parts:
        return LegBars.empty()
    if len(parts) == 1:
        return parts[0]
    return LegBars(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in LegBars.__dataclass_fields__)
    )


def load_kline_bars(
    conn: sqlite3.Connection, symbol: str, timeframe_ms: int, start_ms: int | None = None
) -> LegBars:
    """Stored 1m klines, re-bucketed to `timeframe_ms` (1m or 5m)."""
    lo = -(2**62) if start_ms is None else start_ms
    rows = conn.execute(
        "SELECT open_ms, open, high, low, close, volume, trades FROM klines "
        "WHERE symbol = ? AND interval = '1m' AND open_ms >= ? AND open_ms <= ? "
        "ORDER BY open_ms",
        (symbol, lo, latest_ms()),
    ).fetchall()
    if not rows:
        return LegBars.empty()
    a = np.array(rows, dtype=np.float64)
    t = a[:, 0].astype(np.int64)
    bucket = t - t % timeframe_ms
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], bucket.size] - 1
    return LegBars(
        ts_ms=bucket[starts],
        open=a[starts, 1],
        high=np.maximum.reduceat(a[:, 2], starts),
        low=np.minimum.reduceat(a[:, 3], starts),
        close=a[ends, 4],
        volume=np.add.reduceat(a[:, 5], starts),
        trades=np.add.reduceat(a[:, 6], starts).astype(np.int64),
    )


def merge_legs(ticks: LegBars, klines: LegBars) -> LegBars:
    """Union of tick-built and kline bars; where both cover a bucket the tick bar wins."""
    if klines.ts_ms.size == 0:
        return ticks
    if ticks.ts_ms.size == 0:
        return klines
    keep = ~np.isin(klines.ts_ms, ticks.ts_ms)
    fields = LegBars.__dataclass_fields__
    merged = {f: np.concatenate([getattr(ticks, f), getattr(klines, f)[keep]]) for f in fields}
    order = np.argsort(merged["ts_ms"], kind="stable")
    return LegBars(**{f: v[order] for f, v in merged.items()})


def leg_history(
    conn: sqlite3.Connection, symbol: str, timeframe: str, start_ms: int | None = None
) -> LegBars:
    tf = TIMEFRAMES[timeframe]
    bars = leg_bars_paged(conn, symbol, tf, start_ms)
    if timeframe in KLINE_INTERVALS:
        bars = merge_legs(bars, load_kline_bars(conn, symbol, tf, start_ms))
    return bars


def load_pair_bars(
    conn: sqlite3.Connection,
    symbol_x: str,
    symbol_y: str,
    timeframe: str,
    end_ms: int | None = None,
    start_ms: int | None = None,
    max_gap_bars: int | None = None,
) -> PairBars:
    """Both legs on the shared grid from stored ticks (and, at 1m/5m, stored klines where
    no tick covers the bucket). `end_ms` excludes the bucket containing it (the bar still
    open); without it the last stored bucket is included."""
    tf = TIMEFRAMES[timeframe]
    return align(
        leg_history(conn, symbol_x, timeframe, start_ms),
        leg_history(conn, symbol_y, timeframe, start_ms),
        tf,
        end_ms,
        max_gap_bars,
    )


def newest_data_ms(conn: sqlite3.Connection, symbols: list[str], timeframe: str) -> int | None:
    """The latest time the stored data of `symbols` reaches, for `settled_end`: the newest
    trade time ``T`` (a trade with price and quantity > 0, not after `latest_ms()`: the
    trades bars are built from), and at 1m/5m, where stored 1m klines make bars, the end
    of the newest kline (the minute still open is never stored, so a stored kline is a
    whole minute). None when nothing is stored."""
    hi = latest_ms()
    out: list[int] = []
    for s in symbols:
        row = conn.execute(
            "SELECT ts_ms FROM ticks WHERE symbol = ? AND ts_ms <= ? AND price > 0 AND qty > 0 "
            "ORDER BY ts_ms DESC LIMIT 1",
            (s, hi),
        ).fetchone()
        if row is not None:
            out.append(int(row[0]))
        if timeframe in KLINE_INTERVALS:
            row = conn.execute(
                "SELECT max(open_ms) FROM klines WHERE symbol = ? AND interval = '1m' "
                "AND open_ms <= ?",
                (s, hi),
            ).fetchone()
            if row is not None and row[0] is not None:
                out.append(int(row[0]) + KLINE_INTERVALS["1m"])
    return max(out) if out else None


def settled_end_ms(
    conn: sqlite3.Connection,
    symbol_x: str,
    symbol_y: str,
    timeframe: str,
    now_ms: int | None = None,
) -> int | None:
    """`quanttui.analytics.bars.settled_end` of the stored pair: the start of its first
    bar that is not settled. A bar is settled once a trade of either leg at or after its
    end is stored (or, given `now_ms`, the engine's clock, less `CLOSE_GRACE_MS`, is past
    its end), the rule by which the live builder closes bars and the alerts run."""
    newest = newest_data_ms(conn, [symbol_x, symbol_y], timeframe)
    return settled_end(TIMEFRAMES[timeframe], newest, now_ms, CLOSE_GRACE_MS)


def load_settled_bars(
    conn: sqlite3.Connection,
    symbol_x: str,
    symbol_y: str,
    timeframe: str,
    *,
    end_ms: int | None = None,
    now_ms: int | None = None,
    max_gap_bars: int | None = None,
) -> tuple[PairBars, PairBars]:
    """`load_pair_bars` split where the settled bars end: ``(settled, unsettled)``.

    The split is `end_ms` when given (the engine passes the bucket its live builder has
    open), else `settled_end_ms` of the stored data (with `now_ms` if given). `unsettled`
    holds the stored buckets from there on, as far as their trades are stored: normally
    none, or the one bar still open. Both legs are read once."""
    tf = TIMEFRAMES[timeframe]
    x = leg_history(conn, symbol_x, timeframe)
    y = leg_history(conn, symbol_y, timeframe)
    if end_ms is None:
        end_ms = settled_end_ms(conn, symbol_x, symbol_y, timeframe, now_ms)
    full = align(x, y, tf, None, max_gap_bars)
    if end_ms is None:
        return full, full.slice(len(full), len(full))
    settled = align(x, y, tf, end_ms, max_gap_bars)
    cut = int(np.searchsorted(full.ts_ms, end_ms, side="left"))
    return settled, full.slice(cut, len(full))


def load_basket_bars(
    conn: sqlite3.Connection,
    symbols: list[str],
    timeframe: str,
    end_ms: int | None = None,
    start_ms: int | None = None,
    max_gap_bars: int | None = None,
) -> BasketBars:
    """`load_pair_bars` for a basket: every leg on the shared grid (`align_legs`)."""
    legs = [leg_history(conn, s, timeframe, start_ms) for s in symbols]
    return align_legs(legs, TIMEFRAMES[timeframe], end_ms, max_gap_bars)


def load_settled_basket_bars(
    conn: sqlite3.Connection,
    symbols: list[str],
    timeframe: str,
    *,
    end_ms: int | None = None,
    now_ms: int | None = None,
    max_gap_bars: int | None = None,
) -> tuple[BasketBars, BasketBars]:
    """`load_settled_bars` for a basket: ``(settled, unsettled)``, split at `end_ms` when
    given, else where the stored data of every leg settles (a trade of any leg at or
    after a bar's end settles it)."""
    tf = TIMEFRAMES[timeframe]
    legs = [leg_history(conn, s, timeframe) for s in symbols]
    if end_ms is None:
        end_ms = settled_end(tf, newest_data_ms(conn, symbols, timeframe), now_ms, CLOSE_GRACE_MS)
    full = align_legs(legs, tf, None, max_gap_bars)
    if end_ms is None:
        return full, full.slice(len(full), len(full))
    settled = align_legs(legs, tf, end_ms, max_gap_bars)
    cut = int(np.searchsorted(full.ts_ms, end_ms, side="left"))
    return settled, full.slice(cut, len(full))


def load_ticks(conn: sqlite3.Connection, symbols: list[str], start_ms: int) -> list[Tick]:
    """Stored trades of `symbols` at or after `start_ms` (and not after `latest_ms()`),
    by trade time then id."""
    out: list[Tick] = []
    hi = latest_ms()
    for sym in symbols:
        rows = conn.execute(
            "SELECT trade_id, ts_ms, price, qty, is_buyer_maker FROM ticks "
            "WHERE symbol = ? AND ts_ms >= ? AND ts_ms <= ?",
            (sym, start_ms, hi),
        ).fetchall()
        out += [Tick(sym, i, ts, p, q, bool(m)) for i, ts, p, q, m in rows]
    out.sort(key=lambda t: (t.ts_ms, t.trade_id))
    return out


def tick_counts(conn: sqlite3.Connection, symbols: list[str]) -> dict[str, int]:
    return {
        s: conn.execute("SELECT count(*) FROM ticks WHERE symbol = ?", (s,)).fetchone()[0]
        for s in symbols
    }


def gap_counts(conn: sqlite3.Connection, symbols: list[str]) -> dict[str, int]:
    marks = ",".join("?" * len(symbols))
    rows = conn.execute(
        f"SELECT status, count(*) FROM gaps WHERE symbol IN ({marks}) GROUP BY status",
        symbols,
    ).fetchall()
    out = {"open": 0, "filled": 0}
    out.update(dict(rows))
    return out


def symbols_with_data(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT symbol FROM ticks UNION SELECT DISTINCT symbol FROM klines ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def funding_intervals(conn: sqlite3.Connection, symbols: list[str]) -> dict[str, int]:
    """Each symbol's settlement interval in hours from ``funding_info``, else 8 h. A v1
    database (no such table) gives the default for every symbol."""
    out = dict.fromkeys(symbols, DEFAULT_FUNDING_INTERVAL_H)
    if not _has_table(conn, "funding_info"):
        return out
    for s in symbols:
        row = conn.execute(
            "SELECT interval_hours FROM funding_info WHERE symbol = ?", (s,)
        ).fetchone()
        if row is not None:
            out[s] = int(row[0])
    return out


def load_funding(
    conn: sqlite3.Connection, symbol: str, start_ms: int | None = None, end_ms: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(funding_ms, rate, mark_price)`` of the stored settlements of `symbol` in
    ``[start_ms, end_ms]``, oldest first; ``mark_price`` is NaN where it is NULL. A v1
    database (no ``funding`` table) has none."""
    lo = -(2**62) if start_ms is None else start_ms
    hi = 2**62 if end_ms is None else end_ms
    rows = []
    if _has_table(conn, "funding"):
        rows = conn.execute(
            "SELECT funding_ms, rate, mark_price FROM funding WHERE symbol = ? "
            "AND funding_ms >= ? AND funding_ms <= ? ORDER BY funding_ms",
            (symbol, lo, hi),
        ).fetchall()
    ts = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    rate = np.fromiter((r[1] for r in rows), np.float64, len(rows))
    mark = np.fromiter((np.nan if r[2] is None else r[2] for r in rows), np.float64, len(rows))
    return ts, rate, mark


def load_marks(conn: sqlite3.Connection, symbols: list[str]) -> dict[str, MarkPrice]:
    """The latest stored mark-price update of each symbol that has one (none in a v1
    database)."""
    out: dict[str, MarkPrice] = {}
    if not _has_table(conn, "mark_prices"):
        return out
    for s in symbols:
        row = conn.execute(
            "SELECT event_ms, mark_price, index_price, funding_rate, next_funding_ms "
            "FROM mark_prices WHERE symbol = ?",
            (s,),
        ).fetchone()
        if row is not None:
            e, mark, index, rate, nxt = row
            out[s] = MarkPrice(s, e, mark, index, None, rate, nxt)
    return out


def load_funding_series(
    conn: sqlite3.Connection,
    symbols: list[str],
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> dict[str, FundingSeries]:
    """Each symbol's stored settlements in ``[start_ms, end_ms]`` with its interval, for
    the backtest and the export (empty series in a v1 database)."""
    intervals = funding_intervals(conn, symbols)
    return {
        s: FundingSeries(*load_funding(conn, s, start_ms, end_ms), interval_h=intervals[s])
        for s in symbols
    }


def funding_rates_per_day(
    conn: sqlite3.Connection, symbols: list[str], now_ms: int | None = None
) -> np.ndarray:
    """Each symbol's current funding rate per day (`quanttui.analytics.funding.daily_rate`
    with its interval), for `carry_matrix`: the predicted rate of the latest stored mark
    price, else the last stored settlement, else NaN.

    With `now_ms`, a rate too old to be current is NaN, never a stale figure: a predicted
    rate whose funding time ``T`` is more than one interval past (a settlement since has
    reset it), or a settlement more than two intervals old."""
    marks = load_marks(conn, symbols)
    intervals = funding_intervals(conn, symbols)
    stored = _has_table(conn, "funding")
    out = np.full(len(symbols), np.nan)
    for k, s in enumerate(symbols):
        every_ms = intervals[s] * 3_600_000
        mark = marks.get(s)
        if mark is not None and (now_ms is None or now_ms <= mark.next_funding_ms + every_ms):
            out[k] = mark.rate * 24 / intervals[s]
            continue
        row = None
        if stored:
            row = conn.execute(
                "SELECT rate, funding_ms FROM funding WHERE symbol = ? "
                "ORDER BY funding_ms DESC LIMIT 1",
                (s,),
            ).fetchone()
        if row is not None and (now_ms is None or now_ms - row[1] <= 2 * every_ms):
            out[k] = row[0] * 24 / intervals[s]
    return out
