"""`quanttui backtest --json` with funding over real futures klines (AVAXUSDT/NEARUSDT 1m,
February 2024) and a seeded funding series, against an independent pandas reference."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quanttui.cli import main
from quanttui.store.writer import UPSERT_FUNDING, UPSERT_INTERVAL
from tests.conftest import need
from tests.helpers import store_kline_csv

H = 3_600_000
FEB = 1_706_745_600_000  # 2024-02-01 00:00 UTC
MAR = 1_709_251_200_000  # 2024-03-01 00:00 UTC
ARGS = ["--timeframe", "1m", "--window", "120", "--stop-z", "4", "--fee-bps", "2", "--json"]


def funding_table(symbol: str, interval_h: int, seed: int) -> pd.DataFrame:
    """Settlements every `interval_h` over February and the day around it; rates seeded,
    every fifth a few ms late, marks stored for two thirds (REST-like), the rest NULL
    (archive-like)."""
    rng = np.random.default_rng(seed)
    t = np.arange(FEB - interval_h * H, MAR + interval_h * H + 1, interval_h * H)
    t = t + np.where(np.arange(t.size) % 5 == 0, 3, 0)
    rate = np.round(rng.normal(1e-4, 2.5e-4, t.size), 8)
    mark = np.where(np.arange(t.size) % 3 == 0, np.nan, np.round(rng.uniform(10, 50, t.size), 4))
    return pd.DataFrame({"symbol": symbol, "funding_ms": t, "rate": rate, "mark": mark})


def build_db(real_data: Path, tmp_path: Path, hole: tuple[int, int] | None = None) -> tuple:
    db = tmp_path / "k.db"
    files = {}
    for sym in ("AVAXUSDT", "NEARUSDT"):
        files[sym] = need(real_data / f"{sym}-1m-2024-02.csv")
        store_kline_csv(db, files[sym], sym)
    fund = {
        "AVAXUSDT": funding_table("AVAXUSDT", 8, 1),
        "NEARUSDT": funding_table("NEARUSDT", 4, 2),
    }
    if hole is not None:
        f = fund["NEARUSDT"]
        fund["NEARUSDT"] = f[(f.funding_ms < hole[0]) | (f.funding_ms > hole[1])]
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(UPSERT_INTERVAL, ("NEARUSDT", 4, FEB))
        for f in fund.values():
            conn.executemany(
                UPSERT_FUNDING,
                [
                    (
                        r.symbol,
                        int(r.funding_ms),
                        float(r.rate),
                        None if np.isnan(r.mark) else r.mark,
                    )
                    for r in f.itertuples()
                ],
            )
    conn.close()
    return db, files, fund


def reference(rep: dict, files: dict, fund: dict) -> tuple[float, list[float]]:
    """Funding of the reported trades, from the kline CSVs and the funding table alone.

    A trade filled at the close of the bar that opens at `entry_time` (close time =
    entry_time + 1 min) and exited at the close of the `exit_time` bar holds every
    settlement T with entry close < T <= exit close (open trades: up to the last close).
    Each leg receives -q * mark * rate, q_Y = +1 long / -1 short, q_X = -q_Y * b; mark is
    the stored one, else the close of the first bar closing at or after T."""
    kl = {s: pd.read_csv(p) for s, p in files.items()}
    last_close = int(kl["AVAXUSDT"]["open_time"].iloc[-1]) + 60_000
    per_trade = []
    for t in rep["trades"]:
        opened = int(pd.Timestamp(t["entry_time"]).value // 10**6) + 60_000
        closed = (
            last_close
            if t["exit_time"] is None
            else int(pd.Timestamp(t["exit_time"]).value // 10**6) + 60_000
        )
        qy = 1.0 if t["side"] == "long" else -1.0
        q = {"NEARUSDT": qy, "AVAXUSDT": -qy * t["beta"]}
        total = 0.0
        for sym, f in fund.items():
            f = f.assign(nominal=(f.funding_ms + 30_000) // 60_000 * 60_000)
            f = f[(f.nominal > opened) & (f.nominal <= closed)]
            k = kl[sym].assign(close_ms=kl[sym]["open_time"] + 60_000)
            joined = pd.merge_asof(
                f.sort_values("nominal"), k[["close_ms", "close"]], left_on="nominal",
                right_on="close_ms", direction="forward",
            )  # fmt: skip
            mark = joined["mark"].fillna(joined["close"])
            total += float((-q[sym] * mark * joined["rate"]).sum())
        per_trade.append(total)
    return sum(per_trade), per_trade


def test_funding_matches_an_independent_reference(real_data: Path, tmp_path: Path, capsys) -> None:
    db, files, fund = build_db(real_data, tmp_path)
    assert main(["backtest", "AVAXUSDT", "NEARUSDT", "--db", str(db), *ARGS]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert len(rep["trades"]) > 10
    total, per_trade = reference(rep, files, fund)
    assert rep["funding"] == pytest.approx(total, rel=1e-9, abs=1e-9)
    assert [t["funding"] for t in rep["trades"]] == pytest.approx(per_trade, rel=1e-9, abs=1e-9)
    assert rep["funding"] != 0
    assert rep["pnl_after_funding"] == pytest.approx(rep["total_pnl"] + rep["funding"], abs=1e-9)
    assert rep["funding_coverage"] == 1.0 and rep["funding_missing"] == 0
    assert rep["funding_mark_from_close"] > 0
    # 87 settlements of AVAX (8 h) and 174 of NEAR (4 h) in (02-01 00:01, 03-01 00:00]
    assert rep["funding_settlements"] == 87 + 174


def test_a_hole_in_funding_history_is_partial_coverage(
    real_data: Path, tmp_path: Path, capsys
) -> None:
    lo, hi = FEB + 10 * 24 * H, FEB + 12 * 24 * H - 1  # no NEAR rows for 02-11 and 02-12
    db, files, fund = build_db(real_data, tmp_path, hole=(lo, hi))
    assert main(["backtest", "AVAXUSDT", "NEARUSDT", "--db", str(db), *ARGS]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["funding_missing"] == 12  # two days of 4-hourly settlements
    assert rep["funding_coverage"] == pytest.approx((87 + 174 - 12) / (87 + 174), rel=1e-12)
    total, _ = reference(rep, files, fund)  # the hole is not filled with anything
    assert rep["funding"] == pytest.approx(total, rel=1e-9, abs=1e-9)
    held = 0
    for t in range(lo, hi, 4 * H):
        held += any(
            _held(tr, t, int(pd.Timestamp("2024-03-01", tz="UTC").value // 10**6))
            for tr in rep["trades"]
        )
    assert rep["funding_missing_in_position"] == held
    assert main(["backtest", "AVAXUSDT", "NEARUSDT", "--db", str(db), *ARGS[:-1]]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal width
    assert f"funding coverage {rep['funding_coverage']:.0%}: 12 of 261 settlements missing" in out


def _held(t: dict, when: int, last_close: int) -> bool:
    opened = int(pd.Timestamp(t["entry_time"]).value // 10**6) + 60_000
    closed = (
        last_close
        if t["exit_time"] is None
        else int(pd.Timestamp(t["exit_time"]).value // 10**6) + 60_000
    )
    return opened < when <= closed
