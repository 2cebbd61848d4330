"""Funding history over REST: settled rates and per-symbol intervals, for the warm start.

Protocol facts this module relies on (Binance USD-M, 2026; "Get Funding Rate History" and
"Get Funding Rate Info" in the USD-M market-data REST docs):

* ``GET /fapi/v1/fundingRate?symbol=S&startTime=&endTime=&limit=1000`` answers the
  settlements in ``[startTime, endTime]``, oldest first, at most ``limit`` (max 1000)::

      [{"symbol": "BTCUSDT", "fundingTime": 1704067200000, "fundingRate": "0.00037409",
        "markPrice": "42313.90000000"}, ...]

  ``markPrice`` is ``""`` for old settlements. ``fundingTime`` is the settlement time,
  usually on the hour, sometimes a few ms after it. Pages continue from the last
  ``fundingTime + 1``. The endpoint shares a 500 requests / 5 min / IP limit with
  fundingInfo; one page covers 333 days of 8-hourly settlements, so a warm start needs
  one request per symbol.
* ``GET /fapi/v1/fundingInfo`` lists only the symbols whose cap, floor or interval was
  adjusted::

      [{"symbol": "BLZUSDT", "adjustedFundingRateCap": "0.02500000",
        "adjustedFundingRateFloor": "-0.02500000", "fundingIntervalHours": 8,
        "disclaimer": false}]

  A symbol it does not list settles every `DEFAULT_FUNDING_INTERVAL_H` (8 h, at 00:00, 08:00
  and 16:00 UTC); others settle every 4 h or 1 h, so a hard-coded 8 h is wrong.

* ``GET /fapi/v1/premiumIndex`` (no symbol: every symbol, weight 10) answers what the
  ``markPrice`` stream says, for all symbols in one request::

      [{"symbol": "BTCUSDT", "markPrice": "11793.63104562", "indexPrice":
        "11781.80495970", "estimatedSettlePrice": "11781.16138815", "lastFundingRate":
        "0.00038246", "interestRate": "0.00010000", "nextFundingTime": 1597392000000,
        "time": 1597370495002}]

  Despite its name, ``lastFundingRate`` is the rate that will settle at
  ``nextFundingTime`` (the stream's ``r``). Delivery contracts have ``""`` there and
  ``nextFundingTime`` 0; they are skipped. The scanner stores these rows as the symbols'
  latest mark-price updates, where its carry column reads the rates.

Rows are validated by type; a bad row is skipped and counted, never stored. An answer
that is not a list is a `RestError`, and network trouble is `RestUnavailable`, both for
the caller (the warm start) to report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from quanttui.feed.binance import BinanceRest, FrameError, RestError, now_ms, parse_mark_price
from quanttui.model import MarkPrice
from quanttui.store.writer import UPSERT_FUNDING, UPSERT_INTERVAL, UPSERT_MARK, TickWriter

log = logging.getLogger(__name__)

FUNDING_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class FundingRow:
    """One settlement: ``rate`` is a fraction (0.0001 = 0.01%); ``mark_price`` is None
    where the source does not give it."""

    symbol: str
    funding_ms: int
    rate: float
    mark_price: float | None

    def params(self) -> tuple[str, int, float, float | None]:
        return (self.symbol, self.funding_ms, self.rate, self.mark_price)


def mark_params(mp: MarkPrice) -> tuple[str, int, float, float, float, int]:
    """`UPSERT_MARK` parameters of one update."""
    return (mp.symbol, mp.event_ms, mp.mark, mp.index, mp.rate, mp.next_funding_ms)


def _rate(v: object) -> float:
    if type(v) is not str:
        raise ValueError("fundingRate must be a decimal string")
    x = float(v)
    if not math.isfinite(x) or abs(x) >= 1:
        raise ValueError(f"fundingRate out of range: {v!r}")
    return x


def _mark(v: object) -> float | None:
    if v is None or v == "":
        return None
    if type(v) is not str:
        raise ValueError("markPrice must be a decimal string")
    x = float(v)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"markPrice must be positive: {v!r}")
    return x


def parse_funding_row(row: object, symbol: str) -> FundingRow:
    """One ``/fapi/v1/fundingRate`` row for `symbol`; raises `ValueError` if malformed
    (not an object, another symbol, a non-integer time, a rate that is not a decimal
    string or is 100% or more, a non-positive mark price)."""
    if not isinstance(row, dict):
        raise ValueError("row is not an object")
    if row.get("symbol", symbol) != symbol:
        raise ValueError(f"row for {row.get('symbol')!r}, asked for {symbol}")
    t = row.get("fundingTime")
    if type(t) is not int or t <= 0:
        raise ValueError("fundingTime must be a positive integer")
    return FundingRow(symbol, t, _rate(row.get("fundingRate")), _mark(row.get("markPrice")))


def parse_funding_info(body: object) -> tuple[dict[str, int], int]:
    """``/fapi/v1/fundingInfo`` to ``({symbol: interval hours}, bad rows)``; raises
    `RestError` when the answer is not a list."""
    if not isinstance(body, list):
        raise RestError(200, None, "fundingInfo is not a list")
    out: dict[str, int] = {}
    bad = 0
    for row in body:
        sym = row.get("symbol") if isinstance(row, dict) else None
        hours = row.get("fundingIntervalHours") if isinstance(row, dict) else None
        if (
            type(sym) is not str
            or not sym.isalnum()
            or type(hours) is not int
            or not 0 < hours <= 24
        ):
            bad += 1
            continue
        out[sym.upper()] = hours
    return out, bad


def parse_premium_index(body: object) -> tuple[list[MarkPrice], int]:
    """``/fapi/v1/premiumIndex`` (the list form) to ``(updates, bad rows)``: each row
    validated as a ``markPriceUpdate`` with the same rules (`parse_mark_price`). Rows
    without a funding rate (delivery contracts) are dropped and not counted as bad.
    Raises `RestError` when the answer is not a list."""
    if not isinstance(body, list):
        raise RestError(200, None, "premiumIndex is not a list")
    out: list[MarkPrice] = []
    bad = 0
    for row in body:
        if isinstance(row, dict) and row.get("lastFundingRate") == "":
            continue
        try:
            if not isinstance(row, dict):
                raise FrameError("not an object")
            out.append(
                parse_mark_price(
                    {
                        "e": "markPriceUpdate",
                        "E": row.get("time"),
                        "s": row.get("symbol"),
                        "p": row.get("markPrice"),
                        "i": row.get("indexPrice"),
                        "r": row.get("lastFundingRate"),
                        "T": row.get("nextFundingTime"),
                    }
                )
            )
        except FrameError as exc:
            bad += 1
            log.warning("skipped premiumIndex row (%s): %.200r", exc, row)
    return out, bad


@dataclass
class FundingFetch:
    """What one `backfill_funding` did: settlements fetched and written (an upsert, so a
    second run rewrites nothing), rows skipped as malformed, requests made, and the
    intervals fundingInfo listed."""

    rows: int = 0
    skipped: int = 0
    requests: int = 0
    intervals: dict[str, int] = field(default_factory=dict)
    per_symbol: dict[str, int] = field(default_factory=dict)


async def fetch_funding_rates(
    rest: BinanceRest, symbol: str, start_ms: int, end_ms: int, stats: FundingFetch | None = None
) -> list[FundingRow]:
    """Every settlement of `symbol` in ``[start_ms, end_ms]``, paged by ``startTime``."""
    stats = stats if stats is not None else FundingFetch()
    out: list[FundingRow] = []
    start = start_ms
    while start <= end_ms:
        body = await rest.get(
            "/fapi/v1/fundingRate",
            {"symbol": symbol, "startTime": start, "endTime": end_ms, "limit": FUNDING_LIMIT},
        )
        stats.requests += 1
        if not isinstance(body, list):
            raise RestError(200, None, "fundingRate is not a list")
        last = start - 1
        for row in body:
            try:
                r = parse_funding_row(row, symbol)
            except ValueError as exc:
                stats.skipped += 1
                log.warning("skipped fundingRate row for %s (%s): %.200r", symbol, exc, row)
                t = row.get("fundingTime") if isinstance(row, dict) else None
                if type(t) is int:
                    last = max(last, t)
                continue
            last = max(last, r.funding_ms)
            if start_ms <= r.funding_ms <= end_ms:
                out.append(r)
        if len(body) < FUNDING_LIMIT or last < start:
            break
        start = last + 1
    return out


async def fetch_funding_info(
    rest: BinanceRest, stats: FundingFetch | None = None
) -> dict[str, int]:
    """The intervals ``/fapi/v1/fundingInfo`` lists (symbols not listed: 8 h)."""
    body = await rest.get("/fapi/v1/fundingInfo")
    intervals, bad = parse_funding_info(body)
    if stats is not None:
        stats.requests += 1
        stats.skipped += bad
    return intervals


async def refresh_rates(
    rest: BinanceRest, writer: TickWriter, symbols: Sequence[str]
) -> FundingFetch:
    """The scanner's funding: every symbol's current rate from one ``premiumIndex``
    request, stored for `symbols` as their latest mark-price updates (an update never
    replaces a newer one), and the intervals ``fundingInfo`` lists; then flush. `rows`
    counts the symbols with a rate. Raises `RestUnavailable`/`RestError`."""
    stats = FundingFetch()
    stats.intervals = await fetch_funding_info(rest, stats)
    body = await rest.get("/fapi/v1/premiumIndex")
    stats.requests += 1
    marks, bad = parse_premium_index(body)
    stats.skipped += bad
    want = set(symbols)
    keep = [m for m in marks if m.symbol in want]
    t = now_ms()
    if stats.intervals:
        await writer.execute(
            UPSERT_INTERVAL, [(s, h, t) for s, h in sorted(stats.intervals.items())], many=True
        )
    if keep:
        await writer.execute(UPSERT_MARK, [mark_params(m) for m in keep], many=True)
    stats.rows = len(keep)
    await writer.flush()
    return stats


async def backfill_funding(
    rest: BinanceRest,
    writer: TickWriter,
    symbols: Sequence[str],
    start_ms: int,
    end_ms: int,
) -> FundingFetch:
    """Warm start of funding: store every listed interval and the settlements of
    `symbols` in ``[start_ms, end_ms]`` through the single writer, then flush.

    Raises `RestUnavailable`/`RestError` as `BinanceRest.get` does; rows already queued
    stay queued (they are complete settlements)."""
    stats = FundingFetch()
    stats.intervals = await fetch_funding_info(rest, stats)
    if stats.intervals:
        t = now_ms()
        await writer.execute(
            UPSERT_INTERVAL, [(s, h, t) for s, h in sorted(stats.intervals.items())], many=True
        )
    for sym in symbols:
        rows = await fetch_funding_rates(rest, sym, start_ms, end_ms, stats)
        if rows:
            await writer.execute(UPSERT_FUNDING, [r.params() for r in rows], many=True)
        stats.rows += len(rows)
        stats.per_symbol[sym] = len(rows)
    await writer.flush()
    return stats


async def store_settlement(
    rest: BinanceRest, writer: TickWriter, symbol: str, funding_ms: int
) -> int:
    """Keep ``funding`` current live: fetch the settlement of `symbol` at `funding_ms`
    (the time `FundingState.update` returned when ``T`` moved on; a minute either side,
    for the ms Binance's ``fundingTime`` may lag the hour) and store it. Returns the rows
    stored: 0 when the exchange has not published it yet (call again a little later).
    Raises `RestUnavailable`/`RestError`."""
    rows = await fetch_funding_rates(rest, symbol, funding_ms - 60_000, funding_ms + 60_000)
    if rows:
        await writer.execute(UPSERT_FUNDING, [r.params() for r in rows], many=True)
    return len(rows)
