"""ADF + Engle-Granger per closed bar: the QR lag search against statsmodels.

Each closed bar of every watched pair runs `stationarity` (ADF of the spread window and
the cointegration test of the legs) in the engine's worker thread; with 20 pairs on 1s
bars that is 20 runs a second. statsmodels fits one OLS model per candidate lag count
(16 at W=300) for each of the two tests; `quanttui.analytics.stationarity` gets every
lag count's RSS from one QR factorisation. Both run here on the same seeded windows:
median per call over rounds, and the ratio.

Usage: python benchmarks/bench_stationarity.py [--rounds 7]
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

from quanttui.analytics.stationarity import stationarity  # noqa: E402


def statsmodels_both(s: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from statsmodels.tsa.stattools import adfuller, coint

    adf = adfuller(s, regression="c", autolag="AIC", result_object=False)
    return adf[1], coint(y, x, trend="c", autolag="aic")[1]


def windows(w: int, k: int = 40, seed: int = 3) -> list[tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        x = np.log(90_000) + np.cumsum(rng.normal(0, 2e-4, w))
        y = 0.8 * x + 0.3 + np.cumsum(rng.normal(0, 1e-4, w)) * 0.2
        b, a = np.polyfit(x, y, 1)
        out.append((y - a - b * x, x, y))
    return out


def per_call_ms(fn, data, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for s, x, y in data:
            fn(s, x, y)
        times.append((time.perf_counter() - t0) / len(data) * 1e3)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    warnings.simplefilter("ignore")
    print("ADF (autolag AIC) + coint per closed bar, median ms per call")
    print(f"{'W':>6} {'statsmodels':>12} {'quanttui':>10} {'ratio':>7}")
    for w in (120, 300, 1000):
        data = windows(w)
        for s, x, y in data[:2]:
            assert abs(stationarity(s, x, y).adf_p - statsmodels_both(s, x, y)[0]) < 1e-9
        naive = per_call_ms(statsmodels_both, data, args.rounds)
        fast = per_call_ms(stationarity, data, args.rounds)
        print(f"{w:>6} {naive:>12.2f} {fast:>10.2f} {naive / fast:>6.1f}x")


if __name__ == "__main__":
    main()
