"""`quanttui record SYMBOL...`: ingestion with no UI and a status line on stderr.

Text from outside (REST errors, close reasons) reaches stderr only through
`quanttui.textsafe.printable`."""

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
from quanttui.textsafe import printable

DETAIL_LIMIT = 160


def status_line(ing: Ingestion, rate: float) -> str:
    s = ing.feed.stats
    per = " ".join(f"{sym}={s.per_symbol[sym]:,}" for sym in ing.symbols)
    malformed = sum(s.malformed.values())
    line = (
        f"[{s.state}] {rate:,.0f} ticks/s  {per}  stored={ing.writer.inserted:,}  "
        f"reconnects={s.reconnects}  gaps filled={s.gaps_filled} open={s.gaps_open}  "
        f"malformed={malformed}"
    )
    if s.state != "live" and s.detail:
        line += f"  ({printable(s.detail, DETAIL_LIMIT, one_line=True)})"
    return line


async def _record(cfg: Config, symbols: list[str], status_every: float) -> int:
    try:
        ing = Ingestion(cfg, symbols)
    except StoreError as exc:
        raise UserError(str(exc), 2) from None
    stop = await start_checked(ing)
    where = printable(ing.writer.path, one_line=True)
    print(f"recording {', '.join(symbols)} into {where}", file=sys.stderr)
    a = cfg.analytics

    def report(p: BackfillProgress) -> None:
        if p.state in ("done", "skipped"):
            detail = printable(p.detail, one_line=True)
            print(f"backfill {p.state}: {p.rows:,} rows {detail}".rstrip(), file=sys.stderr)

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
