"""30-day 1m backtest (43,200 bars): engine pass + strategy loop, against a naive version
that re-fits OLS with pandas on the window at every bar (the dashboards' approach).

Usage: python benchmarks/bench_backtest.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quanttui.analytics.backtest import BacktestParams, run_backtest  # noqa: E402
from quanttui.analytics.engine import PairAnalytics  # noqa: E402

N, W, TF = 43_200, 120, 60_000


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = 30 * np.exp(np.cumsum(rng.normal(0, 1e-3, N)))
    s = np.zeros(N)
    for i in range(1, N):
        s[i] = 0.97 * s[i - 1] + rng.normal(0, 0.01)
    return x, 2 + 0.2 * x + s


def ours(x: np.ndarray, y: np.ndarray) -> float:
    t0 = time.perf_counter()
    eng = PairAnalytics(W, history=N)
    for i, (a, b) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
        eng.update(i * TF, a, b)
    h = eng.history
    z = np.array([m.zscore for m in h])
    beta = np.array([m.beta for m in h])
    run_backtest(np.arange(N) * TF, x, y, z, beta, BacktestParams(stop_z=4), TF)
    return time.perf_counter() - t0


def naive_per_bar_s(x: np.ndarray, y: np.ndarray, bars: int = 300) -> float:
    df = pd.DataFrame({"x": x, "y": y})
    t0 = time.perf_counter()
    for t in range(2 * W, 2 * W + bars):
        win = df.iloc[t - 2 * W : t + 1]
        cov = win["x"].rolling(W).cov(win["y"])
        beta = cov / win["x"].rolling(W).var()
        alpha = win["y"].rolling(W).mean() - beta * win["x"].rolling(W).mean()
        spread = win["y"] - alpha - beta * win["x"]
        _ = ((spread - spread.rolling(W).mean()) / spread.rolling(W).std()).iloc[-1]
    return (time.perf_counter() - t0) / bars


def main() -> None:
    x, y = data()
    s = statistics.median(ours(x, y) for _ in range(5))
    naive = statistics.median(naive_per_bar_s(x, y) for _ in range(3)) * N
    print(f"backtest {N:,} 1m bars, W={W}: {s:.3f} s (median of 5)")
    print(f"naive pandas per-bar recompute, extrapolated to {N:,} bars: {naive:.1f} s")
    print(f"ratio: {naive / s:.0f}x")


if __name__ == "__main__":
    main()
