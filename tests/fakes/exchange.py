"""A loopback fake of Binance USD-M: a real websockets server on 127.0.0.1 that speaks
the routed combined-stream format, plus REST (exchangeInfo, aggTrades, klines) answered
on the same port through `process_request`.

The exchange has its own clock: a producer walks the trade list at `rate` trades/s and
"produces" each trade whether or not a client is listening, so a client that is
disconnected misses trades and must backfill them over REST, as against the real thing.
Faults: disconnect every N frames, malformed frames, a stall (connection open, silent),
bursts (rate=None), and 429 answers with Retry-After. Hostile answers: any aggTrades,
klines or exchangeInfo body (`Faults.agg_body`, `klines_body`, `exchange_info_body`),
and trades whose ``T`` is kept as given (`FakeTrade.keep_T`, e.g. stamped in 2076).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from quanttui.model import Tick


@dataclass
class Faults:
    disconnect_every: int | None = None
    max_disconnects: int = 10**9
    malformed_every: int | None = None
    stall_after: int | None = None
    stall_once: bool = True
    rest_429: int = 0
    retry_after: str = "1"
    unfillable: set[tuple[str, int]] = field(default_factory=set)
    history_delay_s: float = 0.0  # a slow answer to each klines/aggTrades request
    # Hostile REST: a function of (symbol, query) whose result replaces the aggTrades or
    # klines body, and a body that replaces exchangeInfo's (each None = honest answer).
    agg_body: Callable[[str, dict[str, str]], object] | None = None
    klines_body: Callable[[str, dict[str, str]], object] | None = None
    exchange_info_body: object | None = None


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
        data = {"e": "aggTrade", "E": self.T + 5, "s": self.symbol, **self.row(), "nq": self.q}
        return json.dumps({"stream": f"{self.symbol.lower()}@aggTrade", "data": data})


def trades_from_ticks(ticks: Iterable[Tick]) -> list[FakeTrade]:
    """Real recorded ticks as exchange trades (zero rows dropped), re-timed so that the
    exchange's ids are consecutive per symbol as Binance's `a` is."""
    ids: dict[str, int] = {}
    out = []
    for t in sorted(ticks, key=lambda t: (t.ts_ms, t.symbol, t.trade_id)):
        if t.price <= 0 or t.qty <= 0:
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
    ) -> None:
        self.trades = trades
        self.rate = rate
        self.status = symbols or {
            s: "TRADING"
            for s in {t.symbol for t in [*trades, *(history or [])]} | set(klines or {})
        }
        self.faults = faults or Faults()
        self.klines = klines or {}
        self.produced: list[FakeTrade] = list(history or [])
        self._by_symbol: dict[str, list[FakeTrade]] = {}
        for t in self.produced:
            self._by_symbol.setdefault(t.symbol, []).append(t)
        self.conns: dict[ServerConnection, set[str]] = {}
        self.connections = 0
        self.disconnects = 0
        self.stalls = 0
        self.rest_requests: list[str] = []
        self.port = 0
        self._server = None
        self._producer: asyncio.Task | None = None
        self._first_client = asyncio.Event()
        self.done = asyncio.Event()
        self.autostart_producer = autostart_producer
        self.restamp = restamp
        self.shift = shift

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
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._producer:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
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
        if routed:
            self.conns[ws] = subs
            self._first_client.set()
        try:
            async for msg in ws:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    req = json.loads(msg)
                    if req.get("method") == "SUBSCRIBE":
                        await ws.send(json.dumps({"result": None, "id": req.get("id")}))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.conns.pop(ws, None)

    async def _produce(self) -> None:
        if self.autostart_producer:
            await self._first_client.wait()
        sent: dict[ServerConnection, int] = {}
        stalled: set[ServerConnection] = set()
        start = time.monotonic()
        f = self.faults
        t0 = self.trades[0].T if self.trades else 0
        wall0 = int(time.time() * 1000)
        for i, tr in enumerate(self.trades):
            if self.shift and not tr.keep_T:
                delay = start + (tr.T - t0) / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tr.T = wall0 + tr.T - t0
            elif self.rate:
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 500 == 0:
                await asyncio.sleep(0)
            if self.restamp and not tr.keep_T:
                tr.T = int(time.time() * 1000)
            self.produced.append(tr)
            self._by_symbol.setdefault(tr.symbol, []).append(tr)
            stream = f"{tr.symbol.lower()}@aggTrade"
            frame = None
            for ws, subs in list(self.conns.items()):
                if stream not in subs or ws in stalled:
                    continue
                frame = frame or tr.frame()
                n = sent.get(ws, 0) + 1
                sent[ws] = n
                try:
                    if f.malformed_every and n % f.malformed_every == 0:
                        await ws.send('{"stream":"x@aggTrade","data":{"e":"aggTrade","p":[1]}}')
                        await ws.send("<not json>")
                    await ws.send(frame)
                except websockets.ConnectionClosed:
                    continue
                if f.stall_after and n == f.stall_after and (not f.stall_once or self.stalls == 0):
                    self.stalls += 1
                    stalled.add(ws)
                elif (
                    f.disconnect_every
                    and n % f.disconnect_every == 0
                    and self.disconnects < f.max_disconnects
                ):
                    self.disconnects += 1
                    self.conns.pop(ws, None)
                    ws.transport.abort()
        self.done.set()

    # -- REST side --------------------------------------------------------------------
    def _json(
        self, conn: ServerConnection, status: int, body: object, headers: dict | None = None
    ) -> Response:
        data = json.dumps(body).encode()
        h = Headers(
            {
                "Content-Type": "application/json",
                "Content-Length": str(len(data)),
                "X-MBX-USED-WEIGHT-1m": "1",
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
                {"symbol": s, "status": st, "contractType": "PERPETUAL"}
                for s, st in self.status.items()
            ]
            return self._json(conn, 200, {"timezone": "UTC", "symbols": syms})
        if url.path in ("/fapi/v1/aggTrades", "/fapi/v1/klines"):
            if self.faults.history_delay_s:
                await asyncio.sleep(self.faults.history_delay_s)
            sym = q.get("symbol", "")
            if sym not in self.status:
                return self._json(conn, 400, {"code": -1121, "msg": "Invalid symbol."})
            if url.path == "/fapi/v1/klines":
                if self.faults.klines_body is not None:
                    return self._json(conn, 200, self.faults.klines_body(sym, q))
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
