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

from quanttui.analytics.funding import (  # noqa: E402
    carry_matrix,
    daily_rate,
    pair_carry_bps_day,
    signal_side,
)

N = 300


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    rates = rng.normal(1e-4, 2e-4, N)
    intervals = rng.choice([1, 4, 8], N)
    z = rng.normal(0, 2, (N, N))
    beta = rng.normal(0, 2, (N, N))
    return rates, intervals, z, beta


def ours(rates, intervals, z, beta) -> float:
    t0 = time.perf_counter()
    carry_matrix(z, beta, daily_rate(rates, intervals))
    return time.perf_counter() - t0


def naive(rates, intervals, z, beta) -> float:
    r, iv, zz, b = rates.tolist(), intervals.tolist(), z.tolist(), beta.tolist()
    t0 = time.perf_counter()
    for i in range(N):
        for j in range(N):
            if i != j:
                side = signal_side(zz[i][j])
                pair_carry_bps_day(
                    side, b[i][j], 1.0, 1.0, r[j], r[i], iv[j], iv[i], log_hedge=True
                )
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
