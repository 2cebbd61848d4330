"""End-to-end ingestion throughput: fake exchange (own process) -> feed -> writer -> SQLite.

Prints trades/s from first frame to the last committed row, the RSS of this process every
100k trades (it must stay flat), the ratio against a naive one-commit-per-tick writer
measured in the same run, and the fake exchange's own CPU per trade (it must stay well
below the client's time per trade, or the exchange is what is measured). Then the same
stream through the whole engine on its own thread (`Engine` + `EngineThread`, as every
view runs it: one pair, live bars, analytics, alert rules, snapshots into a mailbox nobody
reads): the cost of everything above storage.
Usage: python benchmarks/bench_ingest.py [--trades 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from procs import cpu_s, rss_mb, serve  # noqa: E402

from quanttui.config import load_config  # noqa: E402
from quanttui.feed.ingest import Ingestion  # noqa: E402
from quanttui.store.writer import INSERT_TICK, TickWriter  # noqa: E402

EXCHANGE_US: list[float] = []
"""CPU of the fake exchange's process per trade streamed, one entry per run: it must stay
well below the client's (1e6 / trades/s), or the benchmark measures the exchange."""


def stop_exchange(server: subprocess.Popen, n: int, ready_cpu_s: float) -> None:
    EXCHANGE_US.append((cpu_s(server.pid) - ready_cpu_s) / n * 1e6)
    server.terminate()


class NaiveWriter(TickWriter):
    """One INSERT and one COMMIT per tick: what the old dashboards did."""

    async def submit_many(self, ticks) -> None:
        db, conn = self._db, self._conn
        for t in ticks:
            self.received += 1
            row = (t.symbol, t.trade_id, t.ts_ms, t.price, t.qty, int(t.is_buyer_maker))
            await db.call(partial(conn.execute, INSERT_TICK, row))
            await db.call(conn.commit)
            self.inserted += 1


def run(n: int, naive: bool) -> tuple[float, list[float]]:
    server, port = serve("--trades", str(n))
    ready = cpu_s(server.pid)
    try:
        return asyncio.run(ingest(port, n, naive))
    finally:
        stop_exchange(server, n, ready)


async def ingest(port: int, n: int, naive: bool) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        return await ingest_into(Path(tmp) / "bench.db", port, n, naive)


async def ingest_into(db: Path, port: int, n: int, naive: bool) -> tuple[float, list[float]]:
    cfg = load_config(
        use_user_file=False,
        overrides={
            ("feed", "ws_url"): f"ws://127.0.0.1:{port}/market",
            ("feed", "rest_url"): f"http://127.0.0.1:{port}",
            ("storage", "db"): str(db),
        },
    )
    ing = Ingestion(cfg, ["BTCUSDT", "ETHUSDT"])
    if naive:
        ing.writer = NaiveWriter(db)
    rss: list[float] = []
    first: list[float] = []
    all_in = asyncio.Event()

    async def mark(ticks) -> None:
        if not first:
            first.append(time.perf_counter())
        if ing.feed.stats.ticks // 100_000 > len(rss):
            rss.append(rss_mb(children=False))
        if ing.feed.stats.ticks >= n:
            all_in.set()

    ing._extra = mark
    await ing.start()
    await all_in.wait()
    await ing.stop()
    end = time.perf_counter()
    with sqlite3.connect(db) as c:
        stored = c.execute("SELECT count(*) FROM ticks").fetchone()[0]
    assert stored == n, (stored, n)
    return n / (end - first[0]), rss


def run_engine(n: int) -> float:
    server, port = serve("--trades", str(n))
    ready = cpu_s(server.pid)
    try:
        return engine_rate(port, n)
    finally:
        stop_exchange(server, n, ready)


def engine_rate(port: int, n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return engine_rate_into(Path(tmp) / "bench.db", port, n)


def engine_rate_into(db: Path, port: int, n: int) -> float:
    from quanttui.engine import Engine, EngineThread, Mailbox

    cfg = load_config(
        use_user_file=False,
        overrides={
            ("feed", "ws_url"): f"ws://127.0.0.1:{port}/market",
            ("feed", "rest_url"): f"http://127.0.0.1:{port}",
            ("feed", "backfill"): "off",
            ("storage", "db"): str(db),
        },
    )
    engine = Engine(cfg, [("BTCUSDT", "ETHUSDT")], rules=["abs(zscore) >= 2"])
    engine.subscribe(Mailbox())
    runner = EngineThread(engine).start()
    try:
        first = None
        while engine.feed.writer.inserted < n:
            if first is None and engine.ticks:
                first = time.perf_counter()
            time.sleep(0.002)
        end = time.perf_counter()
    finally:
        runner.stop()
    with sqlite3.connect(db) as c:
        stored = c.execute("SELECT count(*) FROM ticks").fetchone()[0]
    assert stored == n, (stored, n)
    assert first is not None
    return n / (end - first)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trades", type=int, default=1_000_000)
    p.add_argument("--naive-trades", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    ours, mem = [], []
    for _ in range(args.repeat):
        rate, rss = run(args.trades, naive=False)
        ours.append(rate)
        mem = rss
    exchange = statistics.median(EXCHANGE_US)
    naive = [run(args.naive_trades, naive=True)[0] for _ in range(args.repeat)]
    m, b = statistics.median(ours), statistics.median(naive)
    print(
        f"batched writer: {m:,.0f} trades/s end-to-end (median of {args.repeat}, {args.trades:,} trades each)"
    )
    print(
        f"one commit per tick: {b:,.0f} trades/s (median of {args.repeat}, {args.naive_trades:,} trades each)"
    )
    print(f"ratio: {m / b:.1f}x")
    print(
        f"fake exchange process: {exchange:.1f} us CPU a trade (the client: {1e6 / m:.1f} us a "
        "trade of wall time)"
    )
    if mem:
        print(f"RSS every 100k trades (MB): {', '.join(f'{r:.0f}' for r in mem)}")
        print(f"RSS growth first->last checkpoint: {mem[-1] - mem[0]:+.1f} MB")
    full = [run_engine(args.trades) for _ in range(args.repeat)]
    e = statistics.median(full)
    print(
        f"whole engine (one pair, bars, analytics, a rule): {e:,.0f} trades/s end-to-end "
        f"(median of {args.repeat}); {e / b:.1f}x one commit per tick, {e / m:.2f}x storage alone"
    )


if __name__ == "__main__":
    main()
