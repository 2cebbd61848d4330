from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from quanttui.cli import main
from tests.conftest import need
from tests.helpers import store_kline_csv


def test_backtest_runs_on_real_futures_klines(real_data: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "k.db"
    assert store_kline_csv(db, need(real_data / "AVAXUSDT-1m-2024-02.csv"), "AVAXUSDT") == 41_760
    store_kline_csv(db, need(real_data / "NEARUSDT-1m-2024-02.csv"), "NEARUSDT")
    out = tmp_path / "bt"
    code = main(
        [
            "backtest",
            "AVAXUSDT",
            "NEARUSDT",
            "--db",
            str(db),
            "--timeframe",
            "1m",
            "--window",
            "120",
            "--json",
            "--out",
            str(out),
            "--stop-z",
            "4",
        ]
    )
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(rep) == {
        "trades",
        "total_pnl",
        "fees",
        "return_on_notional",
        "sharpe",
        "max_drawdown",
        "win_rate",
        "exposure",
        "bars",
        "params",
        "funding",
        "pnl_before_funding",
        "pnl_after_funding",
        "funding_coverage",
        "funding_settlements",
        "funding_missing",
        "funding_missing_in_position",
        "funding_mark_from_close",
    }
    assert rep["bars"] == 41_760
    assert len(rep["trades"]) > 10
    t = rep["trades"][0]
    assert set(t) == {
        "entry_time",
        "exit_time",
        "side",
        "entry_x",
        "entry_y",
        "exit_x",
        "exit_y",
        "beta",
        "pnl",
        "bars_held",
        "funding",
    }
    assert t["side"] in ("long", "short") and t["entry_time"].startswith("2024-02")
    assert abs(sum(x["pnl"] for x in rep["trades"]) - rep["total_pnl"]) < 1e-6 * max(
        1.0, abs(rep["total_pnl"])
    )
    assert rep["fees"] > 0 and 0 < rep["exposure"] < 1
    # no funding stored: nothing is assumed, the report says every settlement is missing
    assert rep["funding"] == 0.0 and rep["funding_coverage"] == 0.0
    assert rep["funding_missing"] == 2 * 87  # 8-hourly, 02-01 08:00 to 03-01 00:00 (the last close)
    assert 0 < rep["funding_missing_in_position"] < rep["funding_missing"]
    assert rep["pnl_after_funding"] == rep["pnl_before_funding"] == rep["total_pnl"]
    (equity,) = out.glob("AVAXUSDT_NEARUSDT_1m_*_backtest_equity.csv")
    assert equity.read_text().count("\n") == 41_761
    (trades,) = out.glob("AVAXUSDT_NEARUSDT_1m_*_backtest_trades.csv")
    assert trades.read_text().count("\n") == len(rep["trades"]) + 1
    df = pd.read_csv(trades)
    assert df["pnl"].dtype == float and df["beta"].dtype == float
    np.testing.assert_allclose(df["pnl"], [t["pnl"] for t in rep["trades"]], rtol=1e-12)
    assert (
        main(
            [
                "snapshot",
                "AVAXUSDT",
                "NEARUSDT",
                "--db",
                str(db),
                "--timeframe",
                "5m",
                "--window",
                "60",
                "--json",
            ]
        )
        == 0
    )
    snap = json.loads(capsys.readouterr().out)
    assert snap["bars"] == 41_760 // 5 and snap["zscore"] is not None


def test_backtest_too_little_data(tmp_path: Path, capsys) -> None:
    db = tmp_path / "e.db"
    from quanttui.store.db import prepare

    prepare(db)
    assert main(["backtest", "AAAUSDT", "BBBUSDT", "--db", str(db)]) == 1
    assert "too little data" in capsys.readouterr().err
    assert main(["backtest", "AAAUSDT", "BBBUSDT", "--db", str(db), "--from", "yesterday"]) == 2


def test_backtest_stop_inside_entry_is_a_usage_error(tmp_path: Path, capsys) -> None:
    code = main(
        ["backtest", "AVAXUSDT", "NEARUSDT", "--db", str(tmp_path / "x.db")] + ["--stop-z", "1.5"]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "quanttui: config error: [backtest] stop_z = 1.5 must be 0 (off) or exceed "
        "[analytics] entry_z = 2"
    )
