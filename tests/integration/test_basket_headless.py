"""`quanttui A B C --headless` end to end: fake exchange (a real websocket server on
127.0.0.1) -> one connection for the three legs -> basket bars -> Johansen metrics ->
alert rules -> JSON lines, checked against a recompute from the database."""

from __future__ import annotations

import asyncio
import json
import math
import re
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from quanttui.alerts import build_engine
from quanttui.analytics.basket import BasketParams, basket_metrics, run_basket_bars
from quanttui.engine.alertbook import AlertBook
from quanttui.model import BASKET_METRIC_NAMES, Tick, iso_utc, parse_iso_ms
from quanttui.store.queries import load_basket_bars
from tests.fakes.exchange import FakeExchange, FakeTrade, Faults
from tests.helpers import alert_lines, exchange_args, spawn, store_ticks

LEGS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
KEY = "+".join(LEGS)
W = 30
RATE = 20  # trades per second per leg
RULES = ["trace_margin > 0", "rank >= 1"]


def _prices(i: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Two wandering legs and a third that is 0.5 x1 + 2 x2 plus a little noise."""
    x1 = 100 + 3 * math.sin(i / 37) + 0.3 * rng.normal()
    x2 = 50 + 2 * math.sin(i / 23) + 0.2 * rng.normal()
    return x1, x2, 0.5 * x1 + 2 * x2 + 0.05 * rng.normal()


def history_ticks(end_ms: int) -> list[Tick]:
    """90 s of 1s history, 4 trades per leg per second, ending at `end_ms`."""
    rng = np.random.default_rng(1)
    out = []
    n = 90 * 4
    for k in range(n):
        ts = end_ms - (n - k) * 250
        for j, (s, p) in enumerate(zip(LEGS, _prices(k - n, rng), strict=True)):
            out.append(Tick(s, 1 + k, ts, round(p, 4), 0.01, j == 1))
    return out


def live_trades() -> list[FakeTrade]:
    """15 s: calm 5 s, the third leg 3 % up for 3 s, calm 7 s."""
    rng = np.random.default_rng(2)
    out = []
    n = 15 * RATE
    for i in range(n):
        t = i * 1000 // RATE
        shock = 1.03 if 5 * RATE <= i < 8 * RATE else 1.0
        p = _prices(i, rng)
        for j, s in enumerate(LEGS):
            price = p[j] * (shock if j == 2 else 1.0)
            out.append(FakeTrade(s, 1000 + i, f"{price:.4f}", "0.01", t, False))
    return out


async def test_basket_headless_alerts_equal_recompute(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[feed]\nbackfill = "off"\n[alerts]\ncooldown_s = 0\nhysteresis = 0.25\nbell = false\n'
    )
    db = tmp_path / "h.db"
    store_ticks(db, history_ticks(int(time.time() * 1000) - 500)).close()
    async with FakeExchange(live_trades(), shift=True) as ex:
        proc = await spawn(
            *LEGS,
            "--headless",
            "--window",
            str(W),
            *(a for r in RULES for a in ("--alert", r)),
            "--config",
            str(cfg),
            "--db",
            str(db),
            *exchange_args(ex),
        )
        await asyncio.wait_for(ex.done.wait(), 60)
        await asyncio.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        connections = ex.connections
    text = err.decode()
    assert proc.returncode == 0, text
    assert f"headless {KEY} 1s W={W} johansen" in text
    assert connections == 1  # one connection carries the three legs
    live_from = parse_iso_ms(re.search(r"live from (\S+)", text).group(1))
    lines = alert_lines(out)
    snaps = [json.loads(x)["snapshot"] for x in out.decode().splitlines() if '"snapshot"' in x]

    params = BasketParams(LEGS, "1s", W)
    last_ms = parse_iso_ms(snaps[0]["time"])
    with sqlite3.connect(db) as conn:
        # up to the last bar the engine closed (by the clock, after the last trade: those
        # bars repeat the closes, flagged filled)
        bars = load_basket_bars(
            conn, list(LEGS), "1s", end_ms=last_ms + 1000, max_gap_bars=params.max_gap_bars
        )
        stored = conn.execute("SELECT ts_ms, pair, rule, value FROM alerts ORDER BY id").fetchall()
    eng = params.analytics(history=len(bars))
    run_basket_bars(eng, bars)

    def recompute(first_ms: int) -> list:
        """The rules over the database's bars from `first_ms` to the last live bar."""
        rules = build_engine(
            KEY,
            RULES,
            entry_z=2.0,
            exit_z=0.0,
            hysteresis=0.25,
            cooldown_s=0,
            names=BASKET_METRIC_NAMES,
        )
        book = AlertBook(rules, 10_000)
        out = []
        for n, m in enumerate(eng.history, 1):
            if first_ms <= m.ts_ms <= last_ms:
                out += book.on_bar(m.ts_ms, basket_metrics(m, n, "1s"), defer=False)
        return out

    got = [(a["time"], a["pair"], a["rule"], a["metric"], a["threshold"]) for a in lines]
    # The rules start at the first bar that closes after the start-up load (bars that
    # close while it runs are history, as for a pair): a bar at or after `live from`.
    starts = [int(t) for t in bars.ts_ms if live_from <= t <= live_from + 10_000]
    matches = [
        e
        for e in map(recompute, starts)
        if got == [(iso_utc(a.ts_ms), KEY, a.rule, a.metric, a.threshold) for a in e]
    ]
    assert matches, (got, live_from, text, [recompute(t)[:3] for t in starts[:3]])
    expected = matches[0]
    assert expected
    for a, e in zip(lines, expected, strict=True):
        assert a["value"] == pytest.approx(e.value, rel=1e-9)
    assert [(r[0], r[1], r[2]) for r in stored] == [(a.ts_ms, KEY, a.rule) for a in expected]

    (snap,) = snaps
    assert snap["pair"] == KEY and snap["basket"] == KEY
    times = [iso_utc(m.ts_ms) for m in eng.history]
    assert snap["time"] in times, (snap["time"], times[-5:], len(times))
    last = eng.history[times.index(snap["time"])]
    assert snap["zscore"] == pytest.approx(last.zscore, rel=1e-9)
    assert [snap["weights"][s] for s in LEGS] == pytest.approx(last.weights, rel=1e-9)
    assert snap["trace_stat"] == pytest.approx(list(last.trace), rel=1e-9)


async def test_basket_bad_input_exits_2(tmp_path: Path) -> None:
    for args, needle in (
        ([*LEGS, "--alert", "corr < 0.5"], "unknown metric 'corr'"),
        ([*LEGS, "ETHUSDT"], "given once"),
        ([*LEGS, "--window", "12"], "window must be"),
    ):
        proc = await spawn(*args, "--headless", "--db", str(tmp_path / "x.db"))
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 2, err
        assert len(err.decode().strip().splitlines()) == 1 and needle in err.decode()
        assert b"Traceback" not in err


def stall_trades(steps: int) -> list[FakeTrade]:
    """`steps` rounds of one trade per leg (restamped by the fake as it sends them)."""
    rng = np.random.default_rng(4)
    out = []
    for i in range(steps):
        for j, (s, p) in enumerate(zip(LEGS, _prices(i, rng), strict=True)):
            out.append(FakeTrade(s, 5000 + i, f"{p:.4f}", "0.01", 0, j == 0))
    return out


async def test_basket_recomputes_after_a_stall_and_alerts_agree_with_the_database(
    tmp_path: Path,
) -> None:
    """A stall longer than `stale_after_s`: the trades missed meanwhile come over REST
    after the clock closed their bars, the basket is recomputed from the database, and
    the alerts that stand (printed, less those retracted) are the rules over the stored
    bars."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[feed]\nstale_after_s = 1.5\nbackfill = "off"\n'
        "[alerts]\ncooldown_s = 0\nhysteresis = 0.25\nbell = false\n"
    )
    db = tmp_path / "h.db"
    store_ticks(db, history_ticks(int(time.time() * 1000) - 500)).close()
    rules = ["abs(zscore) >= 1.5", "trace_margin > 5", "max_eig_margin < 0"]
    faults = Faults(stall_after=300)
    trades = stall_trades(300)
    async with FakeExchange(trades, rate=45, restamp=True, faults=faults) as ex:
        proc = await spawn(
            *LEGS,
            "--headless",
            "--window",
            str(W),
            *(a for r in rules for a in ("--alert", r)),
            "--config",
            str(cfg),
            "--db",
            str(db),
            *exchange_args(ex),
        )
        await asyncio.wait_for(ex.done.wait(), 90)
        await asyncio.sleep(4.0)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        stalls = ex.stalls
    text = err.decode()
    assert proc.returncode == 0, text
    assert stalls == 1
    assert "recomputed from the database (1)" in text, text[-800:]
    live_from = parse_iso_ms(re.search(r"live from (\S+)", text).group(1))
    rows = [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    (snap,) = [r["snapshot"] for r in rows if "snapshot" in r]
    printed = [r for r in rows if "rule" in r]
    gone = [r["retract"] for r in rows if "retract" in r]
    standing = []
    for a in printed:
        key = (a["time"], a["rule"], a["value"])
        match = next((g for g in gone if (g["time"], g["rule"], g["value"]) == key), None)
        if match is not None:
            gone.remove(match)
        else:
            standing.append(a)
    assert not gone
    standing.sort(key=lambda a: a["time"])

    params = BasketParams(LEGS, "1s", W)
    last_ms = parse_iso_ms(snap["time"])
    with sqlite3.connect(db) as conn:
        n = conn.execute("SELECT count(*) FROM ticks").fetchone()[0]
        bars = load_basket_bars(
            conn, list(LEGS), "1s", end_ms=last_ms + 1000, max_gap_bars=params.max_gap_bars
        )
    assert n == len(history_ticks(0)) + len(trades)
    eng = params.analytics(history=len(bars))
    run_basket_bars(eng, bars)

    def recompute(first_ms: int) -> list[tuple[str, str, float]]:
        book = AlertBook(
            build_engine(
                KEY,
                ["abs(zscore) >= 2", *rules],
                entry_z=2.0,
                exit_z=0.0,
                hysteresis=0.25,
                cooldown_s=0,
                default=False,
                names=BASKET_METRIC_NAMES,
            ),
            10_000,
        )
        got = []
        for k, m in enumerate(eng.history, 1):
            if first_ms <= m.ts_ms <= last_ms:
                got += book.on_bar(m.ts_ms, basket_metrics(m, k, "1s"), defer=False)
        return sorted((iso_utc(a.ts_ms), a.rule, a.value) for a in got)

    have = sorted((a["time"], a["rule"], a["value"]) for a in standing)
    starts = [int(t) for t in bars.ts_ms if live_from <= t <= live_from + 10_000]
    candidates = [recompute(s) for s in starts]
    assert have, text[-400:]

    def same(x, y) -> bool:
        return len(x) == len(y) and all(
            a[:2] == b[:2] and a[2] == pytest.approx(b[2], rel=1e-9)
            for a, b in zip(x, y, strict=True)
        )

    assert any(same(have, c) for c in candidates), (have, candidates[:2])
