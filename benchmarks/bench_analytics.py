"""Analytics speed.

1. Per-bar incremental update (hedge, spread, z, corr, half-life) at W=1000, excluding
   ADF, against a naive pandas full-window recompute of the same metrics per bar (what
   the Streamlit/Dash dashboards did on every refresh).
2. Full recompute from 1,000,000 stored ticks to a snapshot (SQLite load, bars, engine,
   ADF + coint), as on start-up or on a timeframe change.

Usage: python benchmarks/bench_analytics.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quanttui.analytics.engine import PairAnalytics  # noqa: E402
from quanttui.analytics.snapshot import build_snapshot, run_bars  # noqa: E402
from quanttui.store.db import connect  # noqa: E402
from quanttui.store.queries import load_pair_bars  # noqa: E402
from quanttui.store.writer import INSERT_TICK  # noqa: E402

W = 1000


def pair(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = 90_000 * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    y = 100 + 0.034 * x + np.cumsum(rng.normal(0, 0.05, n)) * 0.1
    return x, y


def incremental_us(n: int = 50_000) -> float:
    x, y = pair(n + W * 2)
    eng = PairAnalytics(W)
    xs, ys = x.tolist(), y.tolist()
    for i in range(2 * W):
        eng.update(i, xs[i], ys[i])
    t0 = time.perf_counter()
    for i in range(2 * W, 2 * W + n):
        eng.update(i, xs[i], ys[i])
    return (time.perf_counter() - t0) / n * 1e6


def naive_pandas_us(n: int = 200) -> float:
    """Per bar: rebuild a DataFrame of the last 2W closes and recompute everything."""
    x, y = pair(n + W * 2)
    t0 = time.perf_counter()
    for i in range(2 * W, 2 * W + n):
        df = pd.DataFrame({"x": x[i - 2 * W : i], "y": y[i - 2 * W : i]})
        cov = df["x"].rolling(W).cov(df["y"])
        var = df["x"].rolling(W).var()
        beta = cov / var
        alpha = df["y"].rolling(W).mean() - beta * df["x"].rolling(W).mean()
        spread = df["y"] - alpha - beta * df["x"]
        z = (spread - spread.rolling(W).mean()) / spread.rolling(W).std()
        r = np.log(df).diff()
        corr = r["x"].rolling(W).corr(r["y"])
        _ = (z.iloc[-1], corr.iloc[-1])
    return (time.perf_counter() - t0) / n * 1e6


def make_db(path: Path, n: int = 1_000_000) -> None:
    rng = np.random.default_rng(3)
    conn = connect(path)
    t0 = 1_765_000_000_000
    half = n // 2
    for sym, px, sd in (("BTCUSDT", 90_000.0, 2e-5), ("ETHUSDT", 3_100.0, 3e-5)):
        ts = t0 + np.sort(rng.integers(0, 3 * 3600 * 1000, half))
        p = px * np.exp(np.cumsum(rng.normal(0, sd, half)))
        q = rng.uniform(0.001, 1, half)
        rows = zip(
            [sym] * half, range(half), ts.tolist(), p.tolist(), q.tolist(), [0] * half, strict=True
        )
        with conn:
            conn.executemany(INSERT_TICK, rows)
    conn.close()


def recompute_s(path: Path, timeframe: str) -> float:
    t0 = time.perf_counter()
    conn = connect(path, readonly=True)
    bars = load_pair_bars(conn, "BTCUSDT", "ETHUSDT", timeframe)
    conn.close()
    eng = PairAnalytics(300 if timeframe == "1s" else 60)
    run_bars(eng, bars)
    snap = build_snapshot(eng, "BTCUSDT", "ETHUSDT", timeframe)
    assert snap.adf_p is not None
    return time.perf_counter() - t0


def main() -> None:
    inc = statistics.median(incremental_us() for _ in range(5))
    naive = statistics.median(naive_pandas_us() for _ in range(3))
    print(f"per-bar update, W={W}: {inc:.1f} us (median of 5 runs of 50,000 bars)")
    print(f"naive pandas full-window recompute per bar: {naive:,.0f} us (median of 3)")
    print(f"ratio: {naive / inc:,.0f}x")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "b.db"
        make_db(db)
        import statsmodels.tsa.stattools  # noqa: F401  (import cost is a start-up matter, not this)

        for tf in ("1s", "1m"):
            s = statistics.median(recompute_s(db, tf) for _ in range(3))
            print(f"recompute 1,000,000 ticks -> snapshot at {tf}: {s:.2f} s (median of 3)")


if __name__ == "__main__":
    main()
