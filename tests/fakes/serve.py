"""Run the fake exchange as its own process: `python -m tests.fakes.serve --trades N`, or
`--scan-universe N` for the pair scanner's klines.

Prints `{"port": n}` on stdout once listening. Used by benchmarks and the tmux check, where
the exchange must not share the client's event loop.

`GET /debug/produced` on the REST port answers `{"count": n, "ids": {symbol: [id, ...]}}`:
the trades produced so far, in order, so a test can check that a client stored every
trade the exchange sent up to a given moment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tests.fakes.exchange import (
    HOSTILE,
    HOSTILE_CLOSE,
    FakeExchange,
    Faults,
    scan_universe,
    synthetic_trades,
    trades_from_ticks,
)


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
    p.add_argument("--weight-limit", type=int, default=2400)
    p.add_argument("--weight-window", type=int, default=60, metavar="S")
    args = p.parse_args()
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
