"""Rolling Johansen speed.

Per-bar cost of `RollingJohansen.update` (moment sums, O(p^2) add/remove, m x m
eigenproblem) and of the basket's whole per-bar step, `BasketAnalytics.update` (the test,
the spread with the bar's weights, its z-score and half-life: what the live engine and
every recompute run), at W=1000 for 3- and 5-leg baskets, against a naive statsmodels
`coint_johansen` refit of the window on every bar, in the same run. The naive path is
timed on fewer bars; medians are per bar (the rolling mean includes the exact
recompute every W bars).

Usage: python benchmarks/bench_johansen.py [bars]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quanttui.analytics.basket import BasketParams  # noqa: E402
from quanttui.analytics.johansen import RollingJohansen  # noqa: E402

W = 1000
NAIVE_BARS = 200


def basket(n: int, m: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, 2e-4, (n, m)), axis=0))


def bench(m: int, bars: int, det_order: int = 0, k: int = 1) -> tuple[float, float, float, float]:
    from statsmodels.tsa.vector_ar.vecm import coint_johansen

    p = basket(W + bars, m, seed=m)
    rj = RollingJohansen(m, W, det_order, k, log=True)
    for i in range(W):
        rj.update(p[i])
    roll = []
    for i in range(W, W + bars):
        t0 = time.perf_counter()
        rj.update(p[i])
        roll.append(time.perf_counter() - t0)
    eng = BasketParams(tuple(f"L{i}" for i in range(m)), "1m", W, det_order, k).analytics()
    for i in range(W):
        eng.update(i, p[i])
    full = []
    for i in range(W, W + bars):
        t0 = time.perf_counter()
        eng.update(i, p[i])
        full.append(time.perf_counter() - t0)
    lv = np.log(p)
    naive = []
    for i in range(W, W + min(bars, NAIVE_BARS)):
        t0 = time.perf_counter()
        coint_johansen(lv[i - W + 1 : i + 1], det_order, k)
        naive.append(time.perf_counter() - t0)
    return (
        statistics.median(roll),
        statistics.fmean(roll),
        statistics.median(full),
        statistics.median(naive),
    )


def main() -> None:
    bars = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    print(f"Johansen per bar, W={W}, det_order=0, k_ar_diff=1, log prices")
    print(f"rolling: {bars} bars (incl. exact recompute every W); naive: {NAIVE_BARS} bars")
    print(
        f"{'legs':>4} {'rolling us':>11} {'(mean)':>8} {'basket us':>10} {'naive us':>10} "
        f"{'ratio':>7}"
    )
    for m in (3, 5):
        r, mean, full, n = bench(m, bars)
        print(
            f"{m:>4} {r * 1e6:>11.1f} {mean * 1e6:>8.1f} {full * 1e6:>10.1f} {n * 1e6:>10.1f} "
            f"{n / full:>6.1f}x"
        )


if __name__ == "__main__":
    main()
