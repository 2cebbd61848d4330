"""Pair-scan speed: every ordered pair of a universe of 1,440 one-minute bars.

Ours: `scan_pairs` (Engle-Granger t and p, hedge ratio, correlation, half-life, z, Hurst,
BH q-values for all N(N-1) ordered pairs) plus `rank_pairs` for the top 300 rows with
their mean crossings (what the scanner screen shows), data already in memory.
Baseline, same run: statsmodels ``coint(y, x, trend='c', maxlag=1, autolag=None)`` on a
random sample of pairs, its median per-pair time extrapolated to all pairs (it computes
only the Engle-Granger test; the rest would come on top).

statsmodels is imported before timing (a one-time cost of about a second that the app
pays in a worker at start-up).

Usage: python benchmarks/bench_scan.py [--repeat 7] [--sample 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quanttui.analytics.scan import mackinnonp, rank_pairs, scan_pairs  # noqa: E402

BARS = 1440
LIMITS = {200: 0.5, 500: 1.5}


def universe(n: int, bars: int = BARS, seed: int = 7) -> np.ndarray:
    """Log closes of `n` symbols: a few common factors, idiosyncratic walks, and a
    quarter of the symbols cointegrated with another one."""
    rng = np.random.default_rng(seed)
    factors = np.cumsum(rng.normal(0, 6e-4, (bars, 4)), axis=0)
    load = rng.normal(0.8, 0.3, (4, n)) * (rng.random((4, n)) < 0.5)
    x = factors @ load + np.cumsum(rng.normal(0, 5e-4, (bars, n)), axis=0)
    for k in range(0, n // 4):
        j = rng.integers(n // 4, n)
        x[:, k] = rng.uniform(0.5, 1.5) * x[:, j] + rng.normal(0, 4e-4, bars)
    return x + rng.uniform(-3, 11, n)


def ours(x: np.ndarray, repeat: int) -> tuple[float, float]:
    names = [f"S{i:03d}USDT" for i in range(x.shape[1])]
    full, core = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = scan_pairs(x, names, adf_lags=1)
        t1 = time.perf_counter()
        rank_pairs(res, bar_ms=60_000, limit=300)
        t2 = time.perf_counter()
        core.append(t1 - t0)
        full.append(t2 - t0)
    return statistics.median(full), statistics.median(core)


def statsmodels_per_pair(x: np.ndarray, sample: int) -> float:
    from statsmodels.tsa.stattools import coint

    n = x.shape[1]
    rng = np.random.default_rng(1)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(sample):
            i, j = rng.choice(n, 2, replace=False)
            t0 = time.perf_counter()
            coint(x[:, i], x[:, j], trend="c", maxlag=1, autolag=None)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--sample", type=int, default=200)
    args = ap.parse_args()
    mackinnonp(np.zeros(1))  # import statsmodels and scipy outside the timings
    ok = True
    print(
        f"{'symbols':>7} {'pairs':>8} {'ours (median)':>14} {'stats only':>11} "
        f"{'coint/pair':>11} {'coint, all pairs':>17} {'ratio':>7}  limit"
    )
    for n, limit in LIMITS.items():
        x = universe(n)
        pairs = n * (n - 1)
        full, core = ours(x, args.repeat)
        per = statsmodels_per_pair(x, args.sample)
        naive = per * pairs
        ok &= full <= limit
        print(
            f"{n:>7} {pairs:>8,} {full:>12.3f} s {core:>9.3f} s {per * 1e3:>8.2f} ms "
            f"{naive:>15.1f} s {naive / full:>6.0f}x  <= {limit} s "
            f"{'ok' if full <= limit else 'OVER'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
