"""Baskets on real data: three USD-M futures legs (AVAXUSDT, NEARUSDT, FILUSDT, 1m klines
of Feb 2024) stored in a database, read back by `snapshot`, `export` and `backtest`
(`quanttui A B C`), against statsmodels' coint_johansen on the CSVs' own closes, and
live bars (trades through `LiveBasket`) against the recompute from the database,
alerts included."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from statsmodels.tsa.vector_ar.vecm import coint_johansen

from quanttui.alerts import build_engine
from quanttui.analytics.basket import BasketParams, LiveBasket, basket_metrics, run_basket_bars
from quanttui.cli import main
from quanttui.engine.alertbook import AlertBook
from quanttui.model import BASKET_METRIC_NAMES, Tick
from quanttui.store.db import connect
from quanttui.store.queries import load_basket_bars
from tests.conftest import need
from tests.helpers import run_cli, store_kline_csv

LEGS = ("AVAXUSDT", "NEARUSDT", "FILUSDT")
BARS = 1500
W = 300


@pytest.fixture
def basket_db(real_data: Path, tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The first BARS minutes of each leg stored as klines; returns (db, open times,
    closes bars x legs) read straight from the CSVs."""
    db = tmp_path / "b.db"
    closes, times = [], None
    for sym in LEGS:
        src = need(real_data / f"{sym}-1m-2024-02.csv")
        part = tmp_path / src.name
        with src.open() as fh:
            part.write_text("".join(next(fh) for _ in range(BARS + 1)))
        assert store_kline_csv(db, part, sym) == BARS
        raw = np.loadtxt(part, delimiter=",", skiprows=1, usecols=(0, 4))
        times = raw[:, 0].astype(np.int64)
        closes.append(raw[:, 1])
    assert times is not None
    return db, times, np.column_stack(closes)


def _args(db: Path, *extra: str) -> list[str]:
    return [*LEGS, "--db", str(db), "--timeframe", "1m", "--window", str(W), *extra]


def test_snapshot_json_equals_statsmodels(basket_db, capsys) -> None:
    db, _times, closes = basket_db
    assert main(["snapshot", *_args(db, "--json")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["basket"] == "+".join(LEGS) and doc["bars"] == BARS
    ref = coint_johansen(np.log(closes[-W:]), 0, 1)
    np.testing.assert_allclose(doc["trace_stat"], ref.lr1, rtol=1e-8)
    np.testing.assert_allclose(doc["max_eig_stat"], ref.lr2, rtol=1e-8)
    np.testing.assert_array_equal(doc["trace_cv"], ref.cvt)
    w = ref.evec[:, 0] / ref.evec[0, 0]
    np.testing.assert_allclose([doc["weights"][s] for s in LEGS], w, rtol=1e-8)
    assert doc["spread"] == pytest.approx(float(w @ np.log(closes[-1])), rel=1e-8)
    assert doc["notional"][LEGS[1]] == pytest.approx(w[1] * closes[-1, 0], rel=1e-8)
    assert math.isfinite(doc["zscore"])


def test_export_every_bar_equals_statsmodels(basket_db, tmp_path: Path, capsys) -> None:
    """The analytics CSV, bar by bar: weights and statistics vs coint_johansen on the
    CSVs' closes (every 7th bar of the 1201 full windows, and the last), spread = w_t.y_t
    with that bar's weights, and z over the last W spreads (numpy)."""
    db, times, closes = basket_db
    out = tmp_path / "out"
    assert main(["export", *_args(db, "--out", str(out))]) == 0
    capsys.readouterr()
    (path,) = out.glob("*_analytics.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == BARS
    lv = np.log(closes)
    spreads = []
    for i, r in enumerate(rows):
        assert [float(r[f"{s}_close"]) for s in LEGS] == closes[i].tolist()
        if i < W - 1:
            assert r["trace_stat"] == "" and r[f"{LEGS[1]}_weight"] == ""
            continue
        w = np.array([float(r[f"{s}_weight"]) for s in LEGS])
        spreads.append(float(r["spread"]))
        assert spreads[-1] == pytest.approx(float(w @ lv[i]), rel=1e-12, abs=1e-12)
        if i % 7 == 0 or i == BARS - 1:
            ref = coint_johansen(lv[i - W + 1 : i + 1], 0, 1)
            np.testing.assert_allclose(w, ref.evec[:, 0] / ref.evec[0, 0], rtol=1e-8)
            assert float(r["trace_stat"]) == pytest.approx(ref.lr1[0], rel=1e-8)
            assert float(r["max_eig_stat"]) == pytest.approx(ref.lr2[0], rel=1e-8)
            assert float(r["trace_cv95"]) == ref.cvt[0, 1]
        if len(spreads) >= W:
            last = np.array(spreads[-W:])
            z = (last[-1] - last.mean()) / last.std(ddof=1)
            assert float(r["zscore"]) == pytest.approx(z, rel=1e-7, abs=1e-9)
        else:
            assert r["zscore"] == ""
    (bars,) = out.glob("*_bars.csv")
    b = list(csv.DictReader(bars.open()))
    assert len(b) == BARS and all(x["settled"] == "1" for x in b)
    assert int(times[0]) == 1706745600000


def test_live_bars_and_alerts_equal_recompute(basket_db) -> None:
    """Each minute's close sent as a trade through `LiveBasket` (bars closed by trades
    and the clock) gives the metrics and the alerts of the recompute from the database."""
    db, times, closes = basket_db
    params = BasketParams(LEGS, "1m", W)
    live = LiveBasket(params, history=BARS)
    got = []
    for i in range(BARS):
        ticks = [
            Tick(s, i, int(times[i]) + 1000 * (j + 1), float(closes[i, j]), 1.0, False)
            for j, s in enumerate(LEGS)
        ]
        got += live.add(ticks)
        got += live.advance(int(times[i]) + 60_000 + 300)
    conn = connect(db, readonly=True)
    bars = load_basket_bars(conn, list(LEGS), "1m", max_gap_bars=params.max_gap_bars)
    conn.close()
    again = params.analytics(history=BARS)
    run_basket_bars(again, bars)
    assert got == list(again.history) and len(got) == BARS

    rules = ["abs(zscore) >= 2", "trace_margin > 0", "rank >= 1", "half_life_bars < 3"]

    def alerts(history) -> list:
        eng = build_engine(
            params.key,
            rules,
            entry_z=2.0,
            exit_z=0.0,
            hysteresis=0.25,
            cooldown_s=0,
            default=False,
            names=BASKET_METRIC_NAMES,
        )
        book = AlertBook(eng)
        out = []
        for n, m in enumerate(history, 1):
            out += book.on_bar(m.ts_ms, basket_metrics(m, n, "1m"), defer=False)
        return out

    a, b = alerts(got), alerts(again.history)
    assert a == b and len(a) > 10
    assert {x.metric for x in a} >= {"zscore", "trace_margin"}


def test_backtest_cli(basket_db, tmp_path: Path, capsys) -> None:
    db, _times, _closes = basket_db
    out = tmp_path / "bt"
    # on these 1500 bars no bar with |z| >= 2 has rank >= 1: the default filter (min_rank
    # 1) keeps the book flat, and --min-rank 0 trades every signal
    assert main(["backtest", *_args(db, "--json")]) == 0
    filtered = json.loads(capsys.readouterr().out)
    assert filtered["params"]["min_rank"] == 1 and filtered["trades"] == []
    assert main(["backtest", *_args(db, "--json", "--min-rank", "0", "--out", str(out))]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["params"]["min_rank"] == 0
    assert doc["params"]["basket"] == "+".join(LEGS) and doc["bars"] == BARS
    assert doc["trades"] and set(doc["trades"][0]["qty"]) == set(LEGS)
    for t in doc["trades"]:
        assert t["qty"][LEGS[0]] == (1.0 if t["side"] == "long" else -1.0)
    (eq,) = out.glob("*_backtest_equity.csv")
    rows = list(csv.DictReader(eq.open()))
    assert float(rows[-1]["equity"]) == pytest.approx(doc["total_pnl"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["snapshot", "AVAXUSDT"], "or 3 to 12 symbols"),
        (["snapshot", "AVAXUSDT", "NEARUSDT", "avaxusdt"], "given once"),
        (["export", *(f"S{i}USDT" for i in range(13))], "at most 12 legs"),
        (["backtest", "AVAXUSDT", "NEARUSDT", "FOOUSDT"], "no data stored for FOOUSDT"),
        (["snapshot", *LEGS, "--window", "12"], "window must be"),
        (["backtest", *LEGS, "--min-rank", "13"], "min_rank"),
        (["backtest", *LEGS, "--min-rank", "4"], "--min-rank must be 0 to 3 (the legs), got 4"),
    ],
)
def test_bad_input_exit_2_one_line(basket_db, args: list[str], needle: str) -> None:
    db, _t, _c = basket_db
    code, out, err = run_cli(*args, "--db", str(db))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
