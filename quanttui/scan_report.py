"""The scan's ranking as plain values: JSON for ``quanttui scan --json``, the CSV written by
``--out`` and by ``e`` on the scanner screen, and the screen's cell texts.

Formatted here once, so the CLI, the CSV and the screen always agree. Undefined values
(NaN) are ``null`` in JSON, an empty cell in the CSV and ``—`` on screen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from quanttui.analytics.scan import BasketScan, PairStats
from quanttui.export import _out_dir, _stamp, _write_all
from quanttui.model import iso_utc

COLUMNS = (
    "rank",
    "y",
    "x",
    "qvalue",
    "pvalue",
    "adf_stat",
    "beta",
    "alpha",
    "half_life_bars",
    "half_life_min",
    "zscore",
    "corr",
    "hurst",
    "crossings_per_day",
    "carry_bps_day",
)


@dataclass(frozen=True, slots=True)
class ScanMeta:
    """What a ranking was computed from."""

    timeframe: str
    bar_ms: int
    start_ms: int
    end_ms: int
    bars: int
    adf_lags: int
    symbols: tuple[str, ...]
    tests: int
    skipped: tuple[tuple[str, str], ...] = ()


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def row_values(rank: int, r: PairStats, bar_ms: int) -> tuple:
    """One ranking row in `COLUMNS` order: numbers (None when undefined) and text."""
    hl = _num(r.half_life)
    return (
        rank,
        r.y,
        r.x,
        _num(r.qvalue),
        _num(r.pvalue),
        _num(r.tstat),
        _num(r.beta),
        _num(r.alpha),
        hl,
        None if hl is None else hl * bar_ms / 60_000,
        _num(r.zscore),
        _num(r.corr),
        _num(r.hurst),
        _num(r.crossings_per_day),
        _num(r.carry_bps_day),
    )


def scan_json(meta: ScanMeta, rows: Sequence[PairStats]) -> dict:
    """The ``--json`` document: the scan's parameters, skipped symbols and every row."""
    return {
        "timeframe": meta.timeframe,
        "start": iso_utc(meta.start_ms),
        "end": iso_utc(meta.end_ms),
        "bars": meta.bars,
        "adf_lags": meta.adf_lags,
        "symbols": list(meta.symbols),
        "skipped": [{"symbol": s, "reason": why} for s, why in meta.skipped],
        "tests": meta.tests,
        "pairs": [
            dict(zip(COLUMNS, row_values(k, r, meta.bar_ms), strict=True))
            for k, r in enumerate(rows, 1)
        ],
    }


def export_scan(
    meta: ScanMeta, rows: Iterable[PairStats], out_dir: str | Path, *, now: datetime | None = None
) -> tuple[Path, int]:
    """Write ``scan_<tf>_<UTC stamp>_ranking.csv`` (header `COLUMNS`, one row per ordered
    pair in ranking order; every cell a number, a symbol or empty for undefined) under a
    temporary name, renamed into place when complete. Raises `ExportError`."""
    out = _out_dir(out_dir)
    body = (row_values(k, r, meta.bar_ms) for k, r in enumerate(rows, 1))
    written = _write_all(out, f"scan_{meta.timeframe}_{_stamp(now)}", {"ranking": (COLUMNS, body)})
    return written["ranking"]


def fmt(v: float, spec: str) -> str:
    """Screen text of a number, ``—`` when undefined."""
    return "—" if v is None or not math.isfinite(v) else format(v, spec)


def fmt_p(v: float) -> str:
    """p- and q-values: fixed point down to 1e-4, then scientific."""
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.4f}" if v >= 1e-4 else f"{v:.0e}"


def fmt_half_life(bars: float, bar_ms: int) -> str:
    """Half-life in the most readable unit: minutes below 2 h, hours below 2 days, days."""
    if bars is None or not math.isfinite(bars):
        return "—"
    minutes = bars * bar_ms / 60_000
    if minutes < 120:
        return f"{minutes:.0f}m" if minutes >= 10 else f"{minutes:.1f}m"
    if minutes < 2880:
        return f"{minutes / 60:.1f}h"
    return f"{minutes / 1440:.1f}d"


BASKET_COLUMNS = (
    "rank",
    "basket",
    "p_holm",
    "pvalue",
    "trace_stat",
    "trace_cv95",
    "margin",
    "max_eig_stat",
    "coint_rank",
    "weights",
    "half_life_bars",
    "half_life_min",
    "zscore",
)


def basket_correction(scan: BasketScan) -> str:
    """The multiple-testing statement printed with every basket ranking."""
    return (
        f"Holm over the {scan.tests} baskets tested (built from the {scan.pairs} most "
        f"cointegrated pairs of the pair scan): p_holm < 0.05 keeps the family-wise error "
        f"rate at 5 %; pvalue is the trace test's (r = 0), from a Gamma fit to "
        f"{scan.draws} simulated null statistics at this sample length"
    )


def basket_values(rank: int, b, bar_ms: int) -> tuple:
    """One basket row in `BASKET_COLUMNS` order (weights as ``SYM:w`` joined by spaces)."""
    hl = _num(b.half_life)
    return (
        rank,
        "+".join(b.symbols),
        _num(b.p_holm),
        _num(b.pvalue),
        _num(b.trace_stat),
        _num(b.trace_cv95),
        _num(b.margin),
        _num(b.max_eig_stat),
        b.rank,
        " ".join(f"{s}:{w:.6g}" for s, w in zip(b.symbols, b.weights, strict=True)),
        hl,
        None if hl is None else hl * bar_ms / 60_000,
        _num(b.zscore),
    )


def basket_json(meta: ScanMeta, scan: BasketScan) -> dict:
    """``quanttui scan --basket K --json``."""
    rows = []
    for k, b in enumerate(scan.baskets, 1):
        row = dict(zip(BASKET_COLUMNS, basket_values(k, b, meta.bar_ms), strict=True))
        row["symbols"] = list(b.symbols)
        row["weights"] = dict(zip(b.symbols, b.weights, strict=True))
        rows.append(row)
    return {
        "timeframe": meta.timeframe,
        "start": iso_utc(meta.start_ms),
        "end": iso_utc(meta.end_ms),
        "bars": meta.bars,
        "symbols": list(meta.symbols),
        "skipped": [{"symbol": s, "reason": why} for s, why in meta.skipped],
        "basket_size": scan.size,
        "pairs_used": scan.pairs,
        "tests": scan.tests,
        "null_draws": scan.draws,
        "correction": basket_correction(scan),
        "baskets": rows,
    }


def export_baskets(
    meta: ScanMeta, scan: BasketScan, out_dir: str | Path, *, now: datetime | None = None
) -> tuple[Path, int]:
    """``scan_<tf>_<UTC stamp>_baskets.csv`` (header `BASKET_COLUMNS`), atomically."""
    out = _out_dir(out_dir)
    body = (basket_values(k, b, meta.bar_ms) for k, b in enumerate(scan.baskets, 1))
    name = f"scan_{meta.timeframe}_{_stamp(now)}"
    written = _write_all(out, name, {"baskets": (BASKET_COLUMNS, body)})
    return written["baskets"]
