"""Scanner carry column: `carry_matrix` over every ordered pair of 300 symbols, against a
Python loop calling the per-pair formula (`pair_carry_bps_day`) for each pair.

Usage: python benchmarks/bench_carry.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quanttui.analytics.funding import carry_matrix, daily_rate, pair_carry_bps_day  # noqa: E402

N = 300


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    rates = rng.normal(1e-4, 2e-4, N)
    intervals = rng.choice([1, 4, 8], N)
    prices = rng.uniform(0.01, 90_000, N)
    beta = rng.normal(0, 2, (N, N))
    return rates, intervals, prices, beta


def ours(rates, intervals, prices, beta) -> float:
    t0 = time.perf_counter()
    carry_matrix(daily_rate(rates, intervals), beta, prices)
    return time.perf_counter() - t0


def naive(rates, intervals, prices, beta) -> float:
    r, iv, p, b = rates.tolist(), intervals.tolist(), prices.tolist(), beta.tolist()
    t0 = time.perf_counter()
    for i in range(N):
        for j in range(N):
            if i != j:
                pair_carry_bps_day("short", b[i][j], p[i], p[j], r[i], r[j], iv[i], iv[j])
    return time.perf_counter() - t0


def main() -> None:
    d = data()
    s = statistics.median(ours(*d) for _ in range(21))
    n = statistics.median(naive(*d) for _ in range(3))
    print(f"carry_matrix, {N} symbols ({N * (N - 1):,} pairs): {s * 1e3:.2f} ms (median of 21)")
    print(f"per-pair Python loop: {n * 1e3:.0f} ms (median of 3)")
    print(f"ratio: {n / s:.0f}x")


if __name__ == "__main__":
    main()
