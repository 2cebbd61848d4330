"""Snapshots from stored data, checked against statsmodels on the same closes."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.tsa.stattools import adfuller, coint

from quanttui.cli import main
from quanttui.feed.recordings import read_ndjson
from quanttui.model import Tick
from tests.conftest import need
from tests.helpers import store_ticks


def pandas_closes(ticks: list[Tick], sym: str, rule: str) -> pd.Series:
    df = pd.DataFrame(
        [(t.ts_ms, t.price) for t in ticks if t.symbol == sym and t.price > 0], columns=["ts", "p"]
    )
    s = pd.Series(df["p"].to_numpy(), index=pd.to_datetime(df["ts"], unit="ms", utc=True))
    return s.resample(rule).last().ffill()


def reference(x: np.ndarray, y: np.ndarray, w: int) -> dict[str, float]:
    """Rolling statsmodels OLS -> spreads, then ADF and coint on the last window."""
    spreads = []
    for t in range(w - 1, len(x)):
        res = sm.OLS(y[t - w + 1 : t + 1], sm.add_constant(x[t - w + 1 : t + 1])).fit()
        spreads.append(res.resid[-1])
    s = np.array(spreads[-w:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        adf = adfuller(s, regression="c", autolag="AIC")
    last = sm.OLS(y[-w:], sm.add_constant(x[-w:])).fit()
    return {
        "beta": last.params[1],
        "alpha": last.params[0],
        "zscore": (s[-1] - s.mean()) / s.std(ddof=1),
        "adf_stat": adf[0],
        "adf_p": adf[1],
        "coint_p": coint(y[-w:], x[-w:], trend="c")[1],
    }


def test_snapshot_json_on_real_recording_matches_statsmodels(real_data, tmp_path, capsys) -> None:
    ticks = list(read_ndjson(real_data / "ticks_2025-12-15T08-50-11.076Z.ndjson"))
    db = tmp_path / "q.db"
    store_ticks(db, ticks).close()
    w = 120
    assert (
        main(
            [
                "snapshot",
                "BTCUSDT",
                "ETHUSDT",
                "--db",
                str(db),
                "--timeframe",
                "1s",
                "--window",
                str(w),
                "--json",
            ]
        )
        == 0
    )
    snap = json.loads(capsys.readouterr().out)
    bx = pandas_closes(ticks, "BTCUSDT", "1s")
    by = pandas_closes(ticks, "ETHUSDT", "1s")
    start = max(bx.index[0], by.index[0])
    end = max(bx.index[-1], by.index[-1])
    # the last bucket holds the newest stored trade: it is not settled, so not reported
    idx = pd.date_range(start, end, freq="1s")[:-1]
    x = bx.reindex(idx, method="ffill").to_numpy()
    y = by.reindex(idx, method="ffill").to_numpy()
    assert snap["bars"] == len(idx)
    ref = reference(x, y, w)
    assert snap["close_x"] == x[-1] and snap["close_y"] == y[-1]
    assert math.isclose(snap["beta"], ref["beta"], rel_tol=1e-9)
    assert math.isclose(snap["zscore"], ref["zscore"], rel_tol=1e-7)
    assert math.isclose(snap["adf_stat"], ref["adf_stat"], rel_tol=1e-6)
    assert math.isclose(snap["adf_p"], ref["adf_p"], rel_tol=1e-6, abs_tol=1e-12)
    assert math.isclose(snap["coint_p"], ref["coint_p"], rel_tol=1e-9, abs_tol=1e-12)
    assert snap["time"].endswith("Z") and snap["symbol_y"] == "ETHUSDT"
    assert set(snap) >= {
        "half_life_bars",
        "return_beta",
        "return_r2",
        "flags",
        "corr",
        "r2",
        "beta_se",
    }


def test_snapshot_too_little_data(tmp_path, capsys) -> None:
    db = tmp_path / "q.db"
    store_ticks(
        db, [Tick("AAAUSDT", 1, 1000, 1.0, 1.0, False), Tick("BBBUSDT", 1, 1500, 2.0, 1.0, False)]
    ).close()
    assert main(["snapshot", "AAAUSDT", "BBBUSDT", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert "too little data" in err and err.count("\n") == 1


@pytest.mark.parametrize("content", [b"hello, not a db", b"SQLite format 3\x00" + b"\x00" * 200])
def test_snapshot_bad_db(tmp_path, capsys, content: bytes) -> None:
    db = tmp_path / "bad.db"
    db.write_bytes(content)
    code = main(["snapshot", "AAAUSDT", "BBBUSDT", "--db", str(db)])
    assert code == 1
    err = capsys.readouterr().err
    assert str(db) in err and "Traceback" not in err
    assert db.read_bytes() == content


def test_foreign_sqlite_file_is_refused_and_untouched(real_data, tmp_path, capsys) -> None:
    src = need(real_data / "market.db").read_bytes()
    db = tmp_path / "market.db"
    db.write_bytes(src)
    assert main(["snapshot", "BTCUSDT", "ETHUSDT", "--db", str(db)]) == 1
    assert "not a quanttui database" in capsys.readouterr().err
    assert db.read_bytes() == src
