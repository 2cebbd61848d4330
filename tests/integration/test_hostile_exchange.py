"""A hostile or broken exchange, against the loopback fake: future-stamped trades, absurd
REST replies, endless Retry-After. Nothing may freeze the analytics, stall the feed or
put an implausible row in the database."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from quanttui.feed.backfill import Backfill, span_ms
from quanttui.feed.binance import (
    BinanceRest,
    RestError,
    RestThrottled,
    RestUnavailable,
    check_symbols,
)
from quanttui.feed.ingest import Ingestion
from quanttui.model import Tick
from quanttui.plausible import BEFORE_LISTING, FUTURE, FUTURE_TOLERANCE_MS
from quanttui.store.writer import TickWriter
from tests.fakes.exchange import FakeExchange, FakeTrade, Faults, synthetic_trades
from tests.helpers import alert_lines, exchange_args, spawn, store_ticks
from tests.integration.test_backfill import pair_klines
from tests.integration.test_feed import cfg_for, stored, wait_for
from tests.integration.test_headless import excursion_trades, run_headless

YEAR_2076 = 3_372_000_000_000
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def now_ms() -> int:
    return int(time.time() * 1000)


def max_ts(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT max(ts_ms) FROM ticks").fetchone()[0]


def stamp_2076(trades: list[FakeTrade], *indexes: int) -> set[tuple[str, int]]:
    for i in indexes:
        trades[i].T = YEAR_2076
        trades[i].keep_T = True
    return {(trades[i].symbol, trades[i].a) for i in indexes}


async def test_future_stamped_trades_are_counted_and_never_stored(tmp_path: Path) -> None:
    trades = synthetic_trades(600)
    future = stamp_2076(trades, 300, 301)
    db = tmp_path / "f.db"
    async with FakeExchange(trades, rate=300, restamp=True) as ex:
        ing = Ingestion(cfg_for(ex, db, backfill="off"), SYMBOLS)
        await ing.start()
        await asyncio.wait_for(ex.done.wait(), 30)
        await wait_for(lambda: ing.feed.stats.ticks >= 598 and ing.feed.stats.gaps_open >= 2)
        await ing.stop()
    stats = ing.feed.stats
    assert stats.malformed[FUTURE] == 2
    assert stats.malformed[f"REST {FUTURE}"] >= 2  # the gap backfill was offered them again
    assert set(stored(db)) == ex.produced_ids() - future
    assert max_ts(db) <= now_ms() + FUTURE_TOLERANCE_MS
    with sqlite3.connect(db) as c:
        gaps = c.execute("SELECT symbol, first_id, last_id FROM gaps WHERE status='open'")
        assert {(s, lo) for s, lo, hi in gaps if lo == hi} == future


def headless_cfg(tmp_path: Path) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[alerts]\ncooldown_s = 0\nhysteresis = 1.0\nbell = false\n")
    return cfg


PRICE_ALERTS = [("BTCUSDT/ETHUSDT", "price_y > 105", "price_y", 110.0, 105.0)] * 2


async def test_headless_bars_keep_closing_after_a_future_stamped_trade(tmp_path: Path) -> None:
    """One aggTrade per leg stamped 50 years ahead, early in the stream: both price
    excursions that follow must still close their bars and fire their alerts."""
    trades = excursion_trades()
    stamp_2076(trades, 10, 11)
    db = tmp_path / "h.db"
    async with FakeExchange(trades, rate=20, restamp=True) as ex:
        code, out, err = await run_headless(
            ex, headless_cfg(tmp_path), db, "--alert", "price_y > 105", "--window", "10"
        )
    assert code == 0, err.decode()
    lines = alert_lines(out)
    assert [(a["pair"], a["rule"], a["metric"], a["value"], a["threshold"]) for a in lines] == (
        PRICE_ALERTS
    )
    assert "malformed frame (T in the future)" in err.decode()
    assert max_ts(db) <= now_ms() + FUTURE_TOLERANCE_MS
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM ticks").fetchone()[0] == 298


def old_rows_and_2076(end_ms: int) -> list[Tick]:
    """Ten old trades per leg an hour back, and one per leg stamped in 2076, as a database
    written before trade times were checked could hold."""
    out = []
    for k in range(10):
        out.append(Tick("BTCUSDT", 1 + k, end_ms - 3_600_000 + k * 1000, 90000.0, 0.01, False))
        out.append(Tick("ETHUSDT", 1 + k, end_ms - 3_600_000 + k * 1000, 100.0, 0.01, False))
    out.append(Tick("BTCUSDT", 50, YEAR_2076, 90000.0, 0.01, False))
    out.append(Tick("ETHUSDT", 50, YEAR_2076, 100.0, 0.01, False))
    return out


async def test_restart_on_a_database_holding_a_2076_trade_shows_live_bars(
    tmp_path: Path,
) -> None:
    db = tmp_path / "h.db"
    store_ticks(db, old_rows_and_2076(now_ms())).close()
    async with FakeExchange(excursion_trades(), rate=20, restamp=True) as ex:
        code, out, err = await run_headless(
            ex, headless_cfg(tmp_path), db, "--alert", "price_y > 105", "--window", "10"
        )
    text = err.decode()
    assert code == 0, text
    lines = alert_lines(out)
    assert [(a["pair"], a["rule"], a["metric"], a["value"], a["threshold"]) for a in lines] == (
        PRICE_ALERTS
    )
    assert "moved 2 rows with impossible times to the quarantine table" in text, text[:800]
    assert max_ts(db) <= now_ms() + FUTURE_TOLERANCE_MS
    with sqlite3.connect(db) as c:
        kept = c.execute("SELECT tbl, reason, row FROM quarantine ORDER BY id").fetchall()
    assert [(t, r, json.loads(row)["ts_ms"]) for t, r, row in kept] == [
        ("ticks", FUTURE, YEAR_2076)
    ] * 2


async def test_a_throttled_rest_endpoint_never_holds_up_the_live_feed(tmp_path: Path) -> None:
    """Every REST call answers 429 with Retry-After: 100000: the start-up check warns, the
    warm start is skipped, and live trades are stored within 30 s."""
    db = tmp_path / "t.db"
    faults = Faults(rest_429=10**9, retry_after="100000")
    async with FakeExchange(synthetic_trades(4000), rate=40, restamp=True, faults=faults) as ex:
        t0 = time.monotonic()
        proc = await spawn("BTCUSDT", "ETHUSDT", "--headless", "--db", str(db), *exchange_args(ex))
        stored_at = None
        while time.monotonic() - t0 < 30:
            await asyncio.sleep(0.25)
            if db.exists() and _count(db) > 0:
                stored_at = time.monotonic() - t0
                break
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert stored_at is not None, text[-800:]
    assert proc.returncode == 0, text
    assert "could not verify symbols against exchangeInfo" in text
    assert "Retry-After 100000 s is beyond the 10 s this client waits" in text
    assert "backfill skipped: 0 rows REST error: HTTP 429" in text
    assert "Traceback" not in text


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute("SELECT count(*) FROM ticks").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


async def test_retry_after_beyond_the_cap_fails_at_once() -> None:
    async with FakeExchange([], faults=Faults(rest_429=1, retry_after="100000")) as ex:
        rest = BinanceRest(ex.rest_base)
        t0 = time.monotonic()
        with pytest.raises(RestThrottled, match="Retry-After 100000 s is beyond the 60 s"):
            await rest.get("/fapi/v1/exchangeInfo")
        assert time.monotonic() - t0 < 2.0
        ex.faults.rest_429, ex.faults.retry_after = 3, "0.4"  # the waits add up
        with pytest.raises(
            RestThrottled,
            match=r"after 0.8 s of waiting, Retry-After 0.4 s is beyond the 1 s this client",
        ):
            await rest.get("/fapi/v1/exchangeInfo", max_wait_s=1.0)
        await rest.close()
    assert rest.throttled == 4


async def run_warm_start(ex: FakeExchange, db: Path, timeframe: str = "1s") -> Backfill:
    writer = TickWriter(db)
    await writer.start()
    rest = BinanceRest(ex.rest_base)
    try:
        bf = Backfill(rest, writer, SYMBOLS, timeframe, span_ms("auto", timeframe, 60))
        await bf.run(now_ms())
    finally:
        await rest.close()
        await writer.close()
    return bf


async def test_warm_start_drops_400000_rows_of_id_1_stamped_1970(tmp_path: Path) -> None:
    body = [{"a": 1, "p": "100.0", "q": "1.0", "f": 1, "l": 1, "T": 1, "m": False}] * 400_000
    db = tmp_path / "w.db"
    async with FakeExchange([], symbols=dict.fromkeys(SYMBOLS, "TRADING")) as ex:
        ex.faults.agg_body = lambda sym, q: body
        bf = await run_warm_start(ex, db)
    p = bf.progress
    assert p.state == "done" and p.rows == 0 and p.fetched == {}
    assert p.dropped == Counter({"beyond limit": 399_000 * 2, BEFORE_LISTING: 1000 * 2})
    assert "800,000 rows of the replies dropped" in p.detail
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM ticks").fetchone()[0] == 0


async def test_warm_start_reports_only_new_rows(tmp_path: Path) -> None:
    """5,000 copies of one plausible trade: one row per symbol is new, and the report says
    2; the second launch finds nothing new and says 0."""
    t = now_ms() - 30_000

    def body(sym: str, q: dict[str, str]) -> list[dict]:
        return [{"a": 1, "p": "100.0", "q": "1.0", "f": 1, "l": 1, "T": t, "m": False}] * 5000

    db = tmp_path / "w.db"
    async with FakeExchange([], symbols=dict.fromkeys(SYMBOLS, "TRADING")) as ex:
        ex.faults.agg_body = body
        first = await run_warm_start(ex, db)
        second = await run_warm_start(ex, db)
    assert first.progress.rows == 2 and first.progress.fetched == dict.fromkeys(SYMBOLS, 1)
    # per symbol: the window page (1 kept, 999 repeats) and the fromId=2 page (all below)
    assert first.progress.dropped == Counter(
        {
            "beyond limit": 4000 * 4,
            "duplicate or out of order": 999 * 2,
            "outside requested ids": 2000,
        }
    )
    assert second.progress.state == "done" and second.progress.rows == 0
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT symbol, trade_id, ts_ms FROM ticks ORDER BY 1").fetchall() == [
            (s, 1, t) for s in SYMBOLS
        ]


async def test_warm_start_skips_bad_kline_rows_and_keeps_good_ones(tmp_path: Path) -> None:
    now = now_ms()
    honest = pair_klines(now, 200)

    def body(sym: str, q: dict[str, str]) -> list:
        st, en = int(q["startTime"]), int(q["endTime"])
        rows = [list(k) for k in honest[sym] if st <= k[0] <= en]
        rows[3][1] = ["not", "a", "price"]
        rows[5][0] = YEAR_2076 - YEAR_2076 % 60_000
        rows[7] = {"open": 1}
        return [rows[0], *rows] + [list(k) for k in honest[sym][:2]]  # a repeat, and old rows

    db = tmp_path / "k.db"
    async with FakeExchange([], klines=honest) as ex:
        ex.faults.klines_body = body
        bf = await run_warm_start(ex, db, "1m")
    p = bf.progress
    need = 2 * 60 + 10
    assert p.state == "done"
    assert p.fetched == dict.fromkeys(SYMBOLS, need - 3)
    assert p.dropped == Counter(
        {
            "bad field type": 2,
            FUTURE: 2,
            "not a 12-field list": 2,
            "duplicate or out of order": 2,
            "outside requested window": 4,
        }
    )
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM klines").fetchone()[0] == 2 * (need - 3)
        assert c.execute("SELECT max(open_ms) FROM klines").fetchone()[0] < now


async def test_weight_header_that_never_resets_ends_the_warm_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def no_wait(s: float) -> None:
        slept.append(s)

    writer = TickWriter(tmp_path / "w.db")
    rest = BinanceRest("http://127.0.0.1:9")
    bf = Backfill(rest, writer, SYMBOLS, "1m", 60_000)
    monkeypatch.setattr("quanttui.feed.backfill.asyncio.sleep", no_wait)
    rest.used_weight = 2400
    await bf._budget(10)  # waits for the next minute once
    assert len(slept) == 1 and rest.used_weight == 0
    rest.used_weight = 999_999  # ... and the server still says it is used up
    with pytest.raises(RestThrottled, match="still 999,999/2400 in a new minute"):
        await bf._budget(10)
    await rest.close()


def info_with(entries: list) -> dict:
    return {"timezone": "UTC", "symbols": entries}


async def test_exchange_info_with_mistyped_entries_does_not_crash(tmp_path: Path) -> None:
    entries = [
        {"symbol": ["BTCUSDT"], "status": "TRADING"},
        "ETHUSDT",
        {"symbol": "ETHUSDT", "status": "TRADING", "onboardDate": 1569398400000},
        {"symbol": "OLDUSDT", "status": ["TRADING"]},
        {"symbol": "NEWUSDT", "status": "TRADING", "onboardDate": YEAR_2076},
    ]
    async with FakeExchange([], faults=Faults(exchange_info_body=info_with(entries))) as ex:
        rest = BinanceRest(ex.rest_base)
        warning = await check_symbols(rest, ["BTCUSDT", "ETHUSDT"])
        assert warning == (
            "could not verify BTCUSDT against exchangeInfo: not listed, and 2 malformed "
            "entries skipped"
        )
        assert await check_symbols(rest, ["ETHUSDT"]) is None
        with pytest.raises(Exception, match=r"OLDUSDT is not trading \(status \['TRADING'\]\)"):
            await check_symbols(rest, ["OLDUSDT"])
        assert rest.listed == {"ETHUSDT": 1569398400000}  # a listing date in 2076 is ignored
        await rest.close()
        ex.faults.exchange_info_body = {"symbols": {"BTCUSDT": 1}}
        rest = BinanceRest(ex.rest_base)
        warning = await check_symbols(rest, ["BTCUSDT"])
        await rest.close()
    assert warning == (
        "could not verify symbols against exchangeInfo: HTTP 200: exchangeInfo without symbols[]"
    )


async def test_record_carries_on_when_exchange_info_is_mistyped(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    entries = [
        {"symbol": ["BTCUSDT"]},
        {"symbol": {"x": 1}},
        {"symbol": "ETHUSDT", "status": "TRADING"},
    ]
    faults = Faults(exchange_info_body=info_with(entries))
    async with FakeExchange(synthetic_trades(400), rate=100, restamp=True, faults=faults) as ex:
        proc = await spawn(
            "record", *SYMBOLS, "--db", str(db), "--backfill", "off", *exchange_args(ex)
        )
        await wait_for(lambda: db.exists() and _count(db) >= 100, 30)
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "quanttui: warning: could not verify BTCUSDT against exchangeInfo" in text
    assert "Traceback" not in text and "TypeError" not in text


async def test_oversized_and_endless_replies_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeExchange(synthetic_trades(10), faults=Faults(history_delay_s=2.0)) as ex:
        rest = BinanceRest(ex.rest_base)
        monkeypatch.setattr("quanttui.feed.binance.MAX_REPLY_BYTES", 50)
        with pytest.raises(RestError, match="bytes refused"):
            await rest.get("/fapi/v1/exchangeInfo")
        monkeypatch.setattr("quanttui.feed.binance.MAX_REPLY_BYTES", 32 * 2**20)
        monkeypatch.setattr("quanttui.feed.binance.REQUEST_DEADLINE_S", 0.3)
        t0 = time.monotonic()
        with pytest.raises(RestUnavailable, match="no complete answer within 0.3 s"):
            await rest.get("/fapi/v1/aggTrades", {"symbol": "BTCUSDT", "fromId": 1})
        assert time.monotonic() - t0 < 1.5
        await rest.close()
