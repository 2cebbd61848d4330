"""Every CSV quanttui writes reads back with pandas as the numbers that went in.

The files: `export` / `e` (ticks, bars, analytics, alerts), `backtest --out` / `e` on
the backtest screen (backtest_trades, backtest_equity), and the scanner's ranking
(`scan --out` / `e` on the scanner screen, from deterministic klines). Each is written from a real
SQLite file holding the real BTCUSDT/ETHUSDT recording, then read with
`pandas.read_csv` and default options: every column that is not text must come back with
a numeric dtype, and every value must equal its source to a relative 1e-12.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quanttui.analytics.backtest import TRADE_FIELDS, BacktestParams, backtest_bars
from quanttui.analytics.live import PairParams
from quanttui.analytics.snapshot import run_bars
from quanttui.export import (
    ANALYTICS_COLUMNS,
    STATIONARITY_COLUMNS,
    csv_cell,
    export_backtest,
    export_pair,
)
from quanttui.feed.recordings import read_ndjson
from quanttui.model import FUNDING_METRIC_NAMES, iso_utc
from quanttui.store.queries import load_pair_bars, settled_end_ms
from quanttui.store.writer import INSERT_ALERT
from tests.helpers import store_ticks

RECORDING = "ticks_2025-12-15T08-50-11.076Z.ndjson"
PAIR = "BTCUSDT/ETHUSDT"
TEXT = {
    "ticks": {"time", "symbol"},
    "bars": {"time"},
    "analytics": {"time"},
    "alerts": {"time", "pair", "rule", "metric"},
    "backtest_trades": {"entry_time", "exit_time", "side"},
    "backtest_equity": {"time"},
    "ranking": {"y", "x"},
}
ALERTS = [
    (1_765_788_300_000, PAIR, "abs(zscore) >= 2", "zscore", -2.024, 2.0),
    (1_765_788_301_000, PAIR, "abs(zscore) >= 2", "zscore", 3.305, 2.0),
    (1_765_788_302_000, PAIR, '=HYPERLINK("http://x")', "@SUM(A1)", -1e-05, -0.5),
    (1_765_788_303_000, PAIR, "+1", "-zscore", 0.0, 1e300),
]


@pytest.fixture
def db(real_data: Path, tmp_path: Path) -> Path:
    path = tmp_path / "q.db"
    conn = store_ticks(path, read_ndjson(real_data / RECORDING))
    with conn:
        conn.executemany(INSERT_ALERT, ALERTS)
    conn.close()
    return path


def read(path: Path, kind: str, header: list[str]) -> pd.DataFrame:
    df = pd.read_csv(path)
    assert list(df.columns) == header
    for c in df.columns:
        if c not in TEXT[kind]:
            assert df[c].dtype.kind in "iuf", f"{kind}.{c} read as {df[c].dtype}"
    return df


def same(got: pd.Series, want: object) -> None:
    np.testing.assert_allclose(got.to_numpy(float), np.asarray(want, float), rtol=1e-12, atol=0)


def files(written: dict[str, tuple[Path, int]]) -> dict[str, Path]:
    return {kind: path for kind, (path, _) in written.items()}


@pytest.mark.parametrize("hedge", ["ols", "kalman"])
def test_export_files_read_back_as_the_stored_numbers(db: Path, tmp_path: Path, hedge) -> None:
    params = PairParams("BTCUSDT", "ETHUSDT", "1s", 60, hedge, 1e-8, 1e-5)
    conn = sqlite3.connect(db)
    try:
        out = files(export_pair(conn, params, tmp_path / "out"))
        ticks = conn.execute(
            "SELECT ts_ms, symbol, trade_id, price, qty, is_buyer_maker FROM ticks "
            "WHERE symbol IN ('BTCUSDT', 'ETHUSDT') ORDER BY ts_ms, symbol, trade_id"
        ).fetchall()
        bars = load_pair_bars(conn, "BTCUSDT", "ETHUSDT", "1s", max_gap_bars=120)
        end = settled_end_ms(conn, "BTCUSDT", "ETHUSDT", "1s")
    finally:
        conn.close()
    assert set(out) == {"ticks", "bars", "analytics", "alerts"}

    header = ["time", "symbol", "trade_id", "price", "qty", "is_buyer_maker"]
    df = read(out["ticks"], "ticks", header)
    assert len(df) == len(ticks) == 19_280
    cols = list(zip(*ticks, strict=True))
    assert df["time"].tolist() == [iso_utc(t) for t in cols[0]]
    assert df["symbol"].tolist() == list(cols[1])
    for i, c in enumerate(header[2:], start=2):
        same(df[c], cols[i])

    leg = ("open", "high", "low", "close", "volume", "trades", "filled")
    header = ["time", *(f"x_{c}" for c in leg), *(f"y_{c}" for c in leg), "settled"]
    df = read(out["bars"], "bars", header)
    assert len(df) == len(bars) > 400
    assert df["time"].tolist() == [iso_utc(t) for t in bars.ts_ms.tolist()]
    for side, legbars, filled in (("x", bars.x, bars.x_filled), ("y", bars.y, bars.y_filled)):
        for c in leg[:-1]:
            same(df[f"{side}_{c}"], getattr(legbars, c))
        same(df[f"{side}_filled"], filled.astype(float))
    # the bucket of the newest trade is not settled: shown, marked 0
    assert end == bars.ts_ms[-1]
    same(df["settled"], (bars.ts_ms < end).astype(float))

    settled = bars.slice(0, len(bars) - 1)
    engine = params.analytics(history=len(settled))
    run_bars(engine, settled)
    hist = list(engine.history)
    df = read(
        out["analytics"],
        "analytics",
        [
            "time",
            "close_x",
            "close_y",
            *ANALYTICS_COLUMNS,
            *STATIONARITY_COLUMNS,
            *FUNDING_METRIC_NAMES,
        ],
    )
    assert len(df) == len(hist)
    # the tests at the last settled bar only
    for c in STATIONARITY_COLUMNS:
        assert df[c].iloc[:-1].isna().all() and 0.0 <= df[c].iloc[-1] <= 1.0
    same(df["close_x"], [m.x for m in hist])
    same(df["close_y"], [m.y for m in hist])
    for c in ANALYTICS_COLUMNS:
        same(df[c], [getattr(m, c) for m in hist])
    assert df["zscore"].notna().sum() > 200
    if hedge == "kalman":
        assert df["kalman_z"].notna().sum() == len(hist) - 1
    else:
        assert df["kalman_q"].isna().all() and df["kalman_z"].isna().all()

    header = ["time", "pair", "rule", "metric", "value", "threshold", "withdrawn"]
    df = read(out["alerts"], "alerts", header)
    assert df["time"].tolist() == [iso_utc(a[0]) for a in ALERTS]
    same(df["value"], [a[4] for a in ALERTS])
    same(df["threshold"], [a[5] for a in ALERTS])
    assert df["value"].iloc[0] == -2.024
    # Text that a spreadsheet would run as a formula is quoted; numbers are not.
    assert df["rule"].tolist() == [
        "abs(zscore) >= 2",
        "abs(zscore) >= 2",
        '\'=HYPERLINK("http://x")',
        "'+1",
    ]
    assert df["metric"].tolist() == ["zscore", "zscore", "'@SUM(A1)", "'-zscore"]
    raw = list(csv.reader(out["alerts"].open()))
    assert [r[4] for r in raw[1:]] == ["-2.024", "3.305", "-1e-05", "0.0"]


@pytest.mark.parametrize("hedge", ["ols", "kalman"])
def test_backtest_files_read_back_as_the_result(db: Path, tmp_path: Path, hedge) -> None:
    pair = PairParams("BTCUSDT", "ETHUSDT", "1s", 30, hedge, 1e-8, 1e-5)
    conn = sqlite3.connect(db)
    try:
        bars = load_pair_bars(conn, "BTCUSDT", "ETHUSDT", "1s", max_gap_bars=60)
    finally:
        conn.close()
    report = backtest_bars(bars, pair, BacktestParams(entry_z=1.0, exit_z=0.0))
    res = report.result
    assert len(res.trades) >= 5
    out = files(export_backtest(report, tmp_path / "bt"))

    df = read(out["backtest_trades"], "backtest_trades", list(TRADE_FIELDS))
    assert len(df) == len(res.trades)
    trades = report.trades_json()
    assert df["entry_time"].tolist() == [t["entry_time"] for t in trades]
    assert df["side"].tolist() == [t["side"] for t in trades]
    for c in ("entry_x", "entry_y", "exit_x", "exit_y", "beta", "pnl", "bars_held"):
        same(df[c], [t[c] for t in trades])
    same(df["pnl"], [t.pnl for t in res.trades])
    assert abs(df["pnl"].sum() - res.total_pnl) < 1e-9 * max(1.0, abs(res.total_pnl))
    open_at_end = [t["exit_time"] is None for t in trades]
    assert df["exit_time"].isna().tolist() == open_at_end

    df = read(out["backtest_equity"], "backtest_equity", ["time", "bar_pnl", "equity"])
    assert df["time"].tolist() == [iso_utc(t) for t in res.ts_ms.tolist()]
    same(df["bar_pnl"], res.bar_pnl)
    same(df["equity"], res.equity)


def test_csv_cell_forms() -> None:
    assert csv_cell(np.float64(-0.006781138614152126)) == "-0.006781138614152126"
    assert csv_cell(np.float32(0.5)) == "0.5"
    assert csv_cell(np.int64(-7)) == "-7" and csv_cell(3) == "3"
    assert csv_cell(np.bool_(True)) == "1" and csv_cell(False) == "0"
    assert csv_cell(None) == "" and csv_cell(float("nan")) == "" and csv_cell(np.nan) == ""
    assert csv_cell(-1e-300) == "-1e-300"
    assert csv_cell("BTCUSDT") == "BTCUSDT" and csv_cell("") == ""
    for bad in ("=1+1", "+1", "-1", "@A1", "\tx", "\rx"):
        assert csv_cell(bad) == "'" + bad
    with pytest.raises(TypeError, match="no CSV form"):
        csv_cell(object())


def test_scan_ranking_reads_back_with_the_carry_column(tmp_path: Path) -> None:
    from quanttui.analytics.scan import rank_pairs
    from quanttui.feed.klines import Universe
    from quanttui.scan_report import COLUMNS, export_scan, row_values
    from quanttui.scanner import ScanRequest, compute
    from quanttui.store.db import connect
    from quanttui.store.importer import INSERT_KLINE, kline_row
    from quanttui.store.writer import UPSERT_MARK
    from tests.fakes.exchange import KlineTape

    minute, origin = 60_000, 1_764_547_200_000
    syms = [f"S{k:02d}USDT" for k in range(8)]
    tape = KlineTape(syms, seed=3, origin_ms=origin, minutes=1500)
    db = tmp_path / "scan.db"
    conn = connect(db)
    q = {"startTime": str(origin), "endTime": str(origin + 1440 * minute - 1), "limit": "1500"}
    with conn:
        for s in syms:
            conn.executemany(
                INSERT_KLINE, [kline_row(s, "1m", [str(v) for v in k]) for k in tape.klines(s, q)]
            )
        # S07USDT has no rate: its pairs' carry is empty, the column stays numeric
        last = origin + 1440 * minute  # current marks: the next funding is an hour on
        rates = [
            (s, last, 10.0, 10.0, (k - 3) * 3.7e-5, last + 3_600_000)
            for k, s in enumerate(syms[:-1])
        ]
        conn.executemany(UPSERT_MARK, rates)
    conn.close()
    now = origin + 1441 * minute + 5_000
    req = ScanRequest(db, "http://127.0.0.1:9", symbols=tuple(syms))
    outcome = compute(req, Universe(tuple(syms)), now)
    rows = rank_pairs(outcome.result, bar_ms=minute)
    path, n = export_scan(outcome.meta, rows, tmp_path / "out")
    assert n == len(rows) == 56
    df = read(path, "ranking", list(COLUMNS))
    want = [row_values(k, r, minute) for k, r in enumerate(rows, 1)]
    for i, c in enumerate(COLUMNS):
        if c in TEXT["ranking"]:
            assert df[c].tolist() == [w[i] for w in want]
        else:
            same(df[c], [np.nan if w[i] is None else w[i] for w in want])
    carry = df["carry_bps_day"].to_numpy(float)
    missing = (df["y"] == "S07USDT") | (df["x"] == "S07USDT")
    assert np.isnan(carry[missing]).all() and np.isfinite(carry[~missing]).all()
