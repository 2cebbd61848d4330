"""`quanttui scan` as a subprocess against the fake exchange serving a 69-symbol universe
(64 USDT perpetuals, one of them listed six hours ago, plus five that must never be
picked): universe choice, the kline fetch within the weight budget, the second scan that
fetches only what is missing, bad input, and the JSON and CSV outputs."""

from __future__ import annotations

import asyncio
import csv
import math
import sqlite3
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from quanttui.analytics.scan import scan_pairs
from quanttui.scan_report import COLUMNS
from tests.fakes.exchange import FakeExchange, premium_row, scan_universe
from tests.helpers import run_cli, spawn

MINUTE = 60_000
DAY = 1440 * MINUTE


def fake(**kw: object) -> FakeExchange:
    status, infos, volumes, tape = scan_universe(64)
    return FakeExchange([], symbols=status, infos=infos, volumes=volumes, tape=tape, **kw)


async def scan(ex: FakeExchange, db: Path, *args: str) -> tuple[int, str, str]:
    proc = await spawn("scan", *args, "--db", str(db), "--rest-url", ex.rest_base)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


def part_files(root: Path) -> list[Path]:
    return list(root.rglob("*.part"))


def kline_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT symbol, count(*) FROM klines GROUP BY symbol").fetchall())


async def test_60_symbols_from_an_empty_db_within_the_weight_budget_then_only_new_minutes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "scan.db"
    # a 300-weight budget per 2 s window: the scan needs 641 (ticker 40, exchangeInfo 1,
    # 60 klines requests of limit 1440 at weight 10), so it must wait for windows twice
    async with fake(weight_limit=300, weight_window_s=2) as ex:
        t0 = int(time.time() * 1000)
        rc, out, err = await scan(ex, db, "--top", "60", "--json")
        assert rc == 0, err
        assert ex.weight_429 == 0
        assert max(ex.weight_used.values()) <= 300
        assert "weight waits" in err
        doc = orjson.loads(out)
        want = [f"S{k:02d}USDT" for k in range(60)]  # by 24 h volume; never the others
        assert doc["symbols"] == want
        assert doc["bars"] == 1440 and doc["tests"] == 60 * 59 == len(doc["pairs"])
        end1 = int(np.datetime64(doc["end"].rstrip("Z"), "ms").astype(np.int64))
        assert end1 <= t0 + MINUTE
        counts = kline_counts(db)
        assert set(counts) == set(want) and set(counts.values()) == {1440}
        with sqlite3.connect(db) as c:  # the minute still open is never stored
            assert c.execute("SELECT max(close_ms) FROM klines").fetchone()[0] < end1
        first_requests = len(ex.kline_requests)
        assert first_requests == 60

        # drop the last 30 minutes of five symbols: a second scan fetches exactly those,
        # plus whatever minutes have closed since (for every symbol), and nothing older
        with sqlite3.connect(db) as c:
            c.execute(
                "DELETE FROM klines WHERE symbol IN ('S00USDT','S01USDT','S02USDT','S03USDT',"
                "'S04USDT') AND open_ms >= ?",
                (end1 - 30 * MINUTE,),
            )
        rc, out, err = await scan(ex, db, "--top", "60", "--json")
        assert rc == 0, err
        doc2 = orjson.loads(out)
        end2 = int(np.datetime64(doc2["end"].rstrip("Z"), "ms").astype(np.int64))
        new = (end2 - end1) // MINUTE
        again = ex.kline_requests[first_requests:]
        assert len(again) == 5 + (55 if new else 0)
        for q in again:
            lo = end1 - 30 * MINUTE if q["symbol"] < "S05USDT" else end1
            assert int(q["startTime"]) == lo and int(q["endTime"]) == end2 - 1
            assert int(q["limit"]) == (end2 - lo) // MINUTE
        counts = kline_counts(db)
        assert set(counts.values()) == {1440 + new}
        assert f"{5 * 30 + 60 * new:,} new rows" in err
        assert ex.weight_429 == 0


async def test_named_symbols_skip_unknown_non_trading_and_short_history(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    async with fake() as ex:
        rc, out, err = await scan(
            ex, db, "S00USDT", "S01USDT", "FOOUSDT", "OLD1USDT", "S63USDT", "S05USDT", "--json"
        )
        assert rc == 0, err
        doc = orjson.loads(out)
        assert doc["symbols"] == ["S00USDT", "S01USDT", "S05USDT"]
        skipped = {d["symbol"]: d["reason"] for d in doc["skipped"]}
        assert skipped["FOOUSDT"] == "unknown symbol"
        assert skipped["OLD1USDT"] == "not trading (status SETTLING)"
        assert skipped["S63USDT"].startswith("too little history: ")
        assert "of 1,440 minutes" in skipped["S63USDT"]
        for s in ("FOOUSDT", "OLD1USDT", "S63USDT"):
            assert f"quanttui: warning: skipping {s}: " in err
        assert "Traceback" not in err

        rc, out, err = await scan(ex, db, "S00USDT", "FOOUSDT", "DEADUSDT", "--json")
        assert rc == 2 and out == ""
        assert err.strip().splitlines()[-1].startswith("quanttui: error: fewer than 2 symbols")


async def test_15m_bars_are_resampled_from_1m_and_the_numbers_are_the_scan_of_them(
    tmp_path: Path,
) -> None:
    db = tmp_path / "r.db"
    async with fake() as ex:
        syms = ["S00USDT", "S01USDT", "S02USDT", "S07USDT"]
        rc, out, err = await scan(ex, db, *syms, "--timeframe", "15m", "--json", "--adf-lags", "2")
        assert rc == 0, err
    doc = orjson.loads(out)
    assert doc["bars"] == 96 and doc["timeframe"] == "15m" and doc["adf_lags"] == 2
    start = int(np.datetime64(doc["start"].rstrip("Z"), "ms").astype(np.int64))
    closes = []
    with sqlite3.connect(db) as c:
        for s in syms:  # the close of each bucket's last minute, read independently
            rows = c.execute(
                "SELECT open_ms, close FROM klines WHERE symbol = ? AND open_ms >= ? "
                "AND (open_ms / 60000) % 15 = 14 ORDER BY open_ms LIMIT 96",
                (s, start),
            ).fetchall()
            assert rows[0][0] == start + 14 * MINUTE
            closes.append([r[1] for r in rows])
    res = scan_pairs(np.log(np.array(closes).T), syms, adf_lags=2)
    for row in doc["pairs"]:
        i, j = syms.index(row["y"]), syms.index(row["x"])
        assert row["adf_stat"] == pytest.approx(res.tstat[i, j], rel=1e-12)
        assert row["qvalue"] == pytest.approx(res.qvalue[i, j], rel=1e-9)
        assert row["half_life_min"] == pytest.approx(res.half_life[i, j] * 15, rel=1e-9)
    top2 = {(r["y"], r["x"]) for r in doc["pairs"][:2]}
    assert top2 == {("S00USDT", "S01USDT"), ("S01USDT", "S00USDT")}  # the cointegrated pair


async def test_out_writes_a_plain_csv_and_an_unwritable_dir_leaves_nothing(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    out_dir = tmp_path / "csv"
    async with fake() as ex:
        rc, out, err = await scan(ex, db, "--top", "6", "--out", str(out_dir))
        assert rc == 0, err
        assert out == ""
        files = list(out_dir.glob("scan_1m_*_ranking.csv"))
        assert len(files) == 1 and str(files[0]) in err
        with files[0].open() as fh:
            rows = list(csv.reader(fh))
        assert tuple(rows[0]) == COLUMNS
        assert len(rows) == 1 + 30
        for r in rows[1:]:
            assert r[1].endswith("USDT") and r[2].endswith("USDT")
            for cell in (r[0], *r[3:]):
                assert cell == "" or math.isfinite(float(cell))
        assert [int(r[0]) for r in rows[1:]] == list(range(1, 31))
        q = [float(r[3]) for r in rows[1:]]
        assert q == sorted(q)

        blocked = tmp_path / "file"
        blocked.write_text("not a dir")
        rc, out, err = await scan(ex, db, "--top", "6", "--out", str(blocked / "sub"))
        assert rc == 1
        assert err.strip().splitlines()[-1].startswith("quanttui: error: cannot create export dir")
        assert not part_files(tmp_path)


RATES = {"S00USDT": "0.00010000", "S01USDT": "-0.00025000", "S02USDT": "0.00030000"}
RATES |= {"S03USDT": "0.00005000"}  # S04USDT: none served


async def test_carry_column_from_the_rates_served(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    out_dir = tmp_path / "csv"
    now = int(time.time() * 1000)
    premium = [premium_row(s, r, now_ms=now) for s, r in RATES.items()]
    premium.append(premium_row("BTCUSDT_260327", "", now_ms=now))  # delivery: no funding
    info = [{"symbol": "S02USDT", "fundingIntervalHours": 4}]
    syms = ["S00USDT", "S01USDT", "S02USDT", "S03USDT", "S04USDT"]
    async with fake(premium_index=premium, funding_info=info) as ex:
        rc, out, err = await scan(ex, db, *syms, "--json", "--out", str(out_dir))
        assert rc == 0, err
        assert "funding" not in err
    doc = orjson.loads(out)
    assert doc["symbols"] == syms
    interval = {"S02USDT": 4}
    per_day = {s: float(r) * 24 / interval.get(s, 8) for s, r in RATES.items()}
    defined = 0
    for row in doc["pairs"]:
        y, x, b, z = row["y"], row["x"], row["beta"], row["zscore"]
        if "S04USDT" in (y, x) or z is None or z == 0:
            assert row["carry_bps_day"] is None, row
            continue
        # log hedge: per 1 of Y notional, b of X notional; z > 0 shorts Y and longs X.
        # Each leg receives -q * r * 24/I per unit notional; gross 1 + |b|.
        qy, qx = (-1.0, b) if z > 0 else (1.0, -b)
        flow = -qy * per_day[y] - qx * per_day[x]
        assert abs(row["carry_bps_day"] - 1e4 * flow / (1 + abs(b))) < 1e-9, row
        defined += 1
    assert defined == 4 * 3
    (path,) = out_dir.glob("scan_1m_*_ranking.csv")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(COLUMNS) and "carry_bps_day" in COLUMNS
    by_pair = {(r["y"], r["x"]): r["carry_bps_day"] for r in rows}
    for row in doc["pairs"]:
        cell = by_pair[(row["y"], row["x"])]
        assert (cell == "") == (row["carry_bps_day"] is None)
        if cell:
            assert float(cell) == row["carry_bps_day"]
    with sqlite3.connect(db) as c:  # stored as the symbols' latest mark-price updates
        stored = dict(c.execute("SELECT symbol, funding_rate FROM mark_prices").fetchall())
    assert stored == {s: float(r) for s, r in RATES.items()}


async def test_scan_without_premium_index_warns_and_leaves_carry_empty(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    async with fake() as ex:
        ex.premium_index = {"not": "a list"}  # type: ignore[assignment]
        rc, out, err = await scan(ex, db, "S00USDT", "S01USDT", "--json")
    assert rc == 0, err
    assert "quanttui: warning: funding rates not fetched" in err
    doc = orjson.loads(out)
    assert [r["carry_bps_day"] for r in doc["pairs"]] == [None, None]
    assert all(r["zscore"] is not None for r in doc["pairs"])


def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "u.db")
    cases = [
        (["BTCUSDT"], "at least 2 symbols"),
        (["BTCUSDT", "ETHUSDT", "--top", "5"], "not both"),
        (["BTCUSDT", "BTCUSDT"], "once"),
        (["--top", "1"], "--top must be between 2 and 1000"),
        (["--adf-lags", "30"], "--adf-lags must be between 0 and 20"),
        (["--lookback", "1w"], "invalid lookback"),
        (["--timeframe", "1h"], "invalid choice"),
        (["--timeframe", "15m", "--lookback", "2h"], "needs at least 32"),
        (["bad-symbol!", "ETHUSDT"], "invalid symbol"),
    ]
    for args, needle in cases:
        rc, out, err = run_cli("scan", *args, "--db", db, "--rest-url", "http://127.0.0.1:9")
        assert rc == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("quanttui: error: ") and needle in lines[0]


async def test_offline_named_symbols_scan_what_is_stored_but_top_needs_the_exchange(
    tmp_path: Path,
) -> None:
    db = tmp_path / "off.db"
    async with fake() as ex:
        rc, _, err = await scan(ex, db, "S00USDT", "S01USDT", "S02USDT", "--json")
        assert rc == 0, err
    dead = "http://127.0.0.1:9"
    rc, out, err = run_cli(
        "scan", "S00USDT", "S01USDT", "S02USDT", "--json", "--db", str(db), "--rest-url", dead
    )
    assert rc == 0, err
    assert "scanning stored klines" in err
    assert len(orjson.loads(out)["pairs"]) == 6
    rc, out, err = run_cli("scan", "--top", "5", "--json", "--db", str(db), "--rest-url", dead)
    assert rc == 1 and out == ""
    assert err.strip().splitlines()[-1].startswith("quanttui: error: cannot pick the top 5")
