"""`quanttui scan --basket 3`: baskets built from the pair scan's top pairs, tested with
Johansen and ranked by Holm-adjusted p-value; the pieces against references (statsmodels'
Holm, coint_johansen) and the p-value's calibration on random walks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.tsa.vector_ar.vecm import coint_johansen

from quanttui.analytics.johansen import johansen
from quanttui.analytics.scan import (
    basket_candidates,
    holm,
    null_trace_moments,
    scan_baskets,
    trace_pvalue,
)
from quanttui.store.db import connect
from tests.helpers import run_cli

MINUTE = 60_000
DEAD = "http://127.0.0.1:9"
SYMS = [f"S{i:02d}USDT" for i in range(6)]
BASKET = ("S00USDT", "S01USDT", "S02USDT")


def _panel(n: int, seed: int = 3) -> np.ndarray:
    """Log closes: S02 = 0.5 S00 + 0.5 S01 + AR(1) noise; S03..S05 independent walks."""
    rng = np.random.default_rng(seed)
    walks = np.cumsum(rng.normal(scale=1e-3, size=(n, 5)), axis=0)
    e = np.zeros(n)
    for t in range(1, n):
        e[t] = 0.8 * e[t - 1] + rng.normal(scale=3e-4)
    s02 = 0.5 * walks[:, 0] + 0.5 * walks[:, 1] + e
    return np.column_stack([walks[:, 0], walks[:, 1], s02, walks[:, 2:]]) + np.log(100)


def _store(db: Path, logp: np.ndarray, end_ms: int) -> None:
    n = logp.shape[0]
    start = end_ms - end_ms % MINUTE - n * MINUTE
    conn = connect(db)
    with conn:
        for j, sym in enumerate(SYMS):
            rows = []
            for i in range(n):
                c = float(np.exp(logp[i, j]))
                t = start + i * MINUTE
                rows.append((sym, "1m", t, c, c, c, c, 1.0, t + MINUTE - 1, c, 1))
            conn.executemany("INSERT INTO klines VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    conn.close()


def test_scan_basket_cli_ranks_the_cointegrated_triple_first(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _store(db, _panel(1500), int(time.time() * 1000))
    rc, out, err = run_cli(
        "scan", *SYMS, "--basket", "3", "--json", "--db", str(db), "--rest-url", DEAD
    )
    assert rc == 0, err
    doc = orjson.loads(out)
    assert doc["basket_size"] == 3 and doc["bars"] == 1440
    assert "Holm over the" in doc["correction"] and "Holm over the" in err
    assert doc["tests"] == len(doc["baskets"]) > 1
    top = doc["baskets"][0]
    assert tuple(top["symbols"]) == BASKET
    assert top["p_holm"] < 1e-3 and top["coint_rank"] >= 1
    assert [top["weights"][s] for s in BASKET] == pytest.approx([1.0, 1.0, -2.0], abs=0.1)
    p_holm = [b["p_holm"] for b in doc["baskets"]]
    assert p_holm == sorted(p_holm)
    # every basket of independent walks only is far from significant
    for b in doc["baskets"]:
        if not set(b["symbols"]) & set(BASKET[:2]):
            assert b["p_holm"] > 0.05
    rc, out, err = run_cli(
        "scan", *SYMS, "--basket", "13", "--json", "--db", str(db), "--rest-url", DEAD
    )
    assert rc == 2 and "--basket must be between 3 and 12" in err
    rc, out, err = run_cli(
        "scan", *SYMS[:3], "--basket", "4", "--json", "--db", str(db), "--rest-url", DEAD
    )
    assert rc == 2 and "needs 4 symbols" in err and "Traceback" not in err


def test_scan_baskets_numbers_equal_johansen() -> None:
    logp = _panel(800, seed=5)
    syms = tuple(SYMS)
    pvalue = np.full((6, 6), 0.5)
    np.fill_diagonal(pvalue, np.nan)
    pvalue[0, 2] = pvalue[1, 2] = 1e-4  # two edges: S00-S02, S01-S02
    res = scan_baskets(logp, syms, pvalue, size=3, pairs=2)
    assert res.pairs == 2 and res.tests == 1
    (b,) = res.baskets
    ref = coint_johansen(logp[:, :3], 0, 1)
    assert b.trace_stat == pytest.approx(ref.lr1[0], rel=1e-8)
    assert b.trace_cv95 == ref.cvt[0, 1]
    assert b.weights == pytest.approx(ref.evec[:, 0] / ref.evec[0, 0], rel=1e-8)
    assert b.p_holm == b.pvalue  # one test: Holm changes nothing


def test_candidates_are_connected_sets() -> None:
    p = np.full((5, 5), np.nan)
    edges = {(0, 1): 1e-5, (1, 2): 1e-4, (3, 4): 1e-3, (2, 3): 0.5}
    for (i, j), v in edges.items():
        p[i, j] = v
        p[j, i] = v * 2
    combos, used = basket_candidates(p, 3, pairs=3)
    assert used == 3
    assert combos == [(0, 1, 2)]  # (3, 4) has no third member among the top 3 edges
    combos, _ = basket_candidates(p, 3, pairs=4)
    assert combos == [(0, 1, 2), (1, 2, 3), (2, 3, 4)]
    with pytest.raises(ValueError):
        basket_candidates(p, 2, pairs=3)


def test_holm_equals_statsmodels() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 40) ** 2
    p[[3, 17]] = np.nan
    ok = np.isfinite(p)
    ref = multipletests(p[ok], method="holm")[1]
    np.testing.assert_allclose(holm(p)[ok], ref, rtol=1e-12)
    assert np.isnan(holm(p)[~ok]).all()


def test_trace_pvalue_is_calibrated_on_random_walks() -> None:
    """Under H0 (independent random walks, 3 legs x 500 bars) the Gamma p-value is close
    to uniform: over 300 baskets drawn apart from the moments' own draws, p < 0.05 in
    2-9 % of them (a uniform p gives 5 %; the binomial 99.9 % band is about 1-10 %;
    measured 4.7 %), whereas the asymptotic 95 % critical value rejects 8.0 % of them."""
    mean, var = null_trace_moments(500, 3, 0, 1, draws=500)
    rng = np.random.default_rng(99)
    stats = np.array(
        [johansen(np.cumsum(rng.normal(size=(500, 3)), axis=0), 0, 1).trace[0] for _ in range(300)]
    )
    p = trace_pvalue(stats, mean, var)
    assert 0.02 <= (p < 0.05).mean() <= 0.09
    assert 0.05 <= (p < 0.10).mean() <= 0.15
    assert (stats > 29.7961).mean() > (p < 0.05).mean()
