"""`quanttui backtest` and `quanttui snapshot` as text, in a real subprocess at 80 columns:
the summary comes first, PnL has the digits the trades need, Sharpe is left out (with a
note) under 1m bars, the legs read `X -> Y` as on the monitor, nothing is cut."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import need
from tests.helpers import run_cli, store_kline_csv


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")


def test_backtest_text_summary_first_with_enough_digits(fixed_db: Path, narrow: None) -> None:
    args = ["backtest", "BTCUSDT", "ETHUSDT", "--db", str(fixed_db), "--window", "60"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    code, js, err = run_cli(*args, "--json")
    assert code == 0, err
    report = json.loads(js)
    lines = out.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert lines[0] == "backtest BTCUSDT -> ETHUSDT  1s  W=60  ols  408 bars"
    assert lines[1].startswith("total pnl ") and lines[2].startswith("trades ")
    assert "sharpe" not in lines[2]
    header = next(i for i, ln in enumerate(lines) if "entry (UTC)" in ln)
    assert "note: sharpe not shown for 1s bars" in "\n".join(lines[:header])
    assert "times UTC on 2025-12-15" in out
    rows = [ln.split() for ln in lines[header + 1 :] if re.match(r"\s*\d\d:\d\d:\d\d", ln)]
    trades = report["trades"]
    assert len(rows) == len(trades) >= 1
    for row, t in zip(rows, trades, strict=True):
        assert row[0] == t["entry_time"][11:19]
        assert row[1] == (t["exit_time"][11:19] if t["exit_time"] else "open")
        pnl = row[-1].replace(",", "")
        decimals = len(pnl.split(".")[1])
        assert float(pnl) == pytest.approx(t["pnl"], abs=0.51 * 10**-decimals)
        assert float(pnl) != 0.0
        digits = pnl.lstrip("-").replace(".", "").lstrip("0")
        assert len(digits) >= 3  # at least three significant digits
    total = re.search(r"total pnl (-?[\d,.]+)", lines[1]).group(1).replace(",", "")
    assert float(total) == pytest.approx(report["total_pnl"], abs=0.006)


def test_backtest_text_keeps_sharpe_for_minute_bars(
    real_data: Path, tmp_path: Path, narrow: None
) -> None:
    db = tmp_path / "k.db"
    store_kline_csv(db, need(real_data / "AVAXUSDT-1m-2024-02.csv"), "AVAXUSDT")
    store_kline_csv(db, need(real_data / "NEARUSDT-1m-2024-02.csv"), "NEARUSDT")
    code, out, err = run_cli(
        *["backtest", "AVAXUSDT", "NEARUSDT", "--db", str(db)],
        *["--timeframe", "1m", "--window", "120"],
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("backtest AVAXUSDT -> NEARUSDT  1m  W=120")
    assert re.search(r"  sharpe -?\d+\.\d\d$", lines[2])
    assert "note:" not in out
    assert max(len(ln) for ln in lines) <= 80
    # the trades span days: times keep their month and day, uncut
    row = next(ln for ln in lines if re.match(r"\s*02-\d\d \d\d:\d\d:\d\d", ln))
    assert re.match(r"\s*02-\d\d \d\d:\d\d:\d\d\s+(02-\d\d \d\d:\d\d:\d\d|open)\s", row)


def test_snapshot_text_names_the_legs_in_monitor_order(fixed_db: Path, narrow: None) -> None:
    code, out, err = run_cli(
        "snapshot", "BTCUSDT", "ETHUSDT", "--db", str(fixed_db), "--window", "60"
    )
    assert code == 0, err
    assert "BTCUSDT -> ETHUSDT" in out
    # the last settled bar (the newest trade's is still open); prices keep trailing zeros
    assert "89,779.40" in out and "3,138.51" in out
    assert re.search(r"Half-life\s.*\d bars \(\d+s\)", out)
