"""Warm start: fetch over REST, at launch, the recent history the database lacks.

What is fetched (USD-M REST, `BinanceRest` honours ``Retry-After`` on 429/418):

* 1m and 5m timeframes: 1m klines, ``GET /fapi/v1/klines?symbol=S&interval=1m&startTime=
  &endTime=&limit=1500`` (weight 10 at that limit), for every minute of the span that has
  neither a stored kline nor a stored trade. Rows are ``[open time, o, h, l, c, volume,
  close time, quote volume, trades, taker-buy base, taker-buy quote, ignore]``; the
  still-open minute is not stored. They go to the `klines` table, where imported klines
  go; bars built from ticks win wherever both cover a bucket, so nothing is counted twice.
* 1s timeframe: aggTrades, ``GET /fapi/v1/aggTrades?symbol=S&startTime=&endTime=
  &limit=1000`` (weight 20; the time window must be under one hour) for the first page,
  then paged by ``fromId`` up to the launch time. They are stored as ordinary ticks, keyed
  by the aggregate id like the live feed's, so the join with live data has no duplicate
  (same id, ``INSERT OR IGNORE``) and no hole (paging by id is gapless). When the span
  already holds trades, only the head before the first stored trade and the tail after
  the last one are fetched; the tail starts at ``last id + 1``.

The span is ``[feed] backfill``: ``"auto"`` is 2W bars of the timeframe plus a margin of
``max(10, W/10)`` bars, ``"off"`` disables it, or a duration such as ``"90m"``/``"12h"``/
``"2d"``. Request weight is budgeted against Binance's 2,400 per minute: when the
``X-MBX-USED-WEIGHT-1m`` header says the next request would pass 90% of it, the backfill
waits for the next minute (and gives up if the header still says so then).

Replies are untrusted: rows are validated field by field and held to the request (see
`Backfill`); the count reported is the number of rows new to the database. A throttled
or unreachable endpoint ends the warm start with state ``skipped``; it never holds up
the live feed, which runs beside it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from quanttui.config import BACKFILL_DURATION, TIMEFRAMES
from quanttui.feed.binance import BinanceRest, RestError, RestThrottled, RestUnavailable
from quanttui.plausible import FUTURES_LAUNCH_MS, earliest_ms
from quanttui.store.db import StoreError, connect
from quanttui.store.importer import INSERT_KLINE, ImplausibleTime, kline_row
from quanttui.store.writer import TickWriter

MINUTE = 60_000
HOUR = 3_600_000
KLINE_LIMIT = 1500
KLINE_WEIGHT = 10
AGG_LIMIT = 1000
AGG_WEIGHT = 20
WEIGHT_BUDGET = 2400
_DURATION = BACKFILL_DURATION
_UNIT_MS = {"s": 1000, "m": MINUTE, "h": HOUR, "d": 24 * HOUR}


def span_ms(value: str, timeframe: str, window: int) -> int:
    """The history to hold, in ms, for a `[feed] backfill` value."""
    v = value.strip().lower()
    if v == "off":
        return 0
    if v == "auto":
        return (2 * window + max(10, window // 10)) * TIMEFRAMES[timeframe]
    m = _DURATION.match(v)
    if not m:
        raise ValueError(f"bad backfill value {value!r}")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


@dataclass
class BackfillProgress:
    """Shared with the screen: ``done``/``total`` in bars of the fetched resolution."""

    state: str = "pending"  # pending, running, done, skipped, off
    done: int = 0
    total: int = 0
    detail: str = ""
    requests: int = 0
    rows: int = 0  # new to the database
    fetched: dict[str, int] = field(default_factory=dict)  # new rows per symbol
    dropped: Counter[str] = field(default_factory=Counter)  # rows of the replies, by reason


def _runs(missing: list[int], step: int) -> list[tuple[int, int]]:
    """Contiguous runs ``[start, end)`` of sorted bucket starts."""
    out: list[tuple[int, int]] = []
    for t in missing:
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0], t + step)
        else:
            out.append((t, t + step))
    return out


def missing_minutes(conn: sqlite3.Connection, symbol: str, start: int, end: int) -> list[int]:
    """Minute starts in ``[start, end)`` with neither a stored 1m kline nor a trade."""
    have = {
        r[0]
        for r in conn.execute(
            "SELECT open_ms FROM klines WHERE symbol = ? AND interval = '1m' "
            "AND open_ms >= ? AND open_ms < ?",
            (symbol, start, end),
        )
    }
    have.update(
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT ts_ms - ts_ms % 60000 FROM ticks WHERE symbol = ? "
            "AND ts_ms >= ? AND ts_ms < ? AND price > 0",
            (symbol, start, end),
        )
    )
    return [t for t in range(start, end, MINUTE) if t not in have]


def stored_trades(
    conn: sqlite3.Connection, symbol: str, start: int, end: int
) -> tuple[int, int, int, int] | None:
    """``(first_ts, first_id, last_ts, last_id)`` of the aggregate trades in the span."""
    row = conn.execute(
        "SELECT min(ts_ms), max(ts_ms) FROM ticks WHERE symbol = ? AND ts_ms >= ? "
        "AND ts_ms < ? AND trade_id > 0",
        (symbol, start, end),
    ).fetchone()
    if row[0] is None:
        return None
    first_id = conn.execute(
        "SELECT min(trade_id) FROM ticks WHERE symbol = ? AND ts_ms = ? AND trade_id > 0",
        (symbol, row[0]),
    ).fetchone()[0]
    last_id = conn.execute(
        "SELECT max(trade_id) FROM ticks WHERE symbol = ? AND ts_ms = ? AND trade_id > 0",
        (symbol, row[1]),
    ).fetchone()[0]
    return row[0], first_id, row[1], last_id


class Backfill:
    """One warm start for a set of symbols; `run` never raises for network trouble.

    Every reply is held to its request (`BinanceRest.parse_agg_rows`, `kline_rows`): rows
    that are malformed, implausible, outside the asked window or id range, or beyond the
    limit are dropped and counted in `progress.dropped`. `progress.rows` counts the rows
    that were new to the database (rows it already held are not written again)."""

    def __init__(
        self,
        rest: BinanceRest,
        writer: TickWriter,
        symbols: Sequence[str],
        timeframe: str,
        span: int,
        *,
        on_progress: Callable[[BackfillProgress], None] | None = None,
    ) -> None:
        self.rest = rest
        self.writer = writer
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self.span = span
        self.progress = BackfillProgress()
        self._on_progress = on_progress
        self._origin = 0
        self._waited_for_weight = False

    def _report(self, **changes: object) -> None:
        for k, v in changes.items():
            setattr(self.progress, k, v)
        if self._on_progress is not None:
            self._on_progress(self.progress)

    async def _budget(self, weight: int) -> None:
        """Wait for the next minute when the next request would pass 90% of the weight
        budget. Binance's weight is per minute, so a server that still reports it used up
        right after such a wait is not pacing honestly: the backfill gives up."""
        if self.rest.used_weight + weight <= 0.9 * WEIGHT_BUDGET:
            self._waited_for_weight = False
            return
        if self._waited_for_weight:
            raise RestThrottled(
                200, None, f"request weight still {self.rest.used_weight:,}/2400 in a new minute"
            )
        wait = 60.5 - (time.time() % 60)
        self._report(detail=f"request weight {self.rest.used_weight}/2400: waiting {wait:.0f}s")
        await asyncio.sleep(wait)
        self.rest.used_weight = 0
        self._waited_for_weight = True

    async def _get(self, path: str, params: dict[str, object], weight: int) -> object:
        await self._budget(weight)
        body = await self.rest.get(path, params)
        self.progress.requests += 1
        return body

    def _count_dropped(self, dropped: Counter[str]) -> None:
        self.progress.dropped.update(dropped)

    def _dropped_text(self) -> str:
        d = self.progress.dropped
        if not d:
            return ""
        parts = ", ".join(f"{n:,} {reason}" for reason, n in d.most_common())
        return f"({sum(d.values()):,} rows of the replies dropped: {parts})"

    async def run(self, now_ms: int) -> BackfillProgress:
        if self.span <= 0:
            self._report(state="off")
            return self.progress
        self._report(state="running")
        try:
            if self.timeframe == "1s":
                await self._trades(now_ms)
            else:
                await self._klines(now_ms)
        except RestUnavailable as exc:
            self._report(state="skipped", detail=f"offline: {exc}")
            return self.progress
        except RestError as exc:
            self._report(state="skipped", detail=f"REST error: {exc}")
            return self.progress
        except (sqlite3.Error, StoreError) as exc:
            self._report(state="skipped", detail=f"database: {exc}")
            return self.progress
        await self.writer.flush()
        self._report(state="done", detail=self._dropped_text())
        return self.progress

    def _stored(self, sql: str, params: tuple) -> set[int]:
        conn = connect(self.writer.path, readonly=True)
        try:
            return {r[0] for r in conn.execute(sql, params)}
        finally:
            conn.close()

    def _add_new(self, sym: str, n: int) -> None:
        self.progress.rows += n
        self.progress.fetched[sym] = self.progress.fetched.get(sym, 0) + n

    # ---------------------------------------------------------------- 1m klines
    async def _klines(self, now_ms: int) -> None:
        end = now_ms - now_ms % MINUTE
        start = end - self.span
        start -= start % MINUTE
        plan = await asyncio.to_thread(self._kline_plan, start, end)
        total = sum((b - a) // MINUTE for runs in plan.values() for a, b in runs)
        self._report(total=total, done=0)
        for sym, runs in plan.items():
            floor = earliest_ms(sym, self.rest.listed)
            for a, b in runs:
                t = a
                while t < b:
                    body = await self._get(
                        "/fapi/v1/klines",
                        {
                            "symbol": sym,
                            "interval": "1m",
                            "startTime": t,
                            "endTime": b - 1,
                            "limit": KLINE_LIMIT,
                        },
                        KLINE_WEIGHT,
                    )
                    page, dropped = kline_rows(sym, body, t, b, KLINE_LIMIT, now_ms, floor)
                    self._count_dropped(dropped)
                    closed = [row for row in page if row[8] < now_ms]
                    if closed:
                        have = await asyncio.to_thread(
                            self._stored,
                            "SELECT open_ms FROM klines WHERE symbol = ? AND interval = '1m' "
                            "AND open_ms BETWEEN ? AND ?",
                            (sym, closed[0][2], closed[-1][2]),
                        )
                        new = [row for row in closed if row[2] not in have]
                        if new:
                            await self.writer.execute(INSERT_KLINE, new, many=True)
                        self._add_new(sym, len(new))
                    if not page:
                        self._report(done=self.progress.done + (b - t) // MINUTE)
                        break
                    nxt = page[-1][2] + MINUTE
                    self._report(done=self.progress.done + (min(nxt, b) - t) // MINUTE)
                    t = nxt

    def _kline_plan(self, start: int, end: int) -> dict[str, list[tuple[int, int]]]:
        conn = connect(self.writer.path, readonly=True)
        try:
            return {s: _runs(missing_minutes(conn, s, start, end), MINUTE) for s in self.symbols}
        finally:
            conn.close()

    # ---------------------------------------------------------------- 1s aggTrades
    async def _trades(self, now_ms: int) -> None:
        start = now_ms - self.span
        self._origin = start
        stored = await asyncio.to_thread(self._trade_plan, start, now_ms)
        per = self.span // 1000
        self._report(total=per * len(self.symbols), done=0)
        for i, sym in enumerate(self.symbols):
            have = stored[sym]
            base = i * per
            if have is None:
                await self._page(sym, start, now_ms, None, None, base)
                continue
            first_ts, first_id, last_ts, last_id = have
            if first_ts - start > 1000:
                await self._page(sym, start, first_ts, None, first_id, base)
            await self._page(sym, last_ts, now_ms, last_id + 1, None, base)
        self._report(done=self.progress.total)

    def _trade_plan(self, start: int, end: int) -> dict[str, tuple[int, int, int, int] | None]:
        conn = connect(self.writer.path, readonly=True)
        try:
            return {s: stored_trades(conn, s, start, end) for s in self.symbols}
        finally:
            conn.close()

    async def _page(
        self,
        sym: str,
        start: int,
        end: int,
        from_id: int | None,
        stop_id: int | None,
        base: int,
    ) -> None:
        """Trades of `sym` from `from_id` (else from time `start`, in windows under an
        hour up to `end`), in pages of 1,000, until id `stop_id` or, without one, the
        newest trade: the tail overlaps the live feed (deduplicated by id) instead of
        leaving a hole between the launch and the first live trade. A page is followed
        by the next (``fromId`` = its last valid id + 1) only when the reply was full and
        held a valid row, so a hostile reply cannot make the paging loop."""
        while True:
            params: dict[str, object] = {"symbol": sym, "limit": AGG_LIMIT}
            window: tuple[int | None, int | None] = (None, None)
            if from_id is None:
                window = (start, min(start + HOUR - 1, end - 1))
                params.update(startTime=window[0], endTime=window[1])
            else:
                params["fromId"] = from_id
            body = await self._get("/fapi/v1/aggTrades", params, AGG_WEIGHT)
            page = self.rest.parse_agg_rows(
                sym, body, from_id=from_id, start_ms=window[0], end_ms=window[1], limit=AGG_LIMIT
            )
            self._count_dropped(page.dropped)
            ticks = page.ticks
            keep = [t for t in ticks if t.ts_ms < end and (stop_id is None or t.trade_id < stop_id)]
            if keep:
                have = await asyncio.to_thread(
                    self._stored,
                    "SELECT trade_id FROM ticks WHERE symbol = ? AND trade_id BETWEEN ? AND ?",
                    (sym, keep[0].trade_id, keep[-1].trade_id),
                )
                new = [t for t in keep if t.trade_id not in have]
                if new:
                    await self.writer.submit_many(new)
                self._add_new(sym, len(new))
                covered = (keep[-1].ts_ms - self._origin) // 1000
                self._report(done=base + max(0, min(covered, self.span // 1000)))
            if len(keep) < len(ticks):
                return
            if page.received >= AGG_LIMIT and ticks:
                from_id = ticks[-1].trade_id + 1
                continue
            if from_id is None and start + HOUR < end:
                start += HOUR
                continue
            return


def kline_rows(
    symbol: str,
    body: object,
    start: int,
    end: int,
    limit: int,
    now_ms: int,
    floor_ms: int = FUTURES_LAUNCH_MS,
) -> tuple[list[tuple], Counter[str]]:
    """A klines reply held to its request: `klines` rows for the 12-field REST rows
    (``[open time, "o", "h", "l", "c", "volume", close time, "quote volume", trades,
    "taker base", "taker quote", "ignore"]``) whose open time is a minute start in
    ``[start, end)``, in ascending order, among the first `limit`; every other row is
    dropped and counted by reason. A body that is not a list raises `RestError`."""
    if not isinstance(body, list):
        raise RestError(200, None, "klines is not a list")
    dropped: Counter[str] = Counter()
    if len(body) > limit:
        dropped["beyond limit"] += len(body) - limit
    out: list[tuple] = []
    last = start - 1
    for k in body[:limit]:
        if not (isinstance(k, list) and len(k) == 12):
            dropped["not a 12-field list"] += 1
            continue
        if not (
            all(type(k[i]) is int for i in (0, 6, 8))
            and all(type(k[i]) is str for i in (1, 2, 3, 4, 5, 7))
        ):
            dropped["bad field type"] += 1
            continue
        try:
            row = kline_row(symbol, "1m", [str(v) for v in k], now_ms=now_ms, floor_ms=floor_ms)
        except ImplausibleTime as exc:
            dropped[exc.reason] += 1
            continue
        except ValueError:
            dropped["bad kline"] += 1
            continue
        open_ms, close_ms = row[2], row[8]
        if open_ms % MINUTE or close_ms < open_ms:
            dropped["bad kline"] += 1
        elif not start <= open_ms < end:
            dropped["outside requested window"] += 1
        elif open_ms <= last:
            dropped["duplicate or out of order"] += 1
        else:
            last = open_ms
            out.append(row)
    return out, dropped
