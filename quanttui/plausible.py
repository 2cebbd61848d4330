"""When a trade could have happened: one rule for every way trades come in.

A trade time is taken from outside (a websocket frame, a REST reply, an archive file, a
recording) and decides which bar a trade lands in. One absurd time is enough to wreck a
pair: a trade stamped 50 years ahead opens a bar in 2076, after which every real trade
is "late" and no bar closes again. So every source holds trade times to the same rule,
here, and rejects (counts, never stores) a time that

* is more than `FUTURE_TOLERANCE_MS` ahead of the local clock (the exchange's trade time
  ``T`` is its matching-engine time; a minute covers any honest clock skew and network
  delay, while a machine whose clock is more than a minute slow would reject every live
  trade, which the malformed counter then shows as ``T in the future``), or
* is before the symbol could have traded: before Binance USD-M futures opened
  (`FUTURES_LAUNCH_MS`, 2019-09-01 UTC; the first contract, BTCUSDT, listed that month),
  or before the symbol's ``onboardDate`` from exchangeInfo when that is known.

The read side applies the upper bound too (`latest_ms`), so a database that already
holds such rows still shows live bars; `quanttui.store.health` quarantines them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from quanttui.model import iso_utc

FUTURE_TOLERANCE_MS = 60_000
FUTURES_LAUNCH_MS = 1_567_296_000_000  # 2019-09-01T00:00:00Z

FUTURE = "T in the future"
BEFORE_LISTING = "T before listing"


def wall_ms() -> int:
    return int(time.time() * 1000)


def latest_ms(now_ms: int | None = None) -> int:
    """The latest plausible trade time at `now_ms` (default: the wall clock)."""
    return (wall_ms() if now_ms is None else now_ms) + FUTURE_TOLERANCE_MS


def earliest_ms(symbol: str, listed: Mapping[str, int] | None = None) -> int:
    """The earliest plausible trade time of `symbol`: its listing time when `listed`
    knows it, never before the futures launch."""
    if listed:
        return max(FUTURES_LAUNCH_MS, listed.get(symbol, FUTURES_LAUNCH_MS))
    return FUTURES_LAUNCH_MS


def time_problem(ts_ms: int, now_ms: int, floor_ms: int = FUTURES_LAUNCH_MS) -> str | None:
    """Why `ts_ms` cannot be a trade time seen at `now_ms` (`FUTURE` or
    `BEFORE_LISTING`), or None when it can."""
    if ts_ms > now_ms + FUTURE_TOLERANCE_MS:
        return FUTURE
    if ts_ms < floor_ms:
        return BEFORE_LISTING
    return None


def describe(ts_ms: int, now_ms: int, floor_ms: int = FUTURES_LAUNCH_MS) -> str | None:
    """`time_problem` as a sentence for a one-line error, or None."""
    problem = time_problem(ts_ms, now_ms, floor_ms)
    if problem is None:
        return None
    when = iso_utc(ts_ms) if -62_135_596_800_000 < ts_ms < 253_402_300_800_000 else f"{ts_ms} ms"
    if problem == FUTURE:
        return (
            f"trade time {when} is more than {FUTURE_TOLERANCE_MS // 1000} s ahead of the "
            f"clock ({iso_utc(now_ms)})"
        )
    return f"trade time {when} is before the market opened ({iso_utc(floor_ms)})"
