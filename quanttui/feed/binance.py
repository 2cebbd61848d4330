"""Binance USD-M futures: stream URL, strict aggTrade parser, REST client, and the feed loop.

Protocol facts this module relies on (Binance USD-M, 2026):

* Market streams are routed by path: aggTrade is served at
  ``wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade``.
  An unrouted ``/ws`` or ``/stream`` URL acknowledges and then stays silent forever, as
  does an unknown symbol; the stale watchdog and the start-up exchangeInfo check are the
  defences.
* ``a`` (aggregate trade id) is consecutive per symbol, so a jump is a hole, which is
  backfilled from ``GET /fapi/v1/aggTrades?symbol=S&fromId=N&limit=1000``.
* The server cuts every connection after 24 h and pings every 3 min (the websockets
  library answers pings). We rotate before the cut.
* REST errors are ``{"code": -1121, "msg": "Invalid symbol."}``; 429 and 418 carry
  ``Retry-After`` (seconds), which is honoured before a retry up to `RETRY_AFTER_CAP_S`.
  A server asking for a longer wait is treated like an unreachable one (the caller warns
  and goes on without REST), so server pacing can never hold up the live feed.

Nothing from the wire is trusted: a frame or a REST row is checked field by field (type,
range, `quanttui.plausible` for its trade time) and a bad one is skipped and counted by
reason. A REST reply is held to what was asked: rows beyond ``limit``, outside the
requested id range or time window, or not in ascending id order are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
import orjson
import websockets
from websockets.exceptions import ConnectionClosedOK, WebSocketException
from websockets.frames import Opcode

from quanttui.config import FeedConfig
from quanttui.model import MarkPrice, Tick
from quanttui.plausible import (
    BEFORE_LISTING,
    FUTURE,
    FUTURE_TOLERANCE_MS,
    FUTURES_LAUNCH_MS,
    earliest_ms,
    wall_ms,
)
from quanttui.textsafe import printable

log = logging.getLogger(__name__)

AGG_TRADES_LIMIT = 1000
RETRY_AFTER_CAP_S = 60.0
"""The longest server-requested pause (``Retry-After`` on 429/418) a REST call waits,
in total over its retries; past it the call fails as throttled."""
START_CHECK_WAIT_S = 10.0
"""The start-up exchangeInfo check waits at most this long for server pacing, since the
feed starts only after it."""
REQUEST_DEADLINE_S = 30.0
"""A REST answer must be complete within this time, however slowly it trickles in."""
MAX_REPLY_BYTES = 32 * 2**20
"""A REST reply larger than this is refused unread (a full aggTrades page is ~0.1 MB)."""
_ID_END = 2**63
_INF = math.inf
MAX_GAPS_QUEUED = 1000
"""Holes waiting for the REST backfill, which fetches them one at a time within the
request-weight budget. A hole found while this many wait is not queued but recorded at
once as an open gap (`on_gap` with status ``open``), as one REST cannot fill is: a feed
that keeps skipping ids while REST is down or throttled cannot grow memory without
bound. About 100 bytes each."""


def now_ms() -> int:
    return int(time.time() * 1000)


def stream_url(ws_base: str, symbols: Sequence[str], stream: str = "aggTrade") -> str:
    """Combined-stream URL under the routed base, e.g.
    ``wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade``."""
    names = "/".join(f"{s.lower()}@{stream}" for s in symbols)
    return f"{ws_base.rstrip('/')}/stream?streams={names}"


def drop_empty(ticks: Sequence[Tick]) -> list[Tick]:
    """The ticks that are trades: price and quantity above zero.

    Binance futures sometimes sends ``"p":"0","q":"0","X":"NA"`` events on the raw
    ``@trade`` stream (nkaz001/hftbacktest issue #263). They are not trades, and
    recordings made from that stream keep them (98 of the demo's 19,280 rows). The live
    feed (`BinanceFeed`: stream and REST backfill) and the replay
    (`quanttui.feed.replay.Replay`) pass every batch through this one function before the
    writer and the bar builder see it, so the database, the bars and the exports agree
    across modes. The feed takes such an event's id into its high-water mark first, so
    dropping it never looks like a gap.
    """
    return [t for t in ticks if t.price > 0 and t.qty > 0]


class FrameError(ValueError):
    """A frame that is not a well-formed aggTrade event; `reason` is a short counter key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _int(d: dict, key: str) -> int:
    v = d.get(key)
    if type(v) is not int:
        raise FrameError(f"bad {key}")
    return v


def _num(d: dict, key: str) -> float:
    v = d.get(key)
    if type(v) is not str:
        raise FrameError(f"bad {key}")
    try:
        f = float(v)
    except ValueError:
        raise FrameError(f"bad {key}") from None
    if not math.isfinite(f) or f < 0:
        raise FrameError(f"bad {key}")
    return f


def parse_agg_trade(
    d: object, recv_ms: int = 0, *, listed: Mapping[str, int] | None = None
) -> Tick:
    """One aggTrade object (from a stream frame's ``data`` or a REST row) to a `Tick`.

    Stream payload (Binance USD-M, combined stream)::

        {"stream": "btcusdt@aggTrade",
         "data": {"e": "aggTrade", "E": 1765788195350, "s": "BTCUSDT", "a": 2983561190,
                  "p": "89790.10", "q": "0.004", "nq": "0.004", "f": 6805063417,
                  "l": 6805063417, "T": 1765788195300, "m": true}}

    REST rows (``/fapi/v1/aggTrades``) have the same ``a p q f l T m`` fields and no
    ``s``; pass the symbol in ``d["s"]``. ``ts_ms`` is the trade time ``T``, which must be
    plausible (`quanttui.plausible`) at `recv_ms` (default: now) for a symbol listed at
    ``listed[symbol]`` when known; ids must be non-negative 64-bit integers; ``p`` and
    ``q`` decimal strings of finite non-negative numbers. The checks of `_int` and `_num`
    are written out here: this runs once per trade.
    """
    if not isinstance(d, dict):
        raise FrameError("not an object")
    get = d.get
    sym = get("s")
    if type(sym) is not str or not sym.isascii() or not sym.isalnum() or not 2 <= len(sym) <= 20:
        raise FrameError("bad s")
    m = get("m")
    if type(m) is not bool:
        raise FrameError("bad m")
    ts = get("T")
    if type(ts) is not int or ts <= 0:
        raise FrameError("bad T")
    a = get("a")
    if type(a) is not int or not 0 <= a < _ID_END:
        raise FrameError("bad a")
    sym = sym.upper()
    if ts > (recv_ms or wall_ms()) + FUTURE_TOLERANCE_MS:
        raise FrameError(FUTURE)
    if ts < (earliest_ms(sym, listed) if listed else FUTURES_LAUNCH_MS):
        raise FrameError(BEFORE_LISTING)
    p = get("p")
    if type(p) is not str:
        raise FrameError("bad p")
    try:
        price = float(p)
    except ValueError:
        raise FrameError("bad p") from None
    if not 0.0 <= price < _INF:
        raise FrameError("bad p")
    q = get("q")
    if type(q) is not str:
        raise FrameError("bad q")
    try:
        qty = float(q)
    except ValueError:
        raise FrameError("bad q") from None
    if not 0.0 <= qty < _INF:
        raise FrameError("bad q")
    return Tick(sym, a, ts, price, qty, m, recv_ms)


def parse_frame(
    raw: str | bytes, recv_ms: int = 0, *, listed: Mapping[str, int] | None = None
) -> Tick | None:
    """A combined-stream frame to a `Tick`; `None` for a control reply such as the
    ``{"result": null, "id": 1}`` acknowledgement of SUBSCRIBE. Raises `FrameError`."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FrameError("not JSON") from None
    if type(msg) is not dict:
        raise FrameError("not an object")
    if "id" in msg and ("result" in msg or "error" in msg):
        return None
    data = msg.get("data")
    stream = msg.get("stream")
    if type(data) is not dict or type(stream) is not str:
        raise FrameError("not a stream frame")
    if data.get("e") != "aggTrade":
        raise FrameError("unexpected event")
    tick = parse_agg_trade(data, recv_ms, listed=listed)
    if not stream.lower().startswith(tick.symbol.lower() + "@"):
        raise FrameError("stream/symbol mismatch")
    return tick


MARK_STREAM = "markPrice@1s"
"""Mark price, index price and funding rate once a second, on the same routed ``/market``
connection as aggTrade (``<ws>/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s``);
the unrouted ``/ws`` endpoint never delivers it."""


def market_stream_url(
    ws_base: str, symbols: Sequence[str], streams: Sequence[str] = ("aggTrade", MARK_STREAM)
) -> str:
    """One combined-stream URL carrying every stream of every symbol, e.g.
    ``.../market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade/btcusdt@markPrice@1s/
    ethusdt@markPrice@1s``."""
    names = "/".join(f"{sym.lower()}@{st}" for st in streams for sym in symbols)
    return f"{ws_base.rstrip('/')}/stream?streams={names}"


def _decimal(d: dict, key: str, *, positive: bool = True) -> float:
    v = d.get(key)
    if type(v) is not str:
        raise FrameError(f"bad {key}")
    try:
        f = float(v)
    except ValueError:
        raise FrameError(f"bad {key}") from None
    if not math.isfinite(f) or (f <= 0 if positive else abs(f) >= 1):
        raise FrameError(f"bad {key}")
    return f


def parse_mark_price(d: object, recv_ms: int = 0) -> MarkPrice:
    """One ``markPriceUpdate`` object (a stream frame's ``data``) to a `MarkPrice` (its
    docstring has a real payload). Strict: ``E`` and ``T`` positive integers; ``p`` and
    ``i`` positive decimal strings; ``r`` a decimal string below 100% in size (it may
    be negative); ``P``, when present, a non-negative decimal string. Raises
    `FrameError`."""
    if not isinstance(d, dict):
        raise FrameError("not an object")
    if d.get("e") != "markPriceUpdate":
        raise FrameError("unexpected event")
    sym = d.get("s")
    if type(sym) is not str or not sym.isalnum() or not 2 <= len(sym) <= 20:
        raise FrameError("bad s")
    event, nxt = _int(d, "E"), _int(d, "T")
    if event <= 0:
        raise FrameError("bad E")
    if nxt <= 0:
        raise FrameError("bad T")
    settle = None
    if "P" in d:
        settle = _num(d, "P")
    return MarkPrice(
        sym.upper(),
        event,
        _decimal(d, "p"),
        _decimal(d, "i"),
        settle,
        _decimal(d, "r", positive=False),
        nxt,
        recv_ms,
    )


def parse_mark_frame(raw: str | bytes, recv_ms: int = 0) -> MarkPrice | None:
    """A ``<symbol>@markPrice@1s`` combined-stream frame to a `MarkPrice`; `None` for a
    control reply. The stream name must be the payload symbol's ``@markPrice@1s`` (or
    the 3-second ``@markPrice``). Raises `FrameError`."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FrameError("not JSON") from None
    if not isinstance(msg, dict):
        raise FrameError("not an object")
    if "id" in msg and ("result" in msg or "error" in msg):
        return None
    data = msg.get("data")
    stream = msg.get("stream")
    if not isinstance(data, dict) or type(stream) is not str:
        raise FrameError("not a stream frame")
    mark = parse_mark_price(data, recv_ms)
    sym = mark.symbol.lower()
    if stream not in (f"{sym}@{MARK_STREAM}", f"{sym}@markPrice"):
        raise FrameError("stream/symbol mismatch")
    return mark


def parse_market_frame(
    raw: str | bytes, recv_ms: int = 0, *, listed: Mapping[str, int] | None = None
) -> Tick | MarkPrice | None:
    """A frame of the combined trades + mark-price connection, routed by its stream
    name: ``<sym>@markPrice@1s`` to `parse_mark_frame`, anything else to `parse_frame`
    (aggTrade). The name is found without decoding the frame twice: symbols are
    alphanumeric, so ``@markPrice`` occurs in no aggTrade frame. Raises `FrameError`."""
    if (b"@markPrice" if isinstance(raw, bytes) else "@markPrice") in raw:
        return parse_mark_frame(raw, recv_ms)
    return parse_frame(raw, recv_ms, listed=listed)


class RestError(Exception):
    """The exchange answered with an error (`code`, `msg`) or an unusable body."""

    def __init__(self, status: int, code: int | None, msg: str) -> None:
        super().__init__(f"HTTP {status}: {msg}" + (f" (code {code})" if code is not None else ""))
        self.status = status
        self.code = code


class RestThrottled(RestError):
    """429/418 with a ``Retry-After`` beyond what the caller may wait."""


class RestUnavailable(Exception):
    """The REST endpoint cannot be reached."""


def clip(value: object, limit: int = 120) -> str:
    """A wire value as one short line for a message: control characters (newlines
    included) shown as escapes (`quanttui.textsafe.printable`), cut at `limit`."""
    return printable(value if isinstance(value, str) else repr(value), limit, one_line=True)


def retry_after_s(value: str | None, now_s: float | None = None) -> float:
    """Seconds asked for by a ``Retry-After`` header: delay-seconds or an HTTP-date
    (RFC 9110 §10.2.3); 1 s when absent or unreadable, ``inf`` for an absurd value."""
    if value is None:
        return 1.0
    v = value.strip()
    try:
        delay = float(v)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(v)
        except (TypeError, ValueError, IndexError):
            return 1.0
        if when.tzinfo is None:
            return 1.0
        return max(0.0, when.timestamp() - (time.time() if now_s is None else now_s))
    if math.isnan(delay) or delay < 0:
        return 1.0
    return delay


@dataclass(slots=True)
class AggRows:
    """The rows of one aggTrades reply that answer the request, and what was dropped."""

    ticks: list[Tick]
    dropped: Counter[str] = field(default_factory=Counter)
    received: int = 0


class BinanceRest:
    """Minimal async REST client: honours ``Retry-After`` on 429/418 up to
    `RETRY_AFTER_CAP_S`, tracks the ``X-MBX-USED-WEIGHT-1m`` header, and bounds each
    answer in time (`REQUEST_DEADLINE_S`) and size (`MAX_REPLY_BYTES`).

    `listed` holds each symbol's listing time (``onboardDate``) once exchangeInfo has
    been read; `rejected` counts, by reason, the rows dropped from every reply."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, max_retries: int = 5) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.used_weight = 0
        self.requests = 0
        self.throttled = 0
        self.listed: dict[str, int] = {}
        self.rejected: Counter[str] = Counter()
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def _fetch(
        self, path: str, params: dict[str, object] | None
    ) -> tuple[httpx.Response, bytes]:
        async with self._client.stream("GET", path, params=params) as r:
            declared = r.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > MAX_REPLY_BYTES:
                raise RestError(
                    r.status_code, None, f"reply of {declared} bytes refused (too large)"
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    raise RestError(
                        r.status_code, None, f"reply larger than {MAX_REPLY_BYTES:,} bytes refused"
                    )
                chunks.append(chunk)
        return r, b"".join(chunks)

    async def get(
        self,
        path: str,
        params: dict[str, object] | None = None,
        *,
        max_wait_s: float = RETRY_AFTER_CAP_S,
    ) -> object:
        """GET `path` and decode the JSON body. Raises `RestUnavailable` (no answer),
        `RestThrottled` (pacing beyond `max_wait_s` in total) or `RestError`."""
        waited = 0.0
        for attempt in range(self.max_retries + 1):
            try:
                async with asyncio.timeout(REQUEST_DEADLINE_S):
                    r, content = await self._fetch(path, params)
            except TimeoutError:
                raise RestUnavailable(
                    f"{self.base_url}{path}: no complete answer within {REQUEST_DEADLINE_S:g} s"
                ) from None
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                # A pooled keep-alive connection the server had already closed: retry
                # on a fresh one rather than calling the exchange unreachable.
                if attempt < self.max_retries:
                    await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                    continue
                raise RestUnavailable(
                    f"{self.base_url}{path}: {exc.__class__.__name__}: {clip(str(exc))}"
                ) from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise RestUnavailable(
                    f"{self.base_url}{path}: {exc.__class__.__name__}: {clip(str(exc))}"
                ) from None
            self.requests += 1
            w = r.headers.get("X-MBX-USED-WEIGHT-1m")
            if w is not None:
                with contextlib.suppress(ValueError):
                    self.used_weight = max(0, int(w))
            if r.status_code in (429, 418):
                self.throttled += 1
                delay = retry_after_s(r.headers.get("Retry-After"))
                limit = min(RETRY_AFTER_CAP_S, max_wait_s)
                if waited + delay > limit:
                    told = f"Retry-After {delay:g} s"
                    if waited:
                        told = f"after {waited:g} s of waiting, {told}"
                    raise RestThrottled(
                        r.status_code,
                        None,
                        f"{path} throttled: {told} is beyond the {limit:g} s this client waits",
                    )
                log.warning("REST %s throttled (%s); waiting %.1fs", path, r.status_code, delay)
                if attempt == self.max_retries:
                    break
                await asyncio.sleep(delay)
                waited += delay
                continue
            if r.status_code >= 500 and attempt < self.max_retries:
                await asyncio.sleep(min(0.5 * 2**attempt, 8.0))
                continue
            try:
                body = orjson.loads(content)
            except orjson.JSONDecodeError:
                raise RestError(r.status_code, None, "response is not JSON") from None
            if r.status_code >= 400:
                code = body.get("code") if isinstance(body, dict) else None
                msg = body.get("msg") if isinstance(body, dict) else None
                raise RestError(
                    r.status_code,
                    code if type(code) is int else None,
                    clip(msg if type(msg) is str and msg else r.reason_phrase),
                )
            return body
        raise RestThrottled(429, None, f"still throttled after {self.max_retries} retries")

    async def exchange_info(self, *, max_wait_s: float = RETRY_AFTER_CAP_S) -> dict[str, dict]:
        """Symbol entries by name. Entries that are not objects or whose ``symbol`` is not
        a symbol string are skipped and counted in `rejected`; a plausible integer
        ``onboardDate`` goes to `listed`."""
        body = await self.get("/fapi/v1/exchangeInfo", max_wait_s=max_wait_s)
        if not isinstance(body, dict) or not isinstance(body.get("symbols"), list):
            raise RestError(200, None, "exchangeInfo without symbols[]")
        out: dict[str, dict] = {}
        now = wall_ms()
        for s in body["symbols"]:
            name = s.get("symbol") if isinstance(s, dict) else None
            if type(name) is not str or not name.isascii() or not name.isalnum():
                self.rejected["exchangeInfo: bad symbol entry"] += 1
                continue
            out[name] = s
            onboard = s.get("onboardDate")
            if type(onboard) is int and FUTURES_LAUNCH_MS <= onboard <= now:
                self.listed[name] = onboard
        return out

    async def agg_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = AGG_TRADES_LIMIT,
    ) -> AggRows:
        params: dict[str, object] = {"symbol": symbol, "limit": limit}
        if from_id is not None:
            params["fromId"] = from_id
        if start_ms is not None:
            params["startTime"] = start_ms
        if end_ms is not None:
            params["endTime"] = end_ms
        body = await self.get("/fapi/v1/aggTrades", params)
        return self.parse_agg_rows(
            symbol, body, from_id=from_id, start_ms=start_ms, end_ms=end_ms, limit=limit
        )

    def parse_agg_rows(
        self,
        symbol: str,
        body: object,
        *,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = AGG_TRADES_LIMIT,
    ) -> AggRows:
        """REST aggTrades rows (``{"a","p","q","f","l","T","m"}``, no symbol) as ticks,
        held to the request: only the first `limit` rows are read, and a row is dropped
        (counted by reason in the result and in `rejected`) when it is malformed, has an
        implausible time, an id below `from_id`, a time outside ``[start_ms, end_ms]``,
        or an id not above the previous row's. A body that is not a list raises
        `RestError`."""
        if not isinstance(body, list):
            raise RestError(200, None, "aggTrades is not a list")
        recv = now_ms()
        out = AggRows([], received=len(body))
        dropped = out.dropped
        if len(body) > limit:
            dropped["beyond limit"] += len(body) - limit
        last = -1
        for row in body[:limit]:
            if isinstance(row, dict):
                row = {**row, "s": symbol}
            try:
                t = parse_agg_trade(row, recv, listed=self.listed)
            except FrameError as exc:
                dropped[exc.reason] += 1
                continue
            if from_id is not None and t.trade_id < from_id:
                dropped["outside requested ids"] += 1
            elif (start_ms is not None and t.ts_ms < start_ms) or (
                end_ms is not None and t.ts_ms > end_ms
            ):
                dropped["outside requested window"] += 1
            elif t.trade_id <= last:
                dropped["duplicate or out of order"] += 1
            else:
                last = t.trade_id
                out.ticks.append(t)
        self.rejected.update(dropped)
        return out

    def on_response(self, hook: Callable[[httpx.Response], Awaitable[None]]) -> None:
        """Also await `hook(response)` for every HTTP response, retries included (for
        rate-limit headers other than the one-minute weight this client tracks)."""
        self._client.event_hooks["response"].append(hook)


class SymbolError(Exception):
    """A requested symbol is unknown to the exchange or not trading."""


async def check_symbols(rest: BinanceRest, symbols: Sequence[str]) -> str | None:
    """Raise `SymbolError` for an unknown or non-trading symbol. Returns a warning text
    when the exchange cannot be asked (the caller carries on), else `None`. Pacing is
    waited for at most `START_CHECK_WAIT_S`; a symbol missing from a reply that had
    malformed entries is not called unknown (it may have been one of them)."""
    bad_before = rest.rejected["exchangeInfo: bad symbol entry"]
    try:
        info = await rest.exchange_info(max_wait_s=START_CHECK_WAIT_S)
    except (RestUnavailable, RestError) as exc:
        return f"could not verify symbols against exchangeInfo: {exc}"
    bad = rest.rejected["exchangeInfo: bad symbol entry"] - bad_before
    for s in symbols:
        status = info[s].get("status") if s in info else "TRADING"
        if status != "TRADING":
            raise SymbolError(f"symbol {s} is not trading (status {clip(status)})")
    missing = [s for s in symbols if s not in info]
    if missing and bad:
        return (
            f"could not verify {', '.join(missing)} against exchangeInfo: not listed, and "
            f"{bad} malformed entr{'y' if bad == 1 else 'ies'} skipped"
        )
    if missing:
        raise SymbolError(f"unknown symbol {missing[0]} on {rest.base_url} (not in exchangeInfo)")
    return None


MAX_BATCH = 1000
"""Frames taken from the connection's buffer in one go (see `take_ready`)."""


def ready_frames(ws: websockets.ClientConnection) -> deque | None:
    """The queue of frames that `ws` has parsed but not yet handed out, or None when
    this version of websockets keeps it elsewhere.

    websockets (13 and later, ``websockets.asyncio``) parses every frame of a TCP read at
    once and queues them in ``ws.recv_messages.frames.queue`` for `recv()`, one call and
    one await each. Under load a read holds hundreds of frames; taking the complete ones
    from that queue in a loop (`take_ready`) costs a fraction of a `recv()` each."""
    frames = getattr(getattr(ws, "recv_messages", None), "frames", None)
    q = getattr(frames, "queue", None)
    return q if isinstance(q, deque) else None


def take_ready(ready: deque, batch: list[str | bytes], limit: int = MAX_BATCH) -> None:
    """Move whole messages from `ready` to `batch` as `recv()` would return them (a text
    frame decoded, a binary frame as bytes), stopping at a fragment, a control frame, a
    text frame that is not UTF-8 (left for `recv()`, which fails the connection as
    before) or `limit` messages in `batch`."""
    while ready and len(batch) < limit:
        frame = ready[0]
        if not frame.fin:
            return
        if frame.opcode is Opcode.TEXT:
            try:
                batch.append(frame.data.decode())
            except UnicodeDecodeError:
                return
        elif frame.opcode is Opcode.BINARY:
            batch.append(bytes(frame.data))
        else:
            return
        ready.popleft()


@dataclass(slots=True)
class FeedStats:
    frames: int = 0
    ticks: int = 0
    duplicates: int = 0
    empty: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    connects: int = 0
    reconnects: int = 0
    stale_reconnects: int = 0
    gaps_detected: int = 0
    gaps_filled: int = 0
    gaps_open: int = 0
    backfilled: int = 0
    last_frame_ms: int = 0
    last_trade_ms: int = 0
    marks: int = 0
    state: str = "connecting"
    detail: str = ""
    per_symbol: Counter[str] = field(default_factory=Counter)


TickSink = Callable[[list[Tick]], Awaitable[None]]
MarkSink = Callable[[MarkPrice], Awaitable[None]]
GapSink = Callable[[str, int, int, str, int], Awaitable[None]]
StateSink = Callable[[str, str], None]


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with "equal jitter": ``d = min(cap, base * 2^attempt)``,
    sleep uniformly in ``[d/2, d]``, so retries spread out but never hammer at zero delay."""
    d = min(cap, base * (2**attempt))
    return d / 2 + (rng or random).uniform(0, d / 2)


class BinanceFeed:
    """One combined-stream connection for all symbols, with reconnect, stale watchdog,
    24 h rotation and gap backfill.

    Every accepted trade goes to `on_ticks` exactly once per session: live frames whose
    id is at or below the symbol's high-water mark are dropped as duplicates, and a jump
    in ids queues the hole ``[hw+1, a-1]`` for REST backfill. Holes REST cannot fill are
    reported to `on_gap` with status ``open``; filled ones with ``filled``.
    """

    def __init__(
        self,
        cfg: FeedConfig,
        symbols: Sequence[str],
        on_ticks: TickSink,
        *,
        on_gap: GapSink | None = None,
        on_state: StateSink | None = None,
        last_ids: dict[str, int] | None = None,
        rest: BinanceRest | None = None,
        on_mark: MarkSink | None = None,
    ) -> None:
        self.cfg = cfg
        self.symbols = list(symbols)
        self.streams = (cfg.stream, MARK_STREAM)
        """Per symbol: the trades, and the mark price with the funding rate."""
        self.url = market_stream_url(cfg.ws_url, self.symbols, self.streams)
        self.on_mark = on_mark
        self.on_ticks = on_ticks
        self.on_gap = on_gap
        self.on_state = on_state
        self.stats = FeedStats()
        self.hw: dict[str, int] = dict(last_ids or {})
        self.rest = rest or BinanceRest(cfg.rest_url)
        self._own_rest = rest is None
        self._gaps: asyncio.Queue[tuple[str, int, int]] = asyncio.Queue(MAX_GAPS_QUEUED)
        self._gaps_full = False
        self._filling = False
        self._stopping = asyncio.Event()
        self._ws: websockets.ClientConnection | None = None
        self._last_rx = 0.0
        self._symset: set[str] = set(self.symbols)
        self._req_id = 0

    def _set_state(self, state: str, detail: str = "") -> None:
        self.stats.state, self.stats.detail = state, detail
        if self.on_state:
            self.on_state(state, detail)

    async def subscribe(self, symbols: Sequence[str]) -> None:
        """Add symbols: SUBSCRIBE on the open connection (no reconnect), and the URL of
        any later reconnect names them too."""
        await self._change("SUBSCRIBE", [s for s in symbols if s not in self.symbols])

    async def unsubscribe(self, symbols: Sequence[str]) -> None:
        """Drop symbols: UNSUBSCRIBE on the open connection (no reconnect). Their
        high-water marks are forgotten, so a later SUBSCRIBE does not backfill the time
        in between."""
        await self._change("UNSUBSCRIBE", [s for s in symbols if s in self.symbols])

    async def _change(self, method: str, symbols: list[str]) -> None:
        """Binance's live subscription request:
        ``{"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1}``, answered
        by ``{"result": null, "id": 1}`` (which `parse_frame` skips)."""
        if not symbols:
            return
        if method == "SUBSCRIBE":
            self.symbols += symbols
        else:
            self.symbols = [s for s in self.symbols if s not in symbols]
            for sym in symbols:
                self.hw.pop(sym, None)
        self._symset.clear()
        self._symset.update(self.symbols)
        self.url = market_stream_url(self.cfg.ws_url, self.symbols, self.streams)
        self._req_id += 1
        ws = self._ws
        if ws is not None:
            params = [f"{s.lower()}@{st}" for st in self.streams for s in symbols]
            with contextlib.suppress(WebSocketException, OSError):
                await ws.send(
                    orjson.dumps({"method": method, "params": params, "id": self._req_id}).decode()
                )

    def stop(self) -> None:
        self._stopping.set()
        if self._ws is not None:
            asyncio.ensure_future(self._ws.close())

    def _queue_gap(self, sym: str, lo: int, hi: int) -> bool:
        """Queue a hole for the backfill; False (not queued) at `MAX_GAPS_QUEUED`, said
        once per such episode in the log."""
        try:
            self._gaps.put_nowait((sym, lo, hi))
        except asyncio.QueueFull:
            if not self._gaps_full:
                self._gaps_full = True
                log.warning("%d holes wait for REST: new ones are recorded open", MAX_GAPS_QUEUED)
            return False
        self._gaps_full = False
        return True

    async def _accept(self, ticks: list[Tick]) -> None:
        """Apply high-water dedupe and gap detection, then hand ticks on."""
        out = []
        unqueued = []
        hws = self.hw
        stats = self.stats
        for t in ticks:
            sym = t.symbol
            a = t.trade_id
            hw = hws.get(sym)
            if hw is not None:
                if a <= hw:
                    stats.duplicates += 1
                    continue
                if a > hw + 1:
                    stats.gaps_detected += 1
                    if not self._queue_gap(sym, hw + 1, a - 1):
                        unqueued.append((sym, hw + 1, a - 1))
            hws[sym] = a
            out.append(t)
        if out:
            stats.last_trade_ms = out[-1].ts_ms
        await self._emit(out)
        for sym, lo, hi in unqueued:
            stats.gaps_open += 1
            if self.on_gap:
                await self.on_gap(sym, lo, hi, "open", 0)

    async def _emit(self, ticks: list[Tick]) -> None:
        """Count and hand on the trades among `ticks` (see `drop_empty`)."""
        out = drop_empty(ticks)
        self.stats.empty += len(ticks) - len(out)
        if out:
            self.stats.ticks += len(out)
            self.stats.per_symbol.update(t.symbol for t in out)
            await self.on_ticks(out)

    async def run(self) -> None:
        backfiller = asyncio.create_task(self._backfill_loop(), name="gap-backfill")
        try:
            await self._connect_loop()
        finally:
            backfiller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await backfiller
            if self._own_rest:
                await self.rest.close()
            self._set_state("stopped")

    async def _connect_loop(self) -> None:
        cfg = self.cfg
        attempt = 0
        while not self._stopping.is_set():
            self._set_state("connecting" if self.stats.connects == 0 else "reconnecting")
            reason = ""
            try:
                async with websockets.connect(
                    self.url,
                    open_timeout=10,
                    max_size=2**20,
                    ping_interval=60,
                    ping_timeout=30,
                    compression=None,
                ) as ws:
                    self._ws = ws
                    if self._stopping.is_set():
                        break
                    self.stats.connects += 1
                    if self.stats.connects > 1:
                        self.stats.reconnects += 1
                        for sym in list(self.hw):
                            # not queued when full: the first live id's jump is a hole
                            self._queue_gap(sym, self.hw[sym] + 1, -1)
                    self._set_state("live")
                    self.stats.detail = ""
                    healthy = await self._read(ws)
                    if healthy:
                        attempt = 0
                    reason = self.stats.detail
            except (OSError, TimeoutError, WebSocketException) as exc:
                reason = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
            finally:
                self._ws = None
            if self._stopping.is_set():
                break
            delay = (
                0.0
                if reason == "rotating"
                else backoff_delay(attempt, cfg.reconnect_base_s, cfg.reconnect_max_s)
            )
            attempt += 1
            self._set_state("offline" if self.stats.connects == 0 else "reconnecting", reason)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _read(self, ws: websockets.ClientConnection) -> bool:
        """Read frames until the connection ends, goes stale or must rotate. Returns
        whether the connection was healthy (delivered at least one trade).

        The stale and age checks run in a side task rather than as a timeout around each
        `recv()`: a per-frame `wait_for` costs a task per message and halves throughput.
        After each `recv()` the frames that came in the same read are taken with it
        (`take_ready`) and their trades go on as one batch: dedupe, gap detection and
        `on_ticks` once per batch, in frame order (a mark price between trades first hands
        on the trades before it)."""
        healthy = False
        self._last_rx = time.monotonic()
        watchdog = asyncio.create_task(self._watchdog(ws, time.monotonic()), name="feed-watchdog")
        stats = self.stats
        symbols = self._symset
        listed = self.rest.listed
        ready = ready_frames(ws)
        try:
            while True:
                try:
                    batch = [await ws.recv()]
                except ConnectionClosedOK:
                    break
                if ready:
                    take_ready(ready, batch)
                    ws.recv_messages.maybe_resume()
                recv = now_ms()
                self._last_rx = time.monotonic()
                stats.frames += len(batch)
                stats.last_frame_ms = recv
                ticks: list[Tick] = []
                for raw in batch:
                    try:
                        tick = parse_market_frame(raw, recv, listed=listed)
                    except FrameError as exc:
                        stats.malformed[exc.reason] += 1
                        log.warning("malformed frame (%s): %.200r", exc.reason, raw)
                        continue
                    if tick is None:
                        continue
                    if tick.symbol not in symbols:
                        stats.malformed["unrequested symbol"] += 1
                    elif type(tick) is Tick:
                        ticks.append(tick)
                    else:
                        if ticks:
                            healthy = True
                            await self._accept(ticks)
                            ticks = []
                        stats.marks += 1
                        if self.on_mark is not None:
                            await self.on_mark(tick)
                if ticks:
                    healthy = True
                    await self._accept(ticks)
        except WebSocketException as exc:
            stats.detail = f"closed: {exc}"
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        if not stats.detail:
            stats.detail = "closed by server"
        return healthy

    async def _watchdog(self, ws: websockets.ClientConnection, opened: float) -> None:
        cfg = self.cfg
        tick = min(cfg.stale_after_s / 4, 1.0)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now - opened >= cfg.max_connection_age_s:
                self.stats.detail = "rotating"
                await ws.close()
                return
            if now - self._last_rx >= cfg.stale_after_s:
                self.stats.stale_reconnects += 1
                self._set_state("stale", f"no frame for {cfg.stale_after_s:g}s")
                await ws.close()
                return

    @property
    def backfilling(self) -> bool:
        """A hole waits for REST or is being fetched: trades older than the live ones
        (late for their bars, after a disconnect or a stall) may still come."""
        return self._filling or not self._gaps.empty()

    async def _backfill_loop(self) -> None:
        while True:
            sym, lo, hi = await self._gaps.get()
            self._filling = True
            try:
                await self._backfill(sym, lo, hi)
            except (RestUnavailable, RestError, FrameError) as exc:
                if hi >= lo:
                    self.stats.gaps_open += 1
                    log.warning("gap %s %d..%d not filled: %s", sym, lo, hi, exc)
                    if self.on_gap:
                        await self.on_gap(sym, lo, hi, "open", 0)
            finally:
                self._filling = False

    async def _backfill(self, sym: str, lo: int, hi: int) -> None:
        """Fetch ids ``lo..hi`` (``hi = -1``: up to the newest, used after a reconnect)."""
        probe = hi < 0
        start, got = lo, 0
        while probe or start <= hi:
            limit = AGG_TRADES_LIMIT if probe else min(AGG_TRADES_LIMIT, hi - start + 1)
            page = await self.rest.agg_trades(sym, from_id=start, limit=limit)
            for reason, n in page.dropped.items():
                self.stats.malformed[f"REST {reason}"] += n
            rows = [r for r in page.ticks if probe or r.trade_id <= hi]
            if not rows:
                break
            got += len(rows)
            self.stats.backfilled += len(rows)
            if probe:
                await self._accept(rows)
            else:
                await self._emit(rows)
            start = rows[-1].trade_id + 1
            if probe and len(rows) < limit:
                break
        if probe:
            return
        if start > hi:
            self.stats.gaps_filled += 1
            if self.on_gap:
                await self.on_gap(sym, lo, hi, "filled", got)
        else:
            self.stats.gaps_open += 1
            log.warning("gap %s %d..%d: exchange returned only up to %d", sym, lo, hi, start - 1)
            if self.on_gap:
                await self.on_gap(sym, lo, hi, "open", got)
