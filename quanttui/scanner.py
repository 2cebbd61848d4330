"""The pair scanner as a service, apart from any view: pick the universe, bring its 1m
klines up to date over REST, and compute the ranking from the database.

Two steps with different costs, kept apart so a view can run each where it belongs:
`refresh` is async network I/O (run it on an event loop), `compute` is blocking numpy
and SQLite (run it in a thread). The CLI (`quanttui.modes.scan`) and the scanner screen
both use them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quanttui.analytics.funding import carry_matrix
from quanttui.analytics.scan import ScanResult, min_bars, scan_pairs
from quanttui.feed.binance import BinanceRest, RestError, RestUnavailable
from quanttui.feed.funding import refresh_rates
from quanttui.feed.klines import MAX_STREAMS, KlineStream, KlineSync, SyncProgress, Universe
from quanttui.scan_report import ScanMeta
from quanttui.store.db import StoreError, connect
from quanttui.store.panel import load_close_panel
from quanttui.store.queries import funding_rates_per_day
from quanttui.store.writer import TickWriter

SCAN_TIMEFRAMES: dict[str, int] = {"1m": 60_000, "5m": 300_000, "15m": 900_000}
MAX_LOOKBACK_MS = 30 * 86_400_000
_DURATION = re.compile(r"^(\d+)\s*(m|h|d)$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}


class ScanError(Exception):
    """The scan cannot run; the message says why in one line, `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def parse_lookback(text: str) -> int:
    """A lookback such as ``90m``, ``12h`` or ``1d`` in ms; raises `ValueError`."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise ValueError(f"invalid lookback {text!r}: expected a duration such as 90m, 12h or 1d")
    ms = int(m.group(1)) * _UNIT_MS[m.group(2)]
    if not 0 < ms <= MAX_LOOKBACK_MS:
        raise ValueError(f"invalid lookback {text!r}: must be more than 0 and at most 30d")
    return ms


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """What to scan. Empty `symbols` means the `top` USDT perpetuals by 24 h volume."""

    db_path: Path
    rest_url: str
    symbols: tuple[str, ...] = ()
    top: int = 50
    timeframe: str = "1m"
    lookback_ms: int = 86_400_000
    adf_lags: int = 1
    ws_url: str = "wss://fstream.binance.com/market"

    @property
    def bar_ms(self) -> int:
        return SCAN_TIMEFRAMES[self.timeframe]

    def span(self, now_ms: int) -> tuple[int, int]:
        """``[start, end)``: the lookback up to the last closed bar, aligned to the bar."""
        tf = self.bar_ms
        end = now_ms - now_ms % tf
        start = end - self.lookback_ms
        return start - start % tf, end

    def check(self) -> None:
        """Raise `ScanError` (code 2) when the lookback cannot hold enough bars."""
        need = min_bars(self.adf_lags)
        bars = self.lookback_ms // self.bar_ms
        if bars < need:
            raise ScanError(
                f"a lookback of {self.lookback_ms // 60_000:,} minutes holds {bars} "
                f"{self.timeframe} bars; the scan needs at least {need}",
                2,
            )


@dataclass(frozen=True, slots=True, eq=False)
class ScanOutcome:
    meta: ScanMeta
    result: ScanResult
    logp: np.ndarray | None = None
    """The log closes scanned (bars x `meta.symbols`), for the basket scan."""


async def refresh(
    req: ScanRequest,
    now_ms: int,
    *,
    universe: Universe | None = None,
    on_progress: Callable[[SyncProgress], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Universe:
    """Resolve the universe (unless given), fetch the 1m klines of the span that the
    database lacks, then the universe's current funding rates and intervals (for the
    carry column; `quanttui.feed.funding.refresh_rates`). Unknown and non-trading symbols are skipped with a warning. Without
    the exchange, named symbols are scanned from what is stored (with a warning), while
    `top` raises `ScanError`."""
    warn = on_warning or (lambda _m: None)
    rest = BinanceRest(req.rest_url)
    writer = TickWriter(req.db_path)
    await writer.start()
    try:
        sync = KlineSync(rest, writer, on_progress=on_progress)
        if universe is None:
            try:
                if req.symbols:
                    universe = await sync.check(req.symbols)
                else:
                    universe = await sync.top(req.top)
            except (RestUnavailable, RestError) as exc:
                if not req.symbols:
                    raise ScanError(f"cannot pick the top {req.top} symbols: {exc}") from None
                warn(f"cannot verify symbols or fetch klines ({exc}); scanning stored klines")
                return Universe(req.symbols)
            for sym, why in universe.skipped:
                warn(f"skipping {sym}: {why}")
        start, end = req.span(now_ms)
        try:
            progress = await sync.sync(universe, start, end, now_ms)
        except RestUnavailable as exc:
            warn(f"kline fetch stopped ({exc}); scanning what is stored")
            return universe
        for sym, why in progress.failed.items():
            warn(f"klines of {sym} not fetched: {why}")
        try:
            await refresh_rates(rest, writer, universe.symbols)
        except (RestUnavailable, RestError) as exc:
            warn(f"funding rates not fetched ({exc}); carry from stored rates")
        return universe
    finally:
        await writer.close()
        await rest.close()


def compute(req: ScanRequest, universe: Universe, now_ms: int) -> ScanOutcome:
    """Load the span's closes and the stored funding rates from the database, scan every
    ordered pair and add its carry (`carry_matrix`; blocking: run it in a thread). Symbols with too little history are reported in the outcome's
    ``meta.skipped``; fewer than two symbols left raises `ScanError` (code 2)."""
    start, end = req.span(now_ms)
    symbols = list(universe.symbols)
    if len(symbols) < 2:
        raise ScanError(f"fewer than 2 symbols to scan ({', '.join(symbols) or 'none'})", 2)
    try:
        conn = connect(req.db_path, readonly=True)
    except StoreError as exc:
        raise ScanError(str(exc), 2) from None
    try:
        panel = load_close_panel(conn, symbols, start, end, req.bar_ms)
        rates = funding_rates_per_day(conn, list(panel.symbols), now_ms)
    finally:
        conn.close()
    skipped = (*universe.skipped, *panel.short)
    if len(panel.symbols) < 2:
        reasons = "; ".join(f"{s}: {why}" for s, why in skipped) or "no data"
        raise ScanError(f"fewer than 2 symbols with enough history ({reasons})", 2)
    need = min_bars(req.adf_lags)
    if panel.bars < need:
        raise ScanError(
            f"only {panel.bars} {req.timeframe} bars in common; the scan needs at least {need}",
            2,
        )
    result = scan_pairs(np.log(panel.close), panel.symbols, adf_lags=req.adf_lags)
    result = dataclasses.replace(
        result, carry_bps_day=carry_matrix(result.zscore, result.beta, rates)
    )
    meta = ScanMeta(
        timeframe=req.timeframe,
        bar_ms=req.bar_ms,
        start_ms=int(panel.times[0]),
        end_ms=int(panel.times[-1]) + req.bar_ms,
        bars=panel.bars,
        adf_lags=req.adf_lags,
        symbols=panel.symbols,
        tests=result.tests,
        skipped=tuple(skipped),
    )
    return ScanOutcome(meta, result, np.log(panel.close))


async def live(
    req: ScanRequest,
    universe: Universe,
    on_minute: Callable[[int], object],
    on_state: Callable[[str, str], None] | None = None,
) -> None:
    """Stream the closed 1m klines of the universe's first `MAX_STREAMS` symbols into the
    database until cancelled; `on_minute(close_ms)` once a minute is committed (the
    caller recomputes when that closes a bar of its timeframe)."""
    writer = TickWriter(req.db_path)
    await writer.start()
    try:
        stream = KlineStream(
            req.ws_url, universe.symbols[:MAX_STREAMS], writer, on_minute, on_state=on_state
        )
        await stream.run()
    finally:
        await writer.close()


def run_refresh(req: ScanRequest, now_ms: int, **kw: object) -> Universe:
    """`refresh` on a fresh event loop, for callers outside one."""
    return asyncio.run(refresh(req, now_ms, **kw))  # type: ignore[arg-type]
