"""Run the fake exchange as its own process: `python -m tests.fakes.serve --trades N`, or
`--scan-universe N` for the pair scanner's klines.

Prints `PORT <n>` on stdout once listening. Used by benchmarks and the tmux check, where
the exchange must not share the client's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from tests.fakes.exchange import (
    HOSTILE,
    HOSTILE_CLOSE,
    FakeExchange,
    Faults,
    scan_universe,
    synthetic_trades,
    trades_from_ticks,
    universe_trades,
)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trades", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=0.0, help="trades/s, 0 = as fast as possible")
    p.add_argument("--ndjson", help="replay a recording instead of synthetic trades")
    p.add_argument("--loop", type=int, default=1, help="repeat the recording this many times")
    p.add_argument("--disconnect-every", type=int)
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
    elif args.symbols:
        trades = universe_trades(args.trades, args.symbols.split(","))
    else:
        trades = synthetic_trades(args.trades)
    faults = Faults(
        disconnect_every=args.disconnect_every,
        hostile_rest=HOSTILE if args.hostile == "rest" else None,
        close_reason=HOSTILE_CLOSE if args.hostile == "ws" else None,
    )
    status = None
    if args.hostile == "status":
        names = sorted({t.symbol for t in trades})
        status = {s: "TRADING" for s in names} | {names[-1]: HOSTILE}
    async with FakeExchange(
        trades, rate=args.rate or None, faults=faults, restamp=args.restamp, symbols=status
    ) as ex:
        print(json.dumps({"port": ex.port}), flush=True)
        await ex.done.wait()
        sys.stdout.write(json.dumps({"produced": len(ex.produced)}) + "\n")
        sys.stdout.flush()
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
