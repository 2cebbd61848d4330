"""A loopback fake of Binance USD-M: a real websockets server on 127.0.0.1 that speaks
the routed combined-stream format (aggTrade and markPrice@1s), plus REST (exchangeInfo,
aggTrades, klines, fundingRate, fundingInfo, premiumIndex) answered on the same port through
`process_request`.

The exchange has its own clock: a producer walks the trade list at `rate` trades/s and
"produces" each trade whether or not a client is listening, so a client that is
disconnected misses trades and must backfill them over REST, as against the real thing.
Faults: disconnect every N frames, malformed frames, a stall (connection open, silent;
with `Faults.stall_s`, the whole exchange silent for that long while trading goes on,
then sending again), bursts (rate=None), and 429 answers with Retry-After. Hostile modes: every REST call
answered with a Binance-style error whose `msg` carries terminal control sequences and
Rich markup (`Faults.hostile_rest`), or every websocket closed with such a reason
(`Faults.close_reason`). Hostile answers: any aggTrades,
klines or exchangeInfo body (`Faults.agg_body`, `klines_body`, `exchange_info_body`),
and trades whose ``T`` is kept as given (`FakeTrade.keep_T`, e.g. stamped in 2076).

For the pair scanner: a `KlineTape` serves deterministic 1m klines of many symbols up to
the wall clock (the open minute included, as Binance does), ``/fapi/v1/ticker/24hr``
answers from per-symbol quote volumes, exchangeInfo carries ``contractType``,
``quoteAsset``, ``onboardDate`` and ``rateLimits``, and request weight is accounted per
clock-aligned window: every answer carries ``X-MBX-USED-WEIGHT-<n><unit>`` and a request
that passes the limit is answered 429 (counted in `weight_429`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import orjson
import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State

from quanttui.feed.klines import kline_weight
from quanttui.model import Tick

MINUTE = 60_000
MALFORMED = (b'{"stream":"x@aggTrade","data":{"e":"aggTrade","p":[1]}}', b"<not json>")


@dataclass
class Faults:
    disconnect_every: int | None = None
    max_disconnects: int = 10**9
    malformed_every: int | None = None
    stall_after: int | None = None
    stall_once: bool = True
    # With stall_after: the stall holds every connection (new ones too) for this long,
    # then frames resume (from the next trade: the missed ones only over REST). None: the
    # stalled connection stays silent until the client drops it.
    stall_s: float | None = None
    rest_429: int = 0
    retry_after: str = "1"
    unfillable: set[tuple[str, int]] = field(default_factory=set)
    history_delay_s: float = 0.0  # a slow answer to each klines/aggTrades request
    hostile_rest: str | None = None  # every REST call: 400 {"code": -1121, "msg": this}
    close_reason: str | None = None  # every websocket closed at once (code 4000) with this

    # Hostile REST: a function of (symbol, query) whose result replaces the aggTrades or
    # klines body, and a body that replaces exchangeInfo's (each None = honest answer).
    agg_body: Callable[[str, dict[str, str]], object] | None = None
    klines_body: Callable[[str, dict[str, str]], object] | None = None
    exchange_info_body: object | None = None


# Rich markup, an OSC 0 window-title set, an OSC 52 clipboard write and a clear-screen.
HOSTILE = (
    "[reverse]PWNED[/reverse] [link=http://evil]click[/link] "
    "\x1b]0;TITLEPWN\x07 \x1b]52;c;cHduZWQ=\x07 \x1b[2J"
)
# A close reason is at most 123 bytes (RFC 6455 §5.5: control frame payload <= 125, minus
# the 2-byte code); the sequences come first so a display that cuts at 80 shows them.
HOSTILE_CLOSE = "\x1b]0;TITLEPWN\x07\x1b[2J\x1b]52;c;cHduZWQ=\x07 [reverse]PWNED[/reverse]"


@dataclass
class FakeTrade:
    symbol: str
    a: int
    p: str
    q: str
    T: int
    m: bool
    keep_T: bool = False  # `restamp`/`shift` leave T alone (e.g. a trade stamped in 2076)

    def row(self) -> dict:
        return {
            "a": self.a,
            "p": self.p,
            "q": self.q,
            "f": self.a * 3,
            "l": self.a * 3 + 2,
            "T": self.T,
            "m": self.m,
        }

    def frame(self) -> str:
        return self.frame_bytes().decode()

    def frame_bytes(self) -> bytes:
        """The combined-stream frame, compact JSON as Binance sends it."""
        data = {"e": "aggTrade", "E": self.T + 5, "s": self.symbol, **self.row(), "nq": self.q}
        return orjson.dumps({"stream": f"{self.symbol.lower()}@aggTrade", "data": data})


@dataclass
class FakeMark:
    """One ``markPriceUpdate``, sent on ``<symbol>@markPrice@1s`` in Binance's format."""

    symbol: str
    E: int
    p: str
    i: str
    r: str
    T: int
    P: str = "0.00000000"

    def frame(self) -> str:
        data = {
            "e": "markPriceUpdate",
            "E": self.E,
            "s": self.symbol,
            "p": self.p,
            "P": self.P,
            "i": self.i,
            "r": self.r,
            "T": self.T,
        }
        return json.dumps({"stream": f"{self.symbol.lower()}@markPrice@1s", "data": data})


def funding_rows(symbol: str, times: Iterable[int], rates: Iterable[float], marks=None) -> list:
    """``/fapi/v1/fundingRate`` rows as Binance writes them (decimal strings, 8 places;
    ``markPrice`` "" where `marks` gives None)."""
    marks = marks if marks is not None else []
    out = []
    for k, (t, r) in enumerate(zip(times, rates, strict=True)):
        m = marks[k] if k < len(marks) else None
        out.append(
            {
                "symbol": symbol,
                "fundingTime": t,
                "fundingRate": f"{r:.8f}",
                "markPrice": "" if m is None else f"{m:.8f}",
            }
        )
    return out


def premium_row(symbol: str, rate: str, mark: str = "100.00000000", *, now_ms: int) -> dict:
    """One ``/fapi/v1/premiumIndex`` row as Binance writes it; `rate` is the decimal
    string of ``lastFundingRate`` ("" for a delivery contract, with no funding time)."""
    step = 8 * 3_600_000
    return {
        "symbol": symbol,
        "markPrice": mark,
        "indexPrice": mark,
        "estimatedSettlePrice": mark,
        "lastFundingRate": rate,
        "interestRate": "0.00010000" if rate else "",
        "nextFundingTime": now_ms // step * step + step if rate else 0,
        "time": now_ms,
    }


def trades_from_ticks(ticks: Iterable[Tick], keep_empty: bool = False) -> list[FakeTrade]:
    """Real recorded ticks as exchange trades, re-timed so that the exchange's ids are
    consecutive per symbol as Binance's `a` is. Zero rows (`"p":"0","q":"0"`) are dropped
    unless `keep_empty`, which streams them with ids of their own."""
    ids: dict[str, int] = {}
    out = []
    for t in sorted(ticks, key=lambda t: (t.ts_ms, t.symbol, t.trade_id)):
        if not keep_empty and (t.price <= 0 or t.qty <= 0):
            continue
        ids[t.symbol] = ids.get(t.symbol, 1000) + 1
        out.append(
            FakeTrade(
                t.symbol, ids[t.symbol], repr(t.price), repr(t.qty), t.ts_ms, t.is_buyer_maker
            )
        )
    return out


class FakeExchange:
    def __init__(
        self,
        trades: list[FakeTrade],
        *,
        rate: float | None = 2000.0,
        symbols: dict[str, str] | None = None,
        faults: Faults | None = None,
        klines: dict[str, list[list]] | None = None,
        autostart_producer: bool = True,
        restamp: bool = False,  # stamp each trade with the wall clock as it is produced
        shift: bool = False,  # produce at the trades' own pace, their T shifted to now
        history: list[FakeTrade] | None = None,  # already traded: REST only, never streamed
        tape: KlineTape | None = None,  # klines of many symbols, served up to the wall clock
        infos: dict[str, dict] | None = None,  # extra exchangeInfo fields per symbol
        volumes: dict[str, float] | None = None,  # 24 h quote volume per symbol
        weight_limit: int = 2400,
        weight_window_s: int = 60,  # a divisor of 60 (seconds) or a multiple of 60
        live_klines: bool = False,  # close each tape minute on the kline streams
        marks: list[FakeMark] | None = None,  # streamed on <sym>@markPrice@1s
        mark_rate: float = 20.0,  # markPrice frames/s (all symbols together)
        funding: dict[str, list[dict]] | None = None,  # /fapi/v1/fundingRate rows
        funding_info: list[dict] | None = None,  # /fapi/v1/fundingInfo answer
        premium_index: list[dict] | None = None,  # /fapi/v1/premiumIndex rows (`premium_row`)
    ) -> None:
        self.trades = trades
        self.rate = rate
        self.status = symbols or {
            s: "TRADING"
            for s in {t.symbol for t in [*trades, *(history or [])]}
            | set(klines or {})
            | set(tape.symbols if tape else ())
            | set(funding or {})
            | {m.symbol for m in marks or []}
        }
        self.tape = tape
        self.infos = infos or {}
        self.volumes = volumes or {}
        self.weight_limit = weight_limit
        self.weight_window_s = weight_window_s
        self.weight_used: dict[int, int] = {}  # window index -> weight counted
        self.weight_429 = 0
        self.kline_requests: list[dict[str, str]] = []
        self.live_klines = live_klines
        self._clock: asyncio.Task | None = None
        self.faults = faults or Faults()
        self.klines = klines or {}
        self.produced: list[FakeTrade] = list(history or [])
        self._by_symbol: dict[str, list[FakeTrade]] = {}
        for t in self.produced:
            self._by_symbol.setdefault(t.symbol, []).append(t)
        self.conns: dict[ServerConnection, set[str]] = {}
        self.requests: list[tuple[object, object]] = []  # live requests, in order
        self.connections = 0
        self.disconnects = 0
        self.stalls = 0
        self.silent_until: float | None = None  # monotonic end of a `Faults.stall_s` stall
        self.rest_requests: list[str] = []
        self.port = 0
        self._server = None
        self._producer: asyncio.Task | None = None
        self._first_client = asyncio.Event()
        self.done = asyncio.Event()
        self.autostart_producer = autostart_producer
        self.restamp = restamp
        self.shift = shift
        self.marks = marks or []
        self.mark_rate = mark_rate
        self.marks_sent = 0
        self.marks_done = asyncio.Event()
        self.funding = funding or {}
        self.funding_info = funding_info or []
        self.premium_index = premium_index or []
        self._mark_producer: asyncio.Task | None = None

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/market"

    @property
    def rest_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeExchange:
        self._server = await serve(
            self._handler, "127.0.0.1", 0, process_request=self._http, max_size=2**20
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._producer = asyncio.create_task(self._produce())
        if self.live_klines:
            self._clock = asyncio.create_task(self._minute_clock())
        self._mark_producer = asyncio.create_task(self._produce_marks())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._clock:
            self._clock.cancel()
        for task in (self._producer, self._mark_producer):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._server.close()
        await self._server.wait_closed()

    # -- websocket side ---------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path)
        subs: set[str] = set()
        routed = url.path == "/market/stream"
        if routed:
            for name in parse_qs(url.query).get("streams", [""])[0].split("/"):
                if name:
                    subs.add(name)
        self.connections += 1
        if self.faults.close_reason is not None:
            await ws.close(4000, self.faults.close_reason)
            return
        if routed:
            self.conns[ws] = subs
            self._first_client.set()
        try:
            async for msg in ws:
                with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                    await self._live_request(ws, subs, json.loads(msg))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.conns.pop(ws, None)

    async def _live_request(self, ws: ServerConnection, subs: set[str], req: dict) -> None:
        """Binance's live subscription requests on an open connection: SUBSCRIBE and
        UNSUBSCRIBE add or drop stream names on *this* connection (frames follow at once,
        or stop), LIST_SUBSCRIPTIONS answers them; each is answered with its `id`:
        ``{"result": null, "id": 1}``. Every request is logged in `requests`."""
        method, params = req.get("method"), req.get("params", [])
        self.requests.append((method, list(params) if isinstance(params, list) else params))
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                body = {"code": 2, "msg": "Invalid request: request parameters must be strings"}
                await ws.send(json.dumps({"error": body, "id": req.get("id")}))
                return
            if method == "SUBSCRIBE":
                subs.update(params)
            else:
                subs.difference_update(params)
            await ws.send(json.dumps({"result": None, "id": req.get("id")}))
        elif method == "LIST_SUBSCRIPTIONS":
            await ws.send(json.dumps({"result": sorted(subs), "id": req.get("id")}))

    async def stop_producing(self) -> None:
        """The exchange goes quiet: no trade is produced after this returns."""
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer

    def subscribed(self) -> list[set[str]]:
        """The stream names of each open connection."""
        return [set(s) for s in self.conns.values()]

    async def _produce(self) -> None:
        if self.autostart_producer:
            await self._first_client.wait()
        sent: dict[ServerConnection, int] = {}
        stalled: set[ServerConnection] = set()
        out: dict[ServerConnection, list[bytes]] = {}
        start = time.monotonic()
        f = self.faults
        t0 = self.trades[0].T if self.trades else 0
        wall0 = int(time.time() * 1000)
        for i, tr in enumerate(self.trades):
            if self.shift and not tr.keep_T:
                delay = start + (tr.T - t0) / 1000 - time.monotonic()
                if delay > 0:
                    await self._flush(out)
                    await asyncio.sleep(delay)
                tr.T = wall0 + tr.T - t0
            elif self.rate:
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    await self._flush(out)
                    await asyncio.sleep(delay)
            elif i % 500 == 0:
                await self._flush(out)
                await asyncio.sleep(0)
            if self.restamp and not tr.keep_T:
                tr.T = int(time.time() * 1000)
            self.produced.append(tr)
            self._by_symbol.setdefault(tr.symbol, []).append(tr)
            if self.silent_until is not None and time.monotonic() < self.silent_until:
                continue
            stream = f"{tr.symbol.lower()}@aggTrade"
            frame = None
            for ws, subs in list(self.conns.items()):
                if stream not in subs or ws in stalled:
                    continue
                frame = frame or tr.frame_bytes()
                n = sent.get(ws, 0) + 1
                sent[ws] = n
                frames = out.setdefault(ws, [])
                if f.malformed_every and n % f.malformed_every == 0:
                    frames += MALFORMED
                frames.append(frame)
                if f.stall_after and n == f.stall_after and (not f.stall_once or self.stalls == 0):
                    self.stalls += 1
                    if f.stall_s is None:
                        stalled.add(ws)
                    else:
                        self.silent_until = time.monotonic() + f.stall_s
                elif (
                    f.disconnect_every
                    and n % f.disconnect_every == 0
                    and self.disconnects < f.max_disconnects
                ):
                    await self._flush(out)
                    self.disconnects += 1
                    self.conns.pop(ws, None)
                    ws.transport.abort()
        await self._flush(out)
        self.done.set()

    @staticmethod
    async def _flush(out: dict[ServerConnection, list[bytes]]) -> None:
        """Send each connection its queued frames, one websocket text frame per trade as
        Binance does, in one write to the socket; then wait while its buffer is full.

        One `ws.send` per frame made one `send()` system call per trade, which held a
        burst to about 40,000 frames/s whatever the client did."""
        items = list(out.items())
        out.clear()
        for ws, frames in items:
            proto = ws.protocol
            if proto.state is not State.OPEN:
                continue
            for fr in frames:
                proto.send_text(fr)
            ws.transport.write(b"".join(proto.data_to_send()))
        for ws, _ in items:
            with contextlib.suppress(websockets.ConnectionClosed, OSError):
                await ws.drain()

    async def _produce_marks(self) -> None:
        """Send each mark to every connection subscribed to its symbol's
        ``@markPrice@1s``, at `mark_rate` frames/s, once the first client is connected."""
        if not self.marks:
            self.marks_done.set()
            return
        await self._first_client.wait()
        start = time.monotonic()
        for k, mk in enumerate(self.marks):
            delay = start + k / self.mark_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stream = f"{mk.symbol.lower()}@markPrice@1s"
            frame = mk.frame()
            for ws, subs in list(self.conns.items()):
                if stream in subs:
                    with contextlib.suppress(websockets.ConnectionClosed):
                        await ws.send(frame)
                        self.marks_sent += 1
        self.marks_done.set()

    # -- REST side --------------------------------------------------------------------
    def _json(
        self, conn: ServerConnection, status: int, body: object, headers: dict | None = None
    ) -> Response:
        data = json.dumps(body).encode()
        h = Headers(
            {
                "Content-Type": "application/json",
                "Content-Length": str(len(data)),
                self.weight_header: str(self.weight_used.get(self._window(), 0)),
            }
        )
        for k, v in (headers or {}).items():
            h[k] = v
        return Response(status, HTTPStatus(status).phrase, h, data)

    async def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlsplit(request.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.rest_requests.append(request.path)
        if self.faults.hostile_rest is not None:
            return self._json(conn, 400, {"code": -1121, "msg": self.faults.hostile_rest})
        w = self._window()
        self.weight_used[w] = self.weight_used.get(w, 0) + self.request_weight(url.path, q)
        if self.weight_used[w] > self.weight_limit:
            self.weight_429 += 1
            retry = self.weight_window_s - time.time() % self.weight_window_s
            return self._json(
                conn,
                429,
                {"code": -1003, "msg": "Too many requests; current limit is exceeded."},
                {"Retry-After": str(math.ceil(retry))},
            )
        if self.faults.rest_429 > 0:
            self.faults.rest_429 -= 1
            return self._json(
                conn,
                429,
                {"code": -1003, "msg": "Too many requests"},
                {"Retry-After": self.faults.retry_after},
            )
        if url.path == "/fapi/v1/exchangeInfo" and self.faults.exchange_info_body is not None:
            return self._json(conn, 200, self.faults.exchange_info_body)
        if url.path == "/fapi/v1/exchangeInfo":
            syms = [
                {
                    "symbol": s,
                    "status": st,
                    "contractType": "PERPETUAL",
                    "quoteAsset": "USDT" if s.endswith("USDT") else s[-4:],
                    "marginAsset": "USDT" if s.endswith("USDT") else s[-4:],
                    **self.infos.get(s, {}),
                }
                for s, st in self.status.items()
            ]
            return self._json(
                conn,
                200,
                {"timezone": "UTC", "rateLimits": self.rate_limits(), "symbols": syms},
            )
        if url.path == "/fapi/v1/ticker/24hr":
            return self._ticker(conn, q)
        if url.path == "/fapi/v1/fundingInfo":
            return self._json(conn, 200, self.funding_info)
        if url.path == "/fapi/v1/premiumIndex":
            if "symbol" not in q:
                return self._json(conn, 200, self.premium_index)
            rows = [r for r in self.premium_index if r.get("symbol") == q["symbol"]]
            if not rows:
                return self._json(conn, 400, {"code": -1121, "msg": "Invalid symbol."})
            return self._json(conn, 200, rows[0])
        if url.path == "/fapi/v1/fundingRate":
            sym = q.get("symbol", "")
            if sym not in self.status:
                return self._json(conn, 400, {"code": -1121, "msg": "Invalid symbol."})
            return self._json(conn, 200, self._funding(sym, q))
        if url.path in ("/fapi/v1/aggTrades", "/fapi/v1/klines"):
            if self.faults.history_delay_s:
                await asyncio.sleep(self.faults.history_delay_s)
            sym = q.get("symbol", "")
            if sym not in self.status:
                return self._json(conn, 400, {"code": -1121, "msg": "Invalid symbol."})
            if url.path == "/fapi/v1/klines":
                if self.faults.klines_body is not None:
                    return self._json(conn, 200, self.faults.klines_body(sym, q))
                self.kline_requests.append(q)
                if self.tape is not None and sym in self.tape.symbols:
                    return self._json(conn, 200, self.tape.klines(sym, q))
                return self._json(conn, 200, self._klines(sym, q))
            if self.faults.agg_body is not None:
                return self._json(conn, 200, self.faults.agg_body(sym, q))
            return self._json(conn, 200, self._agg(sym, q))
        return self._json(conn, 404, {"code": -1, "msg": "not found"})

    def _agg(self, sym: str, q: dict[str, str]) -> list[dict]:
        limit = min(int(q.get("limit", 500)), 1000)
        rows = self._by_symbol.get(sym, [])
        if "fromId" in q:
            lo = int(q["fromId"])
            sel = [t for t in rows if t.a >= lo]
        else:
            st = int(q.get("startTime", 0))
            en = int(q.get("endTime", 2**62))
            sel = [t for t in rows if st <= t.T <= en]
        out = []
        for t in sel[:limit]:
            if (sym, t.a) in self.faults.unfillable:
                break
            out.append(t.row())
        return out

    def _klines(self, sym: str, q: dict[str, str]) -> list[list]:
        limit = min(int(q.get("limit", 500)), 1500)
        st = int(q.get("startTime", 0))
        en = int(q.get("endTime", 2**62))
        return [k for k in self.klines.get(sym, []) if st <= k[0] <= en][:limit]

    # -- request weight -----------------------------------------------------------------
    def _window(self) -> int:
        return int(time.time() // self.weight_window_s)

    @property
    def weight_header(self) -> str:
        n = self.weight_window_s
        return f"X-MBX-USED-WEIGHT-{n // 60}M" if n % 60 == 0 else f"X-MBX-USED-WEIGHT-{n}S"

    def rate_limits(self) -> list[dict]:
        n = self.weight_window_s
        unit, num = ("MINUTE", n // 60) if n % 60 == 0 else ("SECOND", n)
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": unit,
                "intervalNum": num,
                "limit": self.weight_limit,
            },
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        ]

    @staticmethod
    def request_weight(path: str, q: dict[str, str]) -> int:
        """Binance USD-M weights: klines by limit, aggTrades 20, ticker/24hr 40 without a
        symbol (1 with one), everything else here 1."""
        if path == "/fapi/v1/klines":
            return kline_weight(int(q.get("limit", 500)))
        if path == "/fapi/v1/aggTrades":
            return 20
        if path == "/fapi/v1/ticker/24hr":
            return 1 if "symbol" in q else 40
        if path == "/fapi/v1/premiumIndex":
            return 1 if "symbol" in q else 10
        return 1

    def _ticker(self, conn: ServerConnection, q: dict[str, str]) -> Response:
        def one(s: str) -> dict:
            last = self.tape.last_close(s) if self.tape and s in self.tape.symbols else 1.0
            qv = self.volumes.get(s, 0.0)
            return {
                "symbol": s,
                "lastPrice": f"{last:.6f}",
                "volume": f"{qv / last:.3f}",
                "quoteVolume": f"{qv:.2f}",
                "openTime": int(time.time() * 1000) - 86_400_000,
                "closeTime": int(time.time() * 1000),
                "count": int(qv // 1000),
            }

        if "symbol" in q:
            if q["symbol"] not in self.status:
                return self._json(conn, 400, {"code": -1121, "msg": "Invalid symbol."})
            return self._json(conn, 200, one(q["symbol"]))
        return self._json(conn, 200, [one(s) for s in self.status])

    # -- kline streams ------------------------------------------------------------------
    async def close_minute(self, open_ms: int) -> int:
        """Send every connection subscribed to ``<sym>@kline_1m`` the minute `open_ms` of
        the tape: one update with ``x`` false, then the final one with ``x`` true (as
        Binance does at the minute's close). Returns the frames sent."""
        assert self.tape is not None
        sent = 0
        for ws, subs in list(self.conns.items()):
            for name in sorted(subs):
                sym, _, stream = name.partition("@")
                if stream != "kline_1m" or sym.upper() not in self.tape.symbols:
                    continue
                row = self.tape.row_at(sym.upper(), open_ms)
                for final in (False, True):
                    try:
                        await ws.send(kline_frame(sym.upper(), row, final))
                    except websockets.ConnectionClosed:
                        break
                    sent += 1
        return sent

    async def _minute_clock(self) -> None:
        while True:
            now = time.time() * 1000
            await asyncio.sleep((MINUTE - now % MINUTE) / 1000 + 0.2)
            now = int(time.time() * 1000)
            await self.close_minute(now - now % MINUTE - MINUTE)

    def _funding(self, sym: str, q: dict[str, str]) -> list[dict]:
        """Binance's paging: oldest first within ``[startTime, endTime]``, at most
        ``limit`` (default 100, max 1000); with neither bound, the newest ``limit``."""
        limit = min(int(q.get("limit", 100)), 1000)
        rows = self.funding.get(sym, [])  # oldest first, as given
        if "startTime" not in q and "endTime" not in q:
            return rows[-limit:]
        st = int(q.get("startTime", 0))
        en = int(q.get("endTime", 2**62))
        out, t = [], None
        for r in rows:
            v = r.get("fundingTime") if isinstance(r, dict) else None
            if type(v) is int:
                t = v
            # a row without a usable time travels with the last row that has one
            if t is not None and st <= t <= en:
                out.append(r)
        return out[:limit]

    def produced_ids(self) -> set[tuple[str, int]]:
        return {(t.symbol, t.a) for t in self.produced}


def synthetic_trades(
    n: int, symbols: tuple[str, str] = ("BTCUSDT", "ETHUSDT"), start_ms: int = 1_765_000_000_000
) -> list[FakeTrade]:
    out = []
    ids = {s: 5000 for s in symbols}
    for i in range(n):
        s = symbols[i % 2]
        ids[s] += 1
        px = 90000.0 + (i % 97) * 0.1 if s == symbols[0] else 3100.0 + (i % 89) * 0.01
        out.append(FakeTrade(s, ids[s], f"{px:.2f}", "0.010", start_ms + i, i % 3 == 0))
    return out


def kline_frame(symbol: str, row: list, final: bool) -> str:
    """A combined-stream ``kline`` event for a 12-field REST kline row."""
    t, o, h, lo, c, v, close, q, n, tv, tq, _ = row
    k = {"t": t, "T": close, "s": symbol, "i": "1m", "f": 100, "L": 100 + n, "o": o,
         "c": c, "h": h, "l": lo, "v": v, "n": n, "x": final, "q": q, "V": tv, "Q": tq,
         "B": "0"}  # fmt: skip
    data = {"e": "kline", "E": close + 1 if final else close - 30_000, "s": symbol, "k": k}
    return json.dumps({"stream": f"{symbol.lower()}@kline_1m", "data": data})


class KlineTape:
    """Deterministic 1m klines of many symbols from `origin_ms` to `origin_ms + minutes`,
    served up to the wall clock like Binance's (the minute still open included, with a
    close time in the future). Log closes are a few common factors plus idiosyncratic
    random walks; every fourth symbol is cointegrated with the next one. A symbol in
    `listed_ms` has no klines before that time."""

    def __init__(
        self,
        symbols: list[str],
        *,
        seed: int = 0,
        origin_ms: int | None = None,
        minutes: int = 4 * 1440,
        listed_ms: dict[str, int] | None = None,
    ) -> None:
        import numpy as np

        now = int(time.time() * 1000)
        self.origin_ms = origin_ms if origin_ms is not None else now - now % MINUTE - 2 * 86_400_000
        self.symbols = list(symbols)
        self.minutes = minutes
        self.listed_ms = listed_ms or {}
        rng = np.random.default_rng(seed)
        n = len(symbols)
        factors = np.cumsum(rng.normal(0, 5e-4, (minutes + 1, 3)), axis=0)
        load = rng.normal(0.8, 0.3, (3, n))
        logp = factors @ load + np.cumsum(rng.normal(0, 4e-4, (minutes + 1, n)), axis=0)
        for k in range(0, n - 1, 4):
            noise = np.zeros(minutes + 1)
            shocks = rng.normal(0, 3e-4, minutes + 1)
            for t in range(1, minutes + 1):
                noise[t] = 0.97 * noise[t - 1] + shocks[t]
            logp[:, k] = 1.2 * logp[:, k + 1] + noise
        logp += rng.uniform(-2, 10, n)
        self._close = np.exp(logp)
        self._col = {s: i for i, s in enumerate(symbols)}

    def _row(self, k: int, i: int) -> list:
        o = float(self._close[i, k])
        c = float(self._close[i + 1, k])
        os_, cs = f"{o:.6f}", f"{c:.6f}"
        hi = f"{max(float(os_), float(cs)) * 1.0004:.6f}"
        lo = f"{min(float(os_), float(cs)) * 0.9996:.6f}"
        t = self.origin_ms + i * MINUTE
        vol = 1000 + (i * 7919 + k * 104729) % 5000
        return [
            t,
            os_,
            hi,
            lo,
            cs,
            f"{vol}",
            t + MINUTE - 1,
            f"{vol * c:.4f}",
            50 + i % 97,
            f"{vol // 2}",
            f"{vol * c / 2:.4f}",
            "0",
        ]

    def klines(self, sym: str, q: dict[str, str]) -> list[list]:
        k = self._col[sym]
        limit = min(int(q.get("limit", 500)), 1500)
        now = int(time.time() * 1000)
        lo = max(int(q.get("startTime", 0)), self.origin_ms, self.listed_ms.get(sym, 0))
        hi = min(int(q.get("endTime", 2**62)), now, self.origin_ms + (self.minutes - 1) * MINUTE)
        first = -(-(lo - self.origin_ms) // MINUTE)
        last = (hi - self.origin_ms) // MINUTE
        return [self._row(k, i) for i in range(first, min(last + 1, first + limit))]

    def row_at(self, sym: str, open_ms: int) -> list:
        """The kline of the minute opening at `open_ms`, whatever the wall clock says."""
        return self._row(self._col[sym], (open_ms - self.origin_ms) // MINUTE)

    def last_close(self, sym: str) -> float:
        now = int(time.time() * 1000)
        i = min(self.minutes, max(0, (now - self.origin_ms) // MINUTE))
        return float(self._close[i, self._col[sym]])


def scan_universe(
    trading: int = 64, *, seed: int = 0, listed_late: int = 1
) -> tuple[dict[str, str], dict[str, dict], dict[str, float], KlineTape]:
    """A USD-M-like universe for the scanner: `trading` USDT perpetuals (``S00USDT`` ...)
    with distinct 24 h volumes, plus symbols that must never be picked: not trading
    (``SETTLING``, ``PENDING_TRADING``, ``CLOSE``), a quarterly contract, a USDC-margined
    perpetual (each with a large volume). The last `listed_late` perpetuals were listed
    six hours ago. Returns ``(status, infos, volumes, tape)`` for `FakeExchange`."""
    names = [f"S{k:02d}USDT" for k in range(trading)]
    others = {
        "OLD1USDT": "SETTLING",
        "NEW1USDT": "PENDING_TRADING",
        "DEADUSDT": "CLOSE",
        "BTCUSDT_260327": "TRADING",
        "BTCUSDC": "TRADING",
    }
    status = {**{s: "TRADING" for s in names}, **others}
    infos: dict[str, dict] = {"BTCUSDT_260327": {"contractType": "CURRENT_QUARTER"}}
    volumes = {s: 1e9 / (k + 1) for k, s in enumerate(names)}
    volumes.update({s: 5e9 for s in others})
    tape = KlineTape([*names, *others], seed=seed)
    now = int(time.time() * 1000)
    late = now - now % MINUTE - 6 * 3_600_000
    for s in names[len(names) - listed_late :]:
        tape.listed_ms[s] = late
        infos[s] = {"onboardDate": late}
    for s in names[: len(names) - listed_late]:
        infos.setdefault(s, {})["onboardDate"] = tape.origin_ms
    return status, infos, volumes, tape


def universe_trades(
    n: int,
    symbols: Iterable[str],
    *,
    seed: int = 0,
    start_ms: int = 1_765_000_000_000,
    per_ms: int = 1,
    first_id: int = 5001,
) -> list[FakeTrade]:
    """`n` trades dealt round-robin over `symbols` (``per_ms`` trades per millisecond of
    trade time), ids consecutive per symbol from `first_id`. Log prices are one common
    random walk times a loading near 1, plus a mean-reverting AR(1) deviation (phi 0.995)
    per symbol, so every pair is cointegrated and its z-score wanders across +-2."""
    import numpy as np

    syms = list(symbols)
    k = len(syms)
    rng = np.random.default_rng(seed)
    steps = -(-n // k)
    common = np.cumsum(rng.normal(0, 2e-4, steps))
    load = rng.uniform(0.8, 1.2, k)
    dev = np.zeros((steps, k))
    shocks = rng.normal(0, 3e-4, (steps, k))
    for t in range(1, steps):
        dev[t] = 0.995 * dev[t - 1] + shocks[t]
    base = rng.uniform(1.0, 8.0, k)
    prices = np.exp(base + common[:, None] * load + dev)
    out: list[FakeTrade] = []
    for i in range(n):
        t, j = divmod(i, k)
        out.append(
            FakeTrade(
                syms[j],
                first_id + t,
                f"{prices[t, j]:.4f}",
                "0.010",
                start_ms + i // per_ms,
                i % 3 == 0,
            )
        )
    return out
