"""`quanttui record SYMBOL...`: ingestion with no UI and a status line on stderr.

A database failure is reported on stderr the moment a commit fails, and once more when the
database takes writes again; the status line carries `unsaved=N` (and `DB ERROR (reason)`
while it lasts). A stop signal ends the run within `STOP_DEADLINE_S` whatever the
database's state, and the exit code is 1 when trades could not be stored.
"""

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
from quanttui.store.writer import db_event_line, loss_line

STOP_DEADLINE_S = 4.0


def status_line(ing: Ingestion, rate: float) -> str:
    s = ing.feed.stats
    per = " ".join(f"{sym}={s.per_symbol[sym]:,}" for sym in ing.symbols)
    malformed = sum(s.malformed.values())
    w = ing.writer
    db = f"DB ERROR ({w.error})  " if w.error else ""
    dropped = f" dropped={w.dropped:,}" if w.dropped else ""
    return (
        f"{db}[{s.state}] {rate:,.0f} ticks/s  {per}  stored={w.inserted:,} "
        f"unsaved={w.unsaved:,}{dropped}  "
        f"reconnects={s.reconnects}  gaps filled={s.gaps_filled} open={s.gaps_open}  "
        f"malformed={malformed}"
    )


async def _record(cfg: Config, symbols: list[str], status_every: float) -> int:
    try:
        ing = Ingestion(cfg, symbols)
    except StoreError as exc:
        raise UserError(str(exc), 2) from None
    max_unsaved = ing.writer.max_unsaved
    ing.writer.on_error = lambda st: print(
        db_event_line(st, max_unsaved), file=sys.stderr, flush=True
    )
    try:
        stop = await start_checked(ing)
    except StoreError as exc:
        await ing.stop()
        raise UserError(str(exc), 2) from None
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
    try:
        await asyncio.wait_for(ing.stop(), STOP_DEADLINE_S)
    except TimeoutError:
        await ing.writer.close(within=0.5)
    print(
        f"stopped: received {ing.feed.stats.ticks:,} trades, stored {ing.writer.inserted:,} new rows",
        file=sys.stderr,
    )
    st = ing.writer.status()
    if st.lost:
        print(loss_line(st, ing.writer.lost_ranges()), file=sys.stderr)
        return 1
    return 0


def run(cfg: Config, symbols: list[str], *, status_every: float = 5.0) -> int:
    return asyncio.run(_record(cfg, symbols, status_every))
