"""`quanttui record SYMBOL...`: ingestion with no UI and a status line on stderr."""

from __future__ import annotations

import asyncio
import sys
import time

from quanttui.config import Config
from quanttui.errors import UserError
from quanttui.feed.backfill import BackfillProgress
from quanttui.feed.ingest import Ingestion
from quanttui.modes import start_checked
from quanttui.store.db import StoreError


def status_line(ing: Ingestion, rate: float) -> str:
    s = ing.feed.stats
    per = " ".join(f"{sym}={s.per_symbol[sym]:,}" for sym in ing.symbols)
    malformed = sum(s.malformed.values())
    return (
        f"[{s.state}] {rate:,.0f} ticks/s  {per}  stored={ing.writer.inserted:,}  "
        f"reconnects={s.reconnects}  gaps filled={s.gaps_filled} open={s.gaps_open}  "
        f"malformed={malformed}"
    )


async def _record(cfg: Config, symbols: list[str], status_every: float) -> int:
    try:
        ing = Ingestion(cfg, symbols)
    except StoreError as exc:
        raise UserError(str(exc), 2) from None
    stop = await start_checked(ing)
    print(f"recording {', '.join(symbols)} into {ing.writer.path}", file=sys.stderr)
    a = cfg.analytics

    def report(p: BackfillProgress) -> None:
        if p.state in ("done", "skipped"):
            print(f"backfill {p.state}: {p.rows:,} rows {p.detail}".rstrip(), file=sys.stderr)

    ing.start_backfill(a.timeframe, a.window, report)
    last_n, last_t = 0, time.monotonic()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), status_every)
        except TimeoutError:
            n, t = ing.feed.stats.ticks, time.monotonic()
            print(status_line(ing, (n - last_n) / (t - last_t)), file=sys.stderr, flush=True)
            last_n, last_t = n, t
    await ing.stop()
    print(
        f"stopped: received {ing.feed.stats.ticks:,} trades, stored {ing.writer.inserted:,} new rows",
        file=sys.stderr,
    )
    return 0


def run(cfg: Config, symbols: list[str], *, status_every: float = 5.0) -> int:
    return asyncio.run(_record(cfg, symbols, status_every))
