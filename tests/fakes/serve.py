"""Run the fake exchange as its own process: `python -m tests.fakes.serve --trades N`,
`--scan-universe N` for the pair scanner's klines, or `--endless --rate R` for a
synthetic stream that never ends (the memory benchmark).

Prints `{"port": n}` on stdout once listening. Used by benchmarks and the tmux check, where
the exchange must not share the client's event loop.

`GET /debug/produced` on the REST port answers `{"count": n, "ids": {symbol: [id, ...]}}`:
the trades produced so far, in order, so a test can check that a client stored every
trade the exchange sent up to a given moment. On an endless exchange, `GET /debug/count`
answers `{"count": n}`: the live trades sent so far.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tests.fakes.exchange import (
    HOSTILE,
    HOSTILE_CLOSE,
    FakeExchange,
    FakeTrade,
    Faults,
    scan_universe,
    synthetic_trades,
    trades_from_ticks,
    universe_trades,
)

ENDLESS_KEEP = 200_000
"""Trades per symbol an endless exchange keeps for REST (aggTrades backfill); older ones
are forgotten, so the exchange itself runs in bounded memory."""


class EndlessExchange(FakeExchange):
    """`FakeExchange` with a synthetic two-symbol stream that never ends: `rate` trades/s
    in total, alternating X and Y, stamped with the wall clock as they are produced.

    Prices: ``log x`` is a random walk; ``log y = log(3100/90000) + log x + u`` with ``u``
    an AR(1) process (half-life `half_life_s`), so the pair is cointegrated and the
    z-score crosses the alert threshold now and then. `history_s` seconds before the start
    hold trades at `history_rate` trades/s, served over REST only (a warm start fills the
    window at once). Live trades are sent in the batches that fall due each turn of the
    loop, one frame per trade as Binance does; `produced` and the per-symbol REST history
    keep the last `keep` trades, so the exchange itself runs in bounded memory.
    """

    def __init__(
        self,
        rate: float,
        symbols: tuple[str, str] = ("BTCUSDT", "ETHUSDT"),
        *,
        half_life_s: float = 60.0,
        history_s: float = 0.0,
        history_rate: float = 20.0,
        seed: int = 1,
        keep: int = ENDLESS_KEEP,
        **kw: object,
    ) -> None:
        super().__init__([], rate=rate, symbols={s: "TRADING" for s in symbols}, **kw)
        self.pair = symbols
        self.half_life_s = half_life_s
        self.rng = random.Random(seed)
        self.produced = deque(maxlen=2 * keep)
        self._by_symbol = {s: deque(maxlen=keep) for s in symbols}
        self.count = 0
        self._ids = dict.fromkeys(symbols, 5000)
        self._lx, self._u = math.log(90000.0), 0.0
        now = int(time.time() * 1000)
        n = int(history_s * history_rate)
        for k in range(n):
            t = now - int((n - k) * 1000 / history_rate)
            self._keep(self._trade(k, t, history_rate))

    def _trade(self, k: int, ts_ms: int, rate: float) -> FakeTrade:
        """The `k`-th trade of a stream at `rate` trades/s."""
        sym = self.pair[k % 2]
        self._ids[sym] += 1
        if k % 2 == 0:
            self._lx += self.rng.gauss(0.0, 5e-4 / math.sqrt(rate))
            px = f"{math.exp(self._lx):.1f}"
        else:
            phi = 0.5 ** (2.0 / (self.half_life_s * rate))  # u moves on Y's trades only
            self._u = phi * self._u + self.rng.gauss(0.0, 4e-4 * math.sqrt(1 - phi * phi))
            px = f"{math.exp(math.log(3100.0 / 90000.0) + self._lx + self._u):.2f}"
        return FakeTrade(sym, self._ids[sym], px, "0.010", ts_ms, k % 3 == 0)

    async def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path == "/debug/count":
            return self._json(conn, 200, {"count": self.count})
        return await super()._http(conn, request)

    def _keep(self, tr: FakeTrade) -> None:
        self.produced.append(tr)
        self._by_symbol[tr.symbol].append(tr)

    async def _produce(self) -> None:
        await self._first_client.wait()
        rate = float(self.rate or 5000.0)
        start = time.monotonic()
        while True:
            due = int((time.monotonic() - start) * rate) - self.count
            if due <= 0:
                await asyncio.sleep(0.002)
                continue
            now = int(time.time() * 1000)
            for _ in range(min(due, 2000)):
                tr = self._trade(self.count, now, rate)
                self.count += 1
                self._keep(tr)
                stream = f"{tr.symbol.lower()}@aggTrade"
                frame = None
                for ws, subs in list(self.conns.items()):
                    if stream not in subs:
                        continue
                    frame = frame or tr.frame()
                    try:
                        await ws.send(frame)
                    except websockets.ConnectionClosed:
                        continue
            await asyncio.sleep(0)


class DebugExchange(FakeExchange):
    """The fake exchange plus `/debug/produced` (see the module docstring)."""

    async def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != "/debug/produced":
            return await super()._http(conn, request)
        ids: dict[str, list[int]] = {}
        produced = list(self.produced)
        for t in produced:
            ids.setdefault(t.symbol, []).append(t.a)
        return self._json(conn, 200, {"count": len(produced), "ids": ids})


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trades", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=0.0, help="trades/s, 0 = as fast as possible")
    p.add_argument("--ndjson", help="replay a recording instead of synthetic trades")
    p.add_argument("--loop", type=int, default=1, help="repeat the recording this many times")
    p.add_argument("--disconnect-every", type=int)
    p.add_argument("--malformed-every", type=int, help="send two malformed frames every N trades")
    p.add_argument("--restamp", action="store_true", help="stamp trades with the wall clock")
    p.add_argument(
        "--hostile",
        choices=["rest", "ws", "status"],
        help="rest: every REST call errors with control sequences in msg; "
        "ws: every websocket is closed with them as the reason; "
        "status: exchangeInfo gives the last symbol them as its status",
    )
    p.add_argument("--scan-universe", type=int, metavar="N", help="serve N symbols' klines")
    p.add_argument(
        "--symbols",
        help="comma-separated symbols: --trades synthetic trades dealt over them "
        "(universe_trades, every pair cointegrated) instead of BTCUSDT/ETHUSDT",
    )
    p.add_argument("--weight-limit", type=int, default=2400)
    p.add_argument("--weight-window", type=int, default=60, metavar="S")
    p.add_argument(
        "--endless",
        action="store_true",
        help="a synthetic BTCUSDT/ETHUSDT stream at --rate trades/s (default 5000) that "
        "never ends, trade times = now",
    )
    p.add_argument(
        "--history",
        type=float,
        default=0.0,
        metavar="S",
        help="--endless: S seconds of earlier trades (20/s) served over REST for a warm start",
    )
    args = p.parse_args()
    if args.endless:
        async with EndlessExchange(args.rate or 5000.0, history_s=args.history) as ex:
            print(json.dumps({"port": ex.port}), flush=True)
            await asyncio.Event().wait()
    if args.scan_universe:
        status, infos, volumes, tape = scan_universe(args.scan_universe)
        async with FakeExchange(
            [],
            symbols=status,
            infos=infos,
            volumes=volumes,
            tape=tape,
            weight_limit=args.weight_limit,
            weight_window_s=args.weight_window,
            live_klines=True,
        ) as ex:
            print(json.dumps({"port": ex.port}), flush=True)
            await asyncio.Event().wait()
    if args.ndjson:
        from quanttui.feed.recordings import read_ndjson

        base = trades_from_ticks(read_ndjson(Path(args.ndjson)))
        trades = []
        span = base[-1].T - base[0].T + 1000
        ids: dict[str, int] = {}
        for k in range(args.loop):
            for t in base:
                ids[t.symbol] = ids.get(t.symbol, 1000) + 1
                trades.append(type(t)(t.symbol, ids[t.symbol], t.p, t.q, t.T + k * span, t.m))
    elif args.symbols:
        trades = universe_trades(args.trades, args.symbols.split(","))
    else:
        trades = synthetic_trades(args.trades)
    faults = Faults(
        disconnect_every=args.disconnect_every,
        malformed_every=args.malformed_every,
        hostile_rest=HOSTILE if args.hostile == "rest" else None,
        close_reason=HOSTILE_CLOSE if args.hostile == "ws" else None,
    )
    status = None
    if args.hostile == "status":
        names = sorted({t.symbol for t in trades})
        status = {s: "TRADING" for s in names} | {names[-1]: HOSTILE}
    async with DebugExchange(
        trades, rate=args.rate or None, faults=faults, restamp=args.restamp, symbols=status
    ) as ex:
        print(json.dumps({"port": ex.port}), flush=True)
        await ex.done.wait()
        sys.stdout.write(json.dumps({"produced": len(ex.produced)}) + "\n")
        sys.stdout.flush()
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
