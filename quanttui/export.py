"""CSV export of a pair: ticks, bars, the analytics series and alerts.

Pure and blocking: the app runs it in a thread worker, `quanttui export` calls it
directly. Each file is written to a temporary name and renamed into place only when
complete, and nothing is renamed unless every file was written, so a failure (an
unwritable directory, a full disk) never leaves a half-written CSV behind. Times are
ISO-8601 UTC; every file has a header row.
"""

from __future__ import annotations

import csv
import math
import os
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from quanttui.analytics.backtest import TRADE_FIELDS, BacktestReport
from quanttui.analytics.live import PairParams
from quanttui.analytics.snapshot import run_bars
from quanttui.model import iso_utc
from quanttui.plausible import latest_ms
from quanttui.store.queries import load_pair_bars

ANALYTICS_COLUMNS = (
    "alpha beta r2 beta_se spread spread_mean zscore corr return_beta return_r2 "
    "return_beta_se half_life_bars"
).split()


class ExportError(Exception):
    """The export could not be written; nothing was left behind."""


def _fmt(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


def _write(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    n = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow(r)
            n += 1
    return n


def export_pair(
    conn: sqlite3.Connection,
    params: PairParams,
    out_dir: str | Path,
    *,
    now: datetime | None = None,
) -> dict[str, tuple[Path, int]]:
    """Write the four CSVs; returns ``{kind: (path, rows)}``. Raises `ExportError`."""
    out = _out_dir(out_dir)
    stamp = _stamp(now)
    sx, sy, tf = params.symbol_x, params.symbol_y, params.timeframe

    bars = load_pair_bars(conn, sx, sy, tf, max_gap_bars=params.max_gap_bars)
    engine = params.analytics(history=max(len(bars), 1))
    run_bars(engine, bars)

    def ticks() -> Iterable[Sequence[object]]:
        cur = conn.execute(
            "SELECT ts_ms, symbol, trade_id, price, qty, is_buyer_maker FROM ticks "
            "WHERE symbol IN (?, ?) AND ts_ms <= ? ORDER BY ts_ms, symbol, trade_id",
            (sx, sy, latest_ms()),
        )
        for ts, sym, tid, p, q, m in cur:
            yield (iso_utc(ts), sym, tid, repr(p), repr(q), m)

    def bar_rows() -> Iterable[Sequence[object]]:
        for i in range(len(bars)):
            b = bars.pair_bar(i)
            yield (
                iso_utc(b.ts_ms),
                *(repr(v) for v in (b.x.open, b.x.high, b.x.low, b.x.close, b.x.volume)),
                b.x.trades,
                int(b.x.filled),
                *(repr(v) for v in (b.y.open, b.y.high, b.y.low, b.y.close, b.y.volume)),
                b.y.trades,
                int(b.y.filled),
            )

    def analytics_rows() -> Iterable[Sequence[object]]:
        for m in engine.history:
            yield (
                iso_utc(m.ts_ms),
                repr(m.x),
                repr(m.y),
                *(_fmt(getattr(m, c)) for c in ANALYTICS_COLUMNS),
            )

    def alert_rows() -> Iterable[Sequence[object]]:
        cur = conn.execute(
            "SELECT ts_ms, pair, rule, metric, value, threshold FROM alerts WHERE pair = ? ORDER BY ts_ms, id",
            (params.pair,),
        )
        for ts, pair, rule, metric, value, thr in cur:
            yield (iso_utc(ts), pair, rule, metric, repr(value), repr(thr))

    leg = ("open", "high", "low", "close", "volume", "trades", "filled")
    plan = {
        "ticks": (("time", "symbol", "trade_id", "price", "qty", "is_buyer_maker"), ticks()),
        "bars": (
            ("time", *(f"x_{c}" for c in leg), *(f"y_{c}" for c in leg)),
            bar_rows(),
        ),
        "analytics": (("time", "close_x", "close_y", *ANALYTICS_COLUMNS), analytics_rows()),
        "alerts": (("time", "pair", "rule", "metric", "value", "threshold"), alert_rows()),
    }
    return _write_all(out, f"{sx}_{sy}_{tf}_{stamp}", plan)


def export_backtest(
    report: BacktestReport, out_dir: str | Path, *, now: datetime | None = None
) -> dict[str, tuple[Path, int]]:
    """Write ``<X>_<Y>_<tf>_<stamp>_backtest_trades.csv`` (one row per trade, the `--json`
    trade fields) and ``..._backtest_equity.csv`` (time, bar_pnl, equity per bar)."""
    out = _out_dir(out_dir)
    p = report.params
    res = report.result
    trades = report.trades_json()

    def trade_rows() -> Iterable[Sequence[object]]:
        for t in trades:
            yield ["" if v is None else repr(v) if isinstance(v, float) else v for v in t.values()]

    def equity_rows() -> Iterable[Sequence[object]]:
        for ts, pnl, eq in zip(
            res.ts_ms.tolist(), res.bar_pnl.tolist(), res.equity.tolist(), strict=True
        ):
            yield (iso_utc(ts), repr(pnl), repr(eq))

    plan = {
        "backtest_trades": (TRADE_FIELDS, trade_rows()),
        "backtest_equity": (("time", "bar_pnl", "equity"), equity_rows()),
    }
    name = f"{p['symbol_x']}_{p['symbol_y']}_{p['timeframe']}_{_stamp(now)}"
    return _write_all(out, name, plan)


def _stamp(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def _out_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create export dir {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise ExportError(f"export dir {out} is not writable")
    return out


def _write_all(
    out: Path, name: str, plan: dict[str, tuple[Sequence[str], Iterable[Sequence[object]]]]
) -> dict[str, tuple[Path, int]]:
    """All files under temporary names, then all renamed; on failure none is left."""
    written: dict[str, tuple[Path, int]] = {}
    temps: list[tuple[Path, Path]] = []
    try:
        for kind, (header, rows) in plan.items():
            final = out / f"{name}_{kind}.csv"
            tmp = final.with_suffix(".csv.part")
            temps.append((tmp, final))
            written[kind] = (final, _write(tmp, header, rows))
        for tmp, final in temps:
            os.replace(tmp, final)
    except (OSError, sqlite3.Error) as exc:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, sqlite3.Error):
            raise
        raise ExportError(f"export to {out} failed: {exc.strerror or exc}") from None
    return written
