"""Ingestion session: exchange feed -> single writer, shared by `record`, `--headless` and
the app. Gap outcomes are stored in the `gaps` table through the same writer, so there is
exactly one writer per process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from quanttui.config import Config
from quanttui.feed.backfill import Backfill, BackfillProgress, span_ms
from quanttui.feed.binance import BinanceFeed, BinanceRest, StateSink, check_symbols, now_ms
from quanttui.feed.funding import mark_params
from quanttui.model import MarkPrice, Tick
from quanttui.store.writer import UPSERT_MARK, TickWriter

INSERT_GAP = (
    "INSERT INTO gaps(symbol, first_id, last_id, detected_ms, status, filled, resolved_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class Ingestion:
    def __init__(
        self,
        cfg: Config,
        symbols: Sequence[str],
        *,
        db_path: str | Path | None = None,
        on_ticks: Callable[[list[Tick]], Awaitable[None] | None] | None = None,
        on_state: StateSink | None = None,
        on_mark: Callable[[MarkPrice], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.symbols = list(symbols)
        self.writer = TickWriter(db_path or cfg.db_path, cfg.storage.flush_interval_ms / 1000)
        self.rest = BinanceRest(cfg.feed.rest_url)
        self._extra = on_ticks
        self.feed = BinanceFeed(
            cfg.feed,
            self.symbols,
            self._on_ticks,
            on_gap=self._on_gap,
            on_state=on_state,
            rest=self.rest,
            on_mark=self._on_mark,
        )
        self._mark_sink = on_mark
        self._task: asyncio.Task[None] | None = None
        self._backfill_task: asyncio.Task[BackfillProgress] | None = None
        self._backfills: dict[frozenset[str], asyncio.Task[BackfillProgress]] = {}
        self._closed = False

    async def check_symbols(self) -> str | None:
        """Raises `SymbolError` for a bad symbol; returns a warning if REST is unreachable."""
        return await check_symbols(self.rest, self.symbols)

    async def _on_ticks(self, ticks: list[Tick]) -> None:
        await self.writer.submit_many(ticks)
        if self._extra is not None:
            res = self._extra(ticks)
            if res is not None:
                await res

    async def _on_mark(self, mp: MarkPrice) -> None:
        """The latest mark price of each symbol is stored (one row per symbol), so other
        processes (`quanttui snapshot`) see the live basis and funding rate."""
        await self.writer.execute(UPSERT_MARK, mark_params(mp))
        if self._mark_sink is not None:
            self._mark_sink(mp)

    async def _on_gap(self, sym: str, lo: int, hi: int, status: str, filled: int) -> None:
        t = now_ms()
        await self.writer.execute(
            INSERT_GAP, (sym, lo, hi, t, status, filled, t if status == "filled" else None)
        )

    def start_backfill(
        self,
        timeframe: str,
        window: int,
        on_progress: Callable[[BackfillProgress], None] | None = None,
        *,
        symbols: Sequence[str] | None = None,
    ) -> Backfill:
        """Warm start of `symbols` (default: all) in a background task, replacing one
        still running for the same symbols; see `quanttui.feed.backfill`. Its outcome is
        in the returned object's `progress`."""
        syms = list(symbols) if symbols is not None else list(self.symbols)
        key = frozenset(syms)
        old = self._backfills.pop(key, None)
        if old is not None:
            old.cancel()
        span = span_ms(self.cfg.feed.backfill, timeframe, window)
        bf = Backfill(self.rest, self.writer, syms, timeframe, span, on_progress=on_progress)
        task = asyncio.create_task(bf.run(now_ms()), name="backfill")
        self._backfills[key] = task
        self._backfill_task = task
        return bf

    async def wait_backfill(self) -> BackfillProgress | None:
        if self._backfill_task is None:
            return None
        with contextlib.suppress(asyncio.CancelledError):
            return await asyncio.shield(self._backfill_task)
        return None

    async def subscribe(self, symbols: Sequence[str]) -> None:
        """Add symbols to the open connection (SUBSCRIBE), no reconnect."""
        new = [s for s in symbols if s not in self.symbols]
        self.symbols += new
        await self.feed.subscribe(new)

    async def unsubscribe(self, symbols: Sequence[str]) -> None:
        """Drop symbols from the open connection (UNSUBSCRIBE), no reconnect."""
        self.symbols = [s for s in self.symbols if s not in symbols]
        await self.feed.unsubscribe(list(symbols))

    async def start(self) -> None:
        if self._closed:
            return
        await self.writer.start()
        self._task = asyncio.create_task(self.feed.run(), name="feed")

    async def stop(self) -> None:
        """Stop the feed, then flush and close the writer: nothing received is lost.
        Safe to call more than once, and before `start`."""
        if self._closed:
            return
        self._closed = True
        for task in self._backfills.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.feed.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.writer.close()
        await self.rest.close()
