"""Klines for the pair scanner: the universe, and the 1m klines the database lacks, fetched
over REST within the exchange's request-weight budget.

Protocol facts this module relies on (Binance USD-M REST, 2026):

* ``GET /fapi/v1/exchangeInfo`` (weight 1): ``symbols[]`` with ``status`` (``TRADING``,
  ``SETTLING``, ``PENDING_TRADING``, ...), ``contractType`` (``PERPETUAL``,
  ``CURRENT_QUARTER``, ...), ``quoteAsset`` and ``onboardDate`` (ms); and ``rateLimits[]``,
  among them ``{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
  "limit": 2400}``.
* ``GET /fapi/v1/ticker/24hr`` without a symbol (weight 40): one object per symbol, e.g.
  ``{"symbol": "BTCUSDT", "lastPrice": "89790.10", "volume": "152231.120",
  "quoteVolume": "13703380223.97", "count": 3512764, ...}``; numbers are strings.
* ``GET /fapi/v1/klines?symbol=S&interval=1m&startTime=&endTime=&limit=`` (limit at most
  1500) weighs 1, 2, 5 or 10 for a limit below 100, below 500, up to 1000, above 1000.
  A row is ``[1706745600000, "33.1730", "33.2780", "33.1480", "33.2640", "31584",
  1706745659999, "1048736.6860", 2093, "15886", "527484.6350", "0"]`` (open time, OHLC,
  volume, close time, quote volume, trades, taker-buy base and quote, ignore). The minute
  still open is included; it is not stored.
* Live: ``<symbol>@kline_1m`` on the routed market endpoint, all symbols on one
  combined-stream connection (``wss://fstream.binance.com/market/stream?streams=
  btcusdt@kline_1m/ethusdt@kline_1m``; at most 200 streams a connection). A frame is
  ``{"stream": "btcusdt@kline_1m", "data": {"e": "kline", "E": 1765788240012, "s":
  "BTCUSDT", "k": {"t": 1765788180000, "T": 1765788239999, "s": "BTCUSDT", "i": "1m",
  "f": 6805063417, "L": 6805069982, "o": "89790.10", "c": "89801.20", "h": "89811.00",
  "l": "89776.30", "v": "152.311", "n": 6566, "x": true, "q": "13677114.91", "V":
  "70.102", "Q": "6295175.39", "B": "0"}}}``; ``x`` is true on the minute's final
  update, sent within about a second of its close.
* Every answer carries ``X-MBX-USED-WEIGHT-1M`` (named ``X-MBX-USED-WEIGHT-<n><unit>``
  after the rate limit's interval): the weight this IP has used in the current window.
  Passing the limit draws 429 with ``Retry-After``, and repeated 429s a 418 ban, so the
  budget is kept on our side: weight is reserved before each request, the header (which
  also counts other programs on the same IP) raises the tally, and a request that would
  pass 90% of the limit waits for the next window.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np
import orjson
import websockets
from websockets.exceptions import WebSocketException

from quanttui.feed.binance import BinanceRest, FrameError, RestError, backoff_delay, stream_url
from quanttui.store.db import connect
from quanttui.store.importer import INSERT_KLINE, kline_row
from quanttui.store.writer import TickWriter

MINUTE = 60_000
KLINE_LIMIT = 1500
TICKER_WEIGHT = 40
INFO_WEIGHT = 1
_UNITS = {"SECOND": ("S", 1_000), "MINUTE": ("M", 60_000), "HOUR": ("H", 3_600_000)}
_UNITS["DAY"] = ("D", 86_400_000)


def kline_weight(limit: int) -> int:
    """Request weight of ``/fapi/v1/klines`` at `limit`: 1 (< 100), 2 (< 500), 5 (<= 1000),
    10 (> 1000)."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The REQUEST_WEIGHT limit: `limit` weight per window of `interval_num` `interval`."""

    limit: int = 2400
    interval: str = "MINUTE"
    interval_num: int = 1

    @property
    def window_ms(self) -> int:
        return self.interval_num * _UNITS[self.interval][1]

    @property
    def header(self) -> str:
        return f"X-MBX-USED-WEIGHT-{self.interval_num}{_UNITS[self.interval][0]}"

    @classmethod
    def from_exchange_info(cls, body: object) -> RateLimit:
        """The first REQUEST_WEIGHT entry of ``rateLimits``; Binance's default without one."""
        limits = body.get("rateLimits") if isinstance(body, dict) else None
        for r in limits if isinstance(limits, list) else []:
            if not isinstance(r, dict) or r.get("rateLimitType") != "REQUEST_WEIGHT":
                continue
            lim, unit, num = r.get("limit"), r.get("interval"), r.get("intervalNum")
            if type(lim) is int and lim > 0 and unit in _UNITS and type(num) is int and num > 0:
                return cls(lim, unit, num)
        return cls()


class WeightBudget:
    """Request weight spent in the current window, kept under ``share * limit``.

    Windows are aligned to the clock (Binance's minute windows start on the minute). A
    request `acquire`s its weight first; when that would pass the cap it waits for the
    next window, plus a small margin for clock skew. Response headers `observe`d raise the
    tally to what the exchange counted, which includes other clients on the same IP.
    """

    def __init__(
        self,
        rate: RateLimit | None = None,
        *,
        share: float = 0.9,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.rate = rate or RateLimit()
        self.sleep = sleep
        self.share = share
        self.clock = clock
        self.on_wait = on_wait
        self.used = 0
        self.peak = 0
        self.waits = 0
        self.spent = 0
        self._window = -1
        self._lock = asyncio.Lock()

    @property
    def cap(self) -> int:
        return int(self.rate.limit * self.share)

    def _roll(self) -> int:
        now = int(self.clock() * 1000)
        w = now // self.rate.window_ms
        if w != self._window:
            self._window, self.used = w, 0
        return now

    async def acquire(self, weight: int) -> None:
        if weight > self.cap:
            raise ValueError(f"a request of weight {weight} can never fit the cap {self.cap}")
        async with self._lock:
            while True:
                now = self._roll()
                if self.used + weight <= self.cap:
                    self.used += weight
                    self.spent += weight
                    self.peak = max(self.peak, self.used)
                    return
                window = self.rate.window_ms
                margin = min(1000, window // 20)
                wait = ((self._window + 1) * window - now + margin) / 1000
                self.waits += 1
                if self.on_wait is not None:
                    self.on_wait(wait)
                await self.sleep(wait)

    def observe(self, headers: httpx.Headers) -> None:
        v = headers.get(self.rate.header)
        if v is not None and v.strip().isdigit():
            self._roll()
            self.used = max(self.used, int(v))
            self.peak = max(self.peak, self.used)


@dataclass(frozen=True, slots=True)
class Universe:
    """Symbols to scan, and those skipped with the reason (unknown, not trading)."""

    symbols: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    onboard_ms: dict[str, int] = field(default_factory=dict)


@dataclass
class SyncProgress:
    """Progress of a kline fetch, shared with the caller's display."""

    symbols_total: int = 0
    symbols_done: int = 0
    requests: int = 0
    rows: int = 0
    waits: int = 0
    detail: str = ""
    fetched: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def missing_minutes(
    conn: sqlite3.Connection, symbol: str, start_ms: int, end_ms: int
) -> np.ndarray:
    """Minute starts in ``[start_ms, end_ms)`` with no stored 1m kline of `symbol`."""
    have = np.fromiter(
        (
            r[0]
            for r in conn.execute(
                "SELECT open_ms FROM klines WHERE symbol = ? AND interval = '1m' "
                "AND open_ms >= ? AND open_ms < ?",
                (symbol, start_ms, end_ms),
            )
        ),
        np.int64,
    )
    grid = np.arange(start_ms, end_ms, MINUTE, dtype=np.int64)
    return grid[~np.isin(grid, have)]


def _cost(a: int, b: int) -> int:
    n = (b - a) // MINUTE
    full, rest = divmod(n, KLINE_LIMIT)
    return full * kline_weight(KLINE_LIMIT) + (kline_weight(rest) if rest else 0)


def plan_requests(missing: np.ndarray) -> list[tuple[int, int]]:
    """Spans ``[a, b)`` that cover the missing minutes: consecutive minutes form runs, and
    neighbouring runs merge when one span weighs no more than the two (refetching a few
    stored minutes is free; ``INSERT OR IGNORE`` keeps the stored rows)."""
    if missing.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(missing) != MINUTE) + 1
    starts = missing[np.r_[0, breaks]]
    ends = missing[np.r_[breaks - 1, missing.size - 1]] + MINUTE
    out: list[tuple[int, int]] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        if out and _cost(out[-1][0], b) <= _cost(*out[-1]) + _cost(a, b):
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


class KlineSync:
    """The scanner's REST side: universe selection and the kline fetch into the database.

    One `BinanceRest` client, `concurrency` requests in flight, every request through
    one `WeightBudget`. Rows go to the `klines` table through the single `TickWriter`.
    `RestUnavailable` propagates (the caller decides whether to scan what is stored); a
    `RestError` for one symbol is recorded in `progress.failed` and the others go on.
    """

    def __init__(
        self,
        rest: BinanceRest,
        writer: TickWriter,
        *,
        share: float = 0.9,
        concurrency: int = 4,
        on_progress: Callable[[SyncProgress], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rest = rest
        self.writer = writer
        self.concurrency = concurrency
        self.progress = SyncProgress()
        self._on_progress = on_progress
        self.budget = WeightBudget(share=share, clock=clock, on_wait=self._waiting)
        self._info: dict | None = None
        rest.on_response(self._observe)

    async def _observe(self, response: httpx.Response) -> None:
        self.budget.observe(response.headers)

    def _waiting(self, seconds: float) -> None:
        self.progress.waits += 1
        self._report(
            detail=f"weight {self.budget.used}/{self.budget.rate.limit}: waiting {seconds:.1f}s"
        )

    def _report(self, **changes: object) -> None:
        for k, v in changes.items():
            setattr(self.progress, k, v)
        if self._on_progress is not None:
            self._on_progress(self.progress)

    async def _get(self, path: str, params: dict[str, object] | None, weight: int) -> object:
        await self.budget.acquire(weight)
        body = await self.rest.get(path, params)
        self.progress.requests += 1
        return body

    async def exchange_info(self) -> dict:
        """The raw exchangeInfo body (fetched once); adopts its REQUEST_WEIGHT limit."""
        if self._info is None:
            body = await self._get("/fapi/v1/exchangeInfo", None, INFO_WEIGHT)
            if not isinstance(body, dict) or not isinstance(body.get("symbols"), list):
                raise RestError(200, None, "exchangeInfo without symbols[]")
            self.budget.rate = RateLimit.from_exchange_info(body)
            self._info = body
        return self._info

    async def _symbols(self) -> dict[str, dict]:
        info = await self.exchange_info()
        return {
            s["symbol"]: s
            for s in info["symbols"]
            if isinstance(s, dict) and isinstance(s.get("symbol"), str)
        }

    @staticmethod
    def _onboard(info: dict[str, dict], symbols: Sequence[str]) -> dict[str, int]:
        out = {}
        for s in symbols:
            v = info.get(s, {}).get("onboardDate")
            if type(v) is int and v > 0:
                out[s] = v
        return out

    async def check(self, symbols: Sequence[str]) -> Universe:
        """The requested symbols that exchangeInfo lists as TRADING; the rest are skipped
        with a reason."""
        info = await self._symbols()
        keep, skipped = [], []
        for s in symbols:
            if s not in info:
                skipped.append((s, "unknown symbol"))
            elif info[s].get("status") != "TRADING":
                skipped.append((s, f"not trading (status {info[s].get('status')})"))
            else:
                keep.append(s)
        return Universe(tuple(keep), tuple(skipped), self._onboard(info, keep))

    async def top(self, n: int) -> Universe:
        """The `n` USDT-margined perpetuals with status TRADING that have the largest 24 h
        quote volume (``/fapi/v1/ticker/24hr``)."""
        info = await self._symbols()
        perps = {
            s
            for s, d in info.items()
            if d.get("status") == "TRADING"
            and d.get("contractType") == "PERPETUAL"
            and d.get("quoteAsset") == "USDT"
        }
        body = await self._get("/fapi/v1/ticker/24hr", None, TICKER_WEIGHT)
        if not isinstance(body, list):
            raise RestError(200, None, "ticker/24hr is not a list")
        volume: dict[str, float] = {}
        for t in body:
            if isinstance(t, dict) and t.get("symbol") in perps:
                try:
                    v = float(t.get("quoteVolume", "nan"))
                except (TypeError, ValueError):
                    continue
                if math.isfinite(v):
                    volume[t["symbol"]] = v
        ranked = sorted(volume, key=lambda s: (-volume[s], s))[:n]
        return Universe(tuple(ranked), (), self._onboard(info, ranked))

    def _plan(self, universe: Universe, start_ms: int, end_ms: int) -> dict[str, list]:
        conn = connect(self.writer.path, readonly=True)
        try:
            out = {}
            for s in universe.symbols:
                lo = start_ms
                onboard = universe.onboard_ms.get(s)
                if onboard is not None and onboard > lo:
                    lo = min(end_ms, -(-onboard // MINUTE) * MINUTE)
                out[s] = plan_requests(missing_minutes(conn, s, lo, end_ms))
            return out
        finally:
            conn.close()

    async def sync(
        self, universe: Universe, start_ms: int, end_ms: int, now_ms: int
    ) -> SyncProgress:
        """Fetch every 1m kline of ``[start_ms, end_ms)`` that is not stored yet (before a
        symbol's onboard date there is nothing to fetch); klines not closed at `now_ms`
        are not stored. Returns the progress record once everything is committed."""
        plan = await asyncio.to_thread(self._plan, universe, start_ms, end_ms)
        self._report(symbols_total=len(plan), symbols_done=0)
        queue: asyncio.Queue[str] = asyncio.Queue()
        for s in plan:
            queue.put_nowait(s)

        async def worker() -> None:
            while True:
                try:
                    sym = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    for a, b in plan[sym]:
                        await self._fetch(sym, a, b, now_ms)
                except RestError as exc:
                    self.progress.failed[sym] = str(exc)
                self._report(symbols_done=self.progress.symbols_done + 1, detail="")

        await asyncio.gather(*(worker() for _ in range(max(1, self.concurrency))))
        await self.writer.flush()
        return self.progress

    async def _fetch(self, sym: str, a: int, b: int, now_ms: int) -> None:
        t = a
        while t < b:
            limit = min(KLINE_LIMIT, (b - t) // MINUTE)
            body = await self._get(
                "/fapi/v1/klines",
                {"symbol": sym, "interval": "1m", "startTime": t, "endTime": b - 1, "limit": limit},
                kline_weight(limit),
            )
            if not isinstance(body, list):
                raise RestError(200, None, "klines is not a list")
            rows = []
            for k in body:
                if not (isinstance(k, list) and len(k) == 12):
                    raise RestError(200, None, "kline row is not a 12-field list")
                try:
                    row = kline_row(sym, "1m", [str(v) for v in k])
                except ValueError as exc:
                    raise RestError(200, None, f"bad kline row: {exc}") from None
                if a <= row[2] < b and row[8] < now_ms:
                    rows.append(row)
            if rows:
                await self.writer.execute(INSERT_KLINE, rows, many=True)
                self.progress.rows += len(rows)
                self.progress.fetched[sym] = self.progress.fetched.get(sym, 0) + len(rows)
                self._report()
            if len(body) < limit:
                return
            nxt = int(body[-1][0]) + MINUTE
            if nxt <= t:
                return
            t = nxt


MAX_STREAMS = 200


def parse_kline_frame(raw: str | bytes) -> tuple | None:
    """A combined-stream ``kline`` frame to a `klines` row, or None for an update of a
    minute still open and for control replies. Raises `FrameError`."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FrameError("not JSON") from None
    if not isinstance(msg, dict):
        raise FrameError("not an object")
    if "id" in msg and ("result" in msg or "error" in msg):
        return None
    data = msg.get("data")
    if not isinstance(data, dict) or data.get("e") != "kline":
        raise FrameError("not a kline frame")
    k = data.get("k")
    if not isinstance(k, dict) or type(k.get("x")) is not bool:
        raise FrameError("bad k")
    if not k["x"]:
        return None
    sym = k.get("s")
    if type(sym) is not str or not sym.isalnum() or k.get("i") != "1m":
        raise FrameError("bad s/i")
    fields = [k.get(f) for f in ("t", "o", "h", "l", "c", "v", "T", "q", "n", "V", "Q", "B")]
    if any(type(fields[i]) is not int for i in (0, 6, 8)):
        raise FrameError("bad t/T/n")
    try:
        return kline_row(sym, "1m", [str(v) for v in fields])
    except (ValueError, TypeError):
        raise FrameError("bad kline numbers") from None


class KlineStream:
    """Closed 1m klines of up to `MAX_STREAMS` symbols over one combined-stream
    connection, stored through the writer; `on_minute(close_ms)` once a minute's klines
    are committed: when every symbol's has arrived, or `settle_s` after the first.

    Reconnects with capped, jittered backoff (reset after a connection that delivered a
    frame); `on_state(state, detail)` reports ``connecting``, ``live``, ``reconnecting``.
    Minutes missed while disconnected are the REST refresh's job (`KlineSync`).
    """

    def __init__(
        self,
        ws_base: str,
        symbols: Sequence[str],
        writer: TickWriter,
        on_minute: Callable[[int], object],
        *,
        on_state: Callable[[str, str], None] | None = None,
        settle_s: float = 2.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        if not 0 < len(symbols) <= MAX_STREAMS:
            raise ValueError(f"one connection carries 1 to {MAX_STREAMS} streams")
        self.symbols = list(symbols)
        self._wanted = set(self.symbols)
        self.url = stream_url(ws_base, self.symbols, "kline_1m")
        self.writer = writer
        self.on_minute = on_minute
        self.on_state = on_state
        self.settle_s = settle_s
        self.backoff = (backoff_base_s, backoff_max_s)
        self.connects = 0
        self.closed = 0
        self.malformed = 0
        self._pending: dict[int, set[str]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._done: set[int] = set()

    def _state(self, state: str, detail: str = "") -> None:
        if self.on_state is not None:
            self.on_state(state, detail)

    async def run(self) -> None:
        attempt = 0
        try:
            while True:
                self._state("connecting" if self.connects == 0 else "reconnecting")
                healthy = False
                try:
                    async with websockets.connect(
                        self.url, open_timeout=10, max_size=2**20, compression=None
                    ) as ws:
                        self.connects += 1
                        self._state("live")
                        async for raw in ws:
                            healthy = True
                            await self._frame(raw)
                    detail = "closed by the server"
                except (OSError, TimeoutError, WebSocketException) as exc:
                    detail = f"{exc.__class__.__name__}: {exc}" if str(exc) else type(exc).__name__
                attempt = 0 if healthy else attempt + 1
                self._state("reconnecting", detail)
                await asyncio.sleep(backoff_delay(attempt, *self.backoff))
        finally:
            for h in self._timers.values():
                h.cancel()

    async def _frame(self, raw: str | bytes) -> None:
        try:
            row = parse_kline_frame(raw)
        except FrameError:
            self.malformed += 1
            return
        if row is None or row[0] not in self._wanted:
            return
        await self.writer.execute(INSERT_KLINE, [row], many=True)
        self.closed += 1
        minute = row[2]
        if minute in self._done:
            return
        got = self._pending.setdefault(minute, set())
        got.add(row[0])
        if len(got) == len(self.symbols):
            await self._complete(minute)
        elif minute not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[minute] = loop.call_later(
                self.settle_s, lambda: asyncio.ensure_future(self._complete(minute))
            )

    async def _complete(self, minute: int) -> None:
        if minute in self._done:
            return
        self._done.add(minute)
        self._pending.pop(minute, None)
        timer = self._timers.pop(minute, None)
        if timer is not None:
            timer.cancel()
        if len(self._done) > 100:
            self._done = {m for m in self._done if m >= minute - 100 * MINUTE}
        await self.writer.flush()
        self.on_minute(minute + MINUTE)
