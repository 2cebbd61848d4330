"""Shared by the app benchmarks: the cyclic GC's pauses, which stop every thread."""

from __future__ import annotations

import gc
import heapq
import time
from array import array
from collections import Counter


class GcPauses:
    """Records each collection's generation, duration and the collecting thread's CPU time
    over it (any thread) while entered: a pause much longer than its CPU time was the
    process waiting for a core, not the collector working."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float, int, float, float]] = []
        self._start: tuple[float, float] | None = None

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter(), time.thread_time()
        elif self._start is not None:
            wall, cpu = self._start
            self.pauses.append(
                (
                    info["generation"],
                    time.perf_counter() - wall,
                    info["collected"],
                    time.thread_time() - cpu,
                    wall,
                )
            )
            self._start = None

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def summary(self) -> str:
        if not self.pauses:
            return "no collections"
        worst = max(self.pauses, key=lambda p: p[1])
        full = sum(p[0] == 2 for p in self.pauses)
        full_cpu = sorted(p[3] for p in self.pauses if p[0] == 2)
        median_full = (
            f"; a full one's CPU median {full_cpu[len(full_cpu) // 2] * 1000:.1f} ms, "
            f"max {full_cpu[-1] * 1000:.1f} ms"
            if full_cpu
            else ""
        )
        return (
            f"{len(self.pauses)} collections ({full} full), longest {worst[1] * 1000:.1f} ms "
            f"(generation {worst[0]}, {worst[2]:,} objects freed, {worst[3] * 1000:.1f} ms "
            f"of CPU){median_full}"
        )


class Stalls:
    """The event loop's stalls in constant memory, so that a long run does not measure
    its own growth (a list of 120,000 samples over 600 s grew RSS by ~13 MB): a histogram
    of 0.1 ms bins up to 2 s, and the `keep` worst with their times, the loop thread's
    CPU time over each and the whole process's (a stall with little of either was a wait
    for a core; with the process's CPU but not the thread's, another thread held the
    GIL)."""

    BIN_S = 1e-4
    BINS = 20_000

    def __init__(self, keep: int = 5) -> None:
        self.counts = array("q", bytes(8 * (self.BINS + 1)))
        self.worst: list[tuple[float, float, float, float]] = []
        self.keep = keep
        self.n = 0
        self.max = 0.0

    def add(
        self, stall: float, at: float, cpu: float = float("nan"), proc: float = float("nan")
    ) -> None:
        self.n += 1
        self.counts[min(int(max(stall, 0.0) / self.BIN_S), self.BINS)] += 1
        self.max = max(self.max, stall)
        if len(self.worst) < self.keep:
            heapq.heappush(self.worst, (stall, at, cpu, proc))
        elif stall > self.worst[0][0]:
            heapq.heapreplace(self.worst, (stall, at, cpu, proc))

    def quantile(self, q: float) -> float:
        """The upper edge of the bin that holds the q-quantile (within 0.1 ms)."""
        rank, seen = q * (self.n - 1), 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen > rank:
                return (i + 1) * self.BIN_S
        return self.max


def census() -> Counter[str]:
    """Objects the cyclic GC tracks and has not frozen, by type name, after a full
    collection (so garbage not yet collected is not counted): call it outside what is
    timed."""
    gc.collect()
    return Counter(type(o).__name__ for o in gc.get_objects())


def census_growth(before: Counter[str], after: Counter[str], top: int = 6) -> str:
    grown = (after - before).most_common(top)
    total = sum(after.values()) - sum(before.values())
    return f"{sum(before.values()):,} tracked at the start, {total:+,}; most grown: " + ", ".join(
        f"{name} {n:+,}" for name, n in grown
    )
