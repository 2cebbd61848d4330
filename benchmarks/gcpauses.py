"""Shared by the app benchmarks: the cyclic GC's pauses, which stop every thread."""

from __future__ import annotations

import gc
import time


class GcPauses:
    """Records each collection's generation and duration (any thread) while entered."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._start: float | None = None

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif self._start is not None:
            self.pauses.append((info["generation"], time.perf_counter() - self._start))
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
        full = sum(g == 2 for g, _ in self.pauses)
        return (
            f"{len(self.pauses)} collections ({full} full), longest {worst[1] * 1000:.1f} ms "
            f"(generation {worst[0]})"
        )
