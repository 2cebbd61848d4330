"""Several pairs, one connection: `--headless X/Y X/Z` against the fake exchange."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np

from quanttui.analytics.live import PairParams
from quanttui.analytics.snapshot import build_snapshot, run_bars
from quanttui.model import parse_iso_ms
from quanttui.store.queries import load_pair_bars
from tests.fakes.exchange import FakeExchange, FakeTrade
from tests.helpers import exchange_args, spawn

LEVELS = {"BTCUSDT": 90_000.0, "ETHUSDT": 3_100.0, "SOLUSDT": 140.0}


def three_legs(n: int, start_ms: int) -> list[FakeTrade]:
    """Trades cycling through three symbols; ETH and SOL follow BTC with noise, so both
    pairs have a well-posed regression."""
    rng = np.random.default_rng(7)
    ids = dict.fromkeys(LEVELS, 1000)
    walk = 0.0
    out = []
    syms = list(LEVELS)
    for i in range(n):
        s = syms[i % 3]
        walk += float(rng.normal(0, 0.0002)) if s == "BTCUSDT" else 0.0
        px = LEVELS[s] * (1 + walk + (float(rng.normal(0, 0.0001)) if s != "BTCUSDT" else 0.0))
        ids[s] += 1
        out.append(FakeTrade(s, ids[s], f"{px:.4f}", "0.010", start_ms + i, i % 2 == 0))
    return out


async def test_two_pairs_sharing_a_leg_run_over_one_connection(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    cfg = tmp_path / "c.toml"
    cfg.write_text('[alerts]\nbell = false\n[feed]\nbackfill = "off"\n')
    trades = three_legs(7500, int(time.time() * 1000))
    async with FakeExchange(trades, rate=300, restamp=True) as ex:
        proc = await spawn(
            "BTCUSDT/ETHUSDT",
            "BTCUSDT/SOLUSDT",
            "--headless",
            "--window",
            "10",
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
        produced = ex.produced_ids()
    assert proc.returncode == 0, err.decode()
    assert connections == 1
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT symbol, trade_id FROM ticks").fetchall()
    assert len(stored) == len(produced) == 7500
    assert set(stored) == produced
    snaps = {
        r["snapshot"]["pair"]: r["snapshot"]
        for r in map(json.loads, out.decode().splitlines())
        if "snapshot" in r
    }
    assert set(snaps) == {"BTCUSDT/ETHUSDT", "BTCUSDT/SOLUSDT"}
    for key, got in snaps.items():
        x, y = key.split("/")
        params = PairParams(x, y, "1s", 10, "ols")
        end = parse_iso_ms(got["time"]) + 1000  # up to and including the snapshot's bar
        with sqlite3.connect(db) as conn:
            bars = load_pair_bars(conn, x, y, "1s", end, max_gap_bars=params.max_gap_bars)
        engine = params.analytics()
        run_bars(engine, bars)
        ref = build_snapshot(engine, x, y, "1s", run_tests=False).as_json()
        assert ref["time"] == got["time"]
        assert got["zscore"] is not None and got["beta"] is not None, got
        for k in ("close_x", "close_y", "beta", "alpha", "spread", "zscore", "corr"):
            if ref[k] is None:
                assert got[k] is None, (key, k)
            else:
                assert math.isclose(got[k], ref[k], rel_tol=1e-9, abs_tol=1e-12), (key, k)
