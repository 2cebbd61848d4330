"""CSV export of a pair: ticks, bars, the analytics series and alerts.

Pure and blocking: the app runs it in a thread worker, `quanttui export` calls it
directly. Each file is written to a temporary name and renamed into place only when
complete, and nothing is renamed unless every file was written, so a failure (an
unwritable directory, a full disk) never leaves a half-written CSV behind. Times are
ISO-8601 UTC; every file has a header row.

Every cell passes through `csv_cell`, so a file holds only plain numbers and text
whatever types the rows carry (numpy scalars used to leak out as ``np.float64(...)``),
and a spreadsheet never runs a text cell as a formula.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
import shutil
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from quanttui.analytics.backtest import TRADE_FIELDS, BacktestReport
from quanttui.analytics.funding import funding_columns
from quanttui.analytics.live import PairParams
from quanttui.analytics.snapshot import last_stationarity, run_bars
from quanttui.model import FUNDING_METRIC_NAMES, Alert, Snapshot, iso_utc
from quanttui.plausible import latest_ms
from quanttui.store.queries import load_funding_series, load_settled_bars

if TYPE_CHECKING:
    from quanttui.analytics.basket import BasketBacktestReport, BasketParams

ANALYTICS_COLUMNS = (
    "alpha beta r2 beta_se spread spread_mean zscore corr return_beta return_r2 "
    "return_beta_se half_life_bars kalman_q kalman_z"
).split()
STATIONARITY_COLUMNS = ("adf_p", "coint_p")
"""The analytics CSV's columns after `ANALYTICS_COLUMNS` (the funding ones follow): the ADF
and Engle-Granger p-values on the last row only (the last settled bar, the one a snapshot
reports; empty until W spreads exist). The tests are not kept per bar, so earlier rows
are empty."""

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is run as a formula by Excel, LibreOffice and
Google Sheets (OWASP, "CSV Injection")."""


class ExportError(Exception):
    """The export could not be written; nothing was left behind."""


def csv_cell(v: object) -> str:
    """The text of one CSV cell.

    * ``None`` and NaN: an empty cell;
    * booleans: ``1``/``0``; integers (Python or numpy): decimal digits;
    * other reals (Python or numpy): ``repr(float(v))``, the shortest text that reads
      back to the same double (``-0.0067``, ``1e-05``, ``inf``);
    * text: as is, except that text starting with ``= + - @``, a tab or a carriage
      return gets a leading ``'`` so that a spreadsheet shows it instead of evaluating
      it. Numbers are never text here, so a negative number stays a number.

    Anything else raises `TypeError` rather than writing its ``repr``.
    """
    if v is None:
        return ""
    if isinstance(v, bool | np.bool_):
        return "1" if v else "0"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        return "" if math.isnan(f) else repr(f)
    if isinstance(v, str):
        return "'" + v if v.startswith(FORMULA_PREFIXES) else v
    raise TypeError(f"no CSV form for {type(v).__name__}: {v!r}")


def _write(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    n = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([csv_cell(v) for v in r])
            n += 1
    return n


BAR_LEG_COLUMNS = ("open", "high", "low", "close", "volume", "trades", "filled")
"""The bars CSV's columns for each leg, after its prefix (``x_``, ``y_``, ``<SYMBOL>_``)."""

Plan = tuple[Sequence[str], Iterable[Sequence[object]]]
"""One CSV to write: its header and its rows (`_write_all`)."""


def _ticks(conn: sqlite3.Connection, symbols: Sequence[str]) -> Plan:
    """The ticks CSV of `symbols`: their stored trades up to the clock, oldest first."""

    def rows() -> Iterable[Sequence[object]]:
        marks = ",".join("?" * len(symbols))
        cur = conn.execute(
            "SELECT ts_ms, symbol, trade_id, price, qty, is_buyer_maker FROM ticks "
            f"WHERE symbol IN ({marks}) AND ts_ms <= ? ORDER BY ts_ms, symbol, trade_id",
            (*symbols, latest_ms()),
        )
        for ts, sym, tid, p, q, m in cur:
            yield (iso_utc(ts), sym, tid, p, q, m)

    return ("time", "symbol", "trade_id", "price", "qty", "is_buyer_maker"), rows()


def _alerts(conn: sqlite3.Connection, key: str) -> Plan:
    """The alerts CSV of the pair or basket `key` (``withdrawn`` empty before schema v2)."""

    def rows() -> Iterable[Sequence[object]]:
        cols = {r[1] for r in conn.execute("PRAGMA table_info(alerts)")}
        withdrawn = "withdrawn_ms" if "withdrawn_ms" in cols else "NULL"
        cur = conn.execute(
            f"SELECT ts_ms, pair, rule, metric, value, threshold, {withdrawn} FROM alerts "
            "WHERE pair = ? ORDER BY ts_ms, id",
            (key,),
        )
        for ts, pair, rule, metric, value, thr, gone in cur:
            yield (iso_utc(ts), pair, rule, metric, value, thr, iso_utc(gone) if gone else None)

    return ("time", "pair", "rule", "metric", "value", "threshold", "withdrawn"), rows()


def export_pair(
    conn: sqlite3.Connection,
    params: PairParams,
    out_dir: str | Path,
    *,
    now: datetime | None = None,
    settled_end_ms: int | None = None,
    now_ms: int | None = None,
) -> dict[str, tuple[Path, int]]:
    """Write the four CSVs; returns ``{kind: (path, rows)}``. Raises `ExportError`.

    The analytics are those of the settled bars only, so its last row is the bar a
    snapshot of the same data reports. They end at `settled_end_ms` (the engine passes
    the bucket its live builder has open), else where the stored data settles them
    (`quanttui.store.queries.settled_end_ms`, with the clock `now_ms` if given). The bars
    file also holds the stored buckets after that (the bar still open, from the trades
    stored so far), marked ``settled = 0``."""
    out = _out_dir(out_dir)
    stamp = _stamp(now)
    sx, sy, tf = params.symbol_x, params.symbol_y, params.timeframe

    bars, unsettled = load_settled_bars(
        conn,
        sx,
        sy,
        tf,
        end_ms=settled_end_ms,
        now_ms=now_ms,
        max_gap_bars=params.max_gap_bars,
    )
    engine = params.analytics(history=max(len(bars), 1))
    run_bars(engine, bars)
    stat = last_stationarity(engine)
    fund = _funding_columns(conn, params, list(engine.history))

    def bar_rows() -> Iterable[Sequence[object]]:
        for part, settled in ((bars, True), (unsettled, False)):
            for i in range(len(part)):
                b = part.pair_bar(i)
                yield (
                    iso_utc(b.ts_ms),
                    *(b.x.open, b.x.high, b.x.low, b.x.close, b.x.volume, b.x.trades),
                    b.x.filled,
                    *(b.y.open, b.y.high, b.y.low, b.y.close, b.y.volume, b.y.trades),
                    b.y.filled,
                    settled,
                )

    def analytics_rows() -> Iterable[Sequence[object]]:
        last = len(engine.history) - 1
        for k, m in enumerate(engine.history):
            tests = (stat.adf_p, stat.coint_p) if stat is not None and k == last else (None,) * 2
            yield (
                iso_utc(m.ts_ms),
                m.x,
                m.y,
                *(getattr(m, c) for c in ANALYTICS_COLUMNS),
                *tests,
                *(fund[c][k] for c in FUNDING_METRIC_NAMES),
            )

    plan = {
        "ticks": _ticks(conn, [sx, sy]),
        "bars": (
            (
                "time",
                *(f"x_{c}" for c in BAR_LEG_COLUMNS),
                *(f"y_{c}" for c in BAR_LEG_COLUMNS),
                "settled",
            ),
            bar_rows(),
        ),
        "analytics": (
            (
                "time",
                "close_x",
                "close_y",
                *ANALYTICS_COLUMNS,
                *STATIONARITY_COLUMNS,
                *FUNDING_METRIC_NAMES,
            ),
            analytics_rows(),
        ),
        "alerts": _alerts(conn, params.pair),
    }
    return _write_all(out, f"{sx}_{sy}_{tf}_{stamp}", plan)


BASKET_LEG_COLUMNS = ("close", "weight", "notional")
BASKET_COLUMNS = (
    "spread spread_mean zscore half_life_bars rank trace_stat trace_cv95 max_eig_stat "
    "max_eig_cv95 eig1"
).split()
"""The basket analytics CSV: `time`, per leg ``<SYMBOL>_close``, ``<SYMBOL>_weight`` (the
bar's own normalised first eigenvector) and ``<SYMBOL>_notional`` (of one unit), then
these (``trace_stat``, ``max_eig_stat`` and their 95 % values are the r = 0 rows)."""


def export_basket(
    conn: sqlite3.Connection,
    params: BasketParams,
    out_dir: str | Path,
    *,
    now: datetime | None = None,
    settled_end_ms: int | None = None,
    now_ms: int | None = None,
) -> dict[str, tuple[Path, int]]:
    """A basket's four CSVs (`export_pair`'s, with one column group per leg): ticks, bars
    (settled bars, then the stored buckets after them marked ``settled = 0``), analytics
    per settled bar (weights and spread of each bar as computed at that bar) and alerts.
    Returns ``{kind: (path, rows)}``; raises `ExportError`."""
    from quanttui.analytics.basket import run_basket_bars
    from quanttui.store.queries import load_settled_basket_bars

    out = _out_dir(out_dir)
    stamp = _stamp(now)
    syms = list(params.symbols)
    bars, unsettled = load_settled_basket_bars(
        conn,
        syms,
        params.timeframe,
        end_ms=settled_end_ms,
        now_ms=now_ms,
        max_gap_bars=params.max_gap_bars,
    )
    engine = params.analytics(history=max(len(bars), 1))
    run_basket_bars(engine, bars)
    m_legs = len(syms)

    def bar_rows() -> Iterable[Sequence[object]]:
        for part, settled in ((bars, True), (unsettled, False)):
            for i in range(len(part)):
                b = part.basket_bar(i)
                cells: list[object] = [iso_utc(b.ts_ms)]
                for leg in b.legs:
                    cells += [leg.open, leg.high, leg.low, leg.close, leg.volume, leg.trades]
                    cells.append(leg.filled)
                cells.append(settled)
                yield cells

    def analytics_rows() -> Iterable[Sequence[object]]:
        none = (None,) * m_legs
        for m in engine.history:
            cells: list[object] = [iso_utc(m.ts_ms)]
            for i in range(m_legs):
                cells += [m.closes[i], (m.weights or none)[i], (m.notional or none)[i]]
            if m.trace:
                tests = (m.rank, m.trace[0], m.trace_cv[0][1], m.max_eig[0], m.max_cv[0][1])
                tests += (m.eig[0],)
            else:
                tests = (None,) * 6
            yield (*cells, m.spread, m.spread_mean, m.zscore, m.half_life_bars, *tests)

    plan = {
        "ticks": _ticks(conn, syms),
        "bars": (
            ("time", *(f"{s}_{c}" for s in syms for c in BAR_LEG_COLUMNS), "settled"),
            bar_rows(),
        ),
        "analytics": (
            ("time", *(f"{s}_{c}" for s in syms for c in BASKET_LEG_COLUMNS), *BASKET_COLUMNS),
            analytics_rows(),
        ),
        "alerts": _alerts(conn, params.key),
    }
    return _write_all(out, f"{'_'.join(syms)}_{params.timeframe}_{stamp}", plan)


def export_basket_backtest(
    report: BasketBacktestReport, out_dir: str | Path, *, now: datetime | None = None
) -> dict[str, tuple[Path, int]]:
    """`backtest --out` for a basket: ``…_backtest_trades.csv`` (one row per trade, per-leg
    entry/exit prices, weights and quantities as ``<SYMBOL>_<field>`` columns) and
    ``…_backtest_equity.csv`` (``time, bar_pnl, equity``)."""
    out = _out_dir(out_dir)
    syms = report.symbols
    r = report.result
    per_leg = ("entry_price", "exit_price", "weight", "qty")

    def trades() -> Iterable[Sequence[object]]:
        for t in r.trades:
            cells: list[object] = [
                iso_utc(t.entry_time),
                iso_utc(t.exit_time) if t.exit_time is not None else None,
                t.side,
            ]
            exits = t.exit_prices or (None,) * len(syms)
            for i in range(len(syms)):
                cells += [t.entry_prices[i], exits[i], t.weights[i], t.qty[i]]
            cells += [t.pnl, t.bars_held, t.funding if r.funding is not None else None]
            yield cells

    def equity() -> Iterable[Sequence[object]]:
        for ts, pnl, eq in zip(
            r.ts_ms.tolist(), r.bar_pnl.tolist(), r.equity.tolist(), strict=True
        ):
            yield (iso_utc(ts), pnl, eq)

    plan = {
        "backtest_trades": (
            (
                "entry_time",
                "exit_time",
                "side",
                *(f"{s}_{c}" for s in syms for c in per_leg),
                "pnl",
                "bars_held",
                "funding",
            ),
            trades(),
        ),
        "backtest_equity": (("time", "bar_pnl", "equity"), equity()),
    }
    tf = report.params["timeframe"]
    return _write_all(out, f"{'_'.join(syms)}_{tf}_{_stamp(now)}", plan)


WATCHLIST_COLUMNS = (
    "pair symbol_x symbol_y timeframe window hedge bars time zscore beta corr adf_p coint_p "
    "half_life_s carry_bps_day last_alert_time last_alert_rule last_alert_value"
).split()


def export_watchlist(
    conn: sqlite3.Connection,
    pairs: Sequence[tuple[PairParams, Snapshot | None, Alert | None]],
    out_dir: str | Path,
    *,
    now: datetime | None = None,
    settled_ends: Mapping[str, int | None] | None = None,
    now_ms: int | None = None,
) -> tuple[Path, int]:
    """Every pair's four CSVs (`export_pair`, so named ``<X>_<Y>_<tf>_<stamp>_<kind>.csv``)
    and ``watchlist.csv`` in one new directory ``watchlist_<UTC stamp>`` of `out_dir`.

    ``watchlist.csv`` has one row per pair (`WATCHLIST_COLUMNS`): its parameters, the
    metrics of the snapshot given for it (the screen's, i.e. the last closed bar; empty
    cells before the first) and its last alert that stands. `settled_ends` (by pair,
    ``X/Y``) and `now_ms` are `export_pair`'s `settled_end_ms` and `now_ms` for each
    pair: the engine passes the bucket each pair has open, so each pair's analytics end
    at the bar of its snapshot. The directory is written as ``<name>.part`` and renamed
    when complete; on failure it is removed, so nothing is left behind. Returns
    (directory, CSV files written). Raises `ExportError`."""
    out = _out_dir(out_dir)
    now = now or datetime.now(UTC)
    stamp = _stamp(now)
    name, k = f"watchlist_{stamp}", 1
    while (out / name).exists() or (out / f"{name}.part").exists():
        k += 1
        name = f"watchlist_{stamp}-{k}"
    final, tmp = out / name, out / f"{name}.part"

    def summary() -> Iterable[Sequence[object]]:
        for p, snap, alert in pairs:
            s = snap
            carry = s.funding.carry_bps_day if s is not None and s.funding is not None else None
            yield (
                p.pair,
                p.symbol_x,
                p.symbol_y,
                p.timeframe,
                p.window,
                p.hedge,
                s.bars if s else None,
                iso_utc(s.time_ms) if s and s.time_ms is not None else None,
                *((getattr(s, c) if s else None) for c in ("zscore", "beta", "corr")),
                *((getattr(s, c) if s else None) for c in ("adf_p", "coint_p", "half_life_s")),
                carry,
                iso_utc(alert.ts_ms) if alert else None,
                alert.rule if alert else None,
                alert.value if alert else None,
            )

    files = 0
    try:
        tmp.mkdir()
        for p, _snap, _alert in pairs:
            end = (settled_ends or {}).get(p.pair)
            files += len(export_pair(conn, p, tmp, now=now, settled_end_ms=end, now_ms=now_ms))
        _write(tmp / "watchlist.csv", WATCHLIST_COLUMNS, summary())
        os.replace(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ExportError(f"export to {out} failed: {exc.strerror or exc}") from None
        raise
    return final, files + 1


def _funding_columns(
    conn: sqlite3.Connection, params: PairParams, hist: list
) -> dict[str, np.ndarray]:
    """`quanttui.analytics.funding.funding_columns` of the analytics rows, from the
    stored settlements of both legs."""
    series = load_funding_series(conn, [params.symbol_x, params.symbol_y])

    def col(name: str) -> np.ndarray:
        return np.fromiter((getattr(m, name) for m in hist), float, len(hist))

    return funding_columns(
        np.fromiter((m.ts_ms for m in hist), np.int64, len(hist)),
        col("x"),
        col("y"),
        col("beta"),
        col("zscore"),
        series[params.symbol_x],
        series[params.symbol_y],
        log_hedge=params.hedge == "log",
    )


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
            yield [t[k] for k in TRADE_FIELDS]

    def equity_rows() -> Iterable[Sequence[object]]:
        for ts, pnl, eq in zip(
            res.ts_ms.tolist(), res.bar_pnl.tolist(), res.equity.tolist(), strict=True
        ):
            yield (iso_utc(ts), pnl, eq)

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


def _write_all(out: Path, name: str, plan: dict[str, Plan]) -> dict[str, tuple[Path, int]]:
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
    except BaseException as exc:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ExportError(f"export to {out} failed: {exc.strerror or exc}") from None
        raise
    return written
