"""Modes that read stored data and print: `snapshot` and `backtest`."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from quanttui.analytics.funding import FundingState
from quanttui.analytics.live import PairParams
from quanttui.analytics.snapshot import build_snapshot, run_bars
from quanttui.config import Config
from quanttui.errors import UserError
from quanttui.store.db import StoreError, connect
from quanttui.store.queries import (
    funding_intervals,
    load_funding_series,
    load_marks,
    load_pair_bars,
    load_settled_bars,
)
from quanttui.textsafe import printable

if TYPE_CHECKING:
    from quanttui.analytics.basket import BasketParams


def _open(cfg: Config):
    try:
        return connect(cfg.db_path, readonly=True)
    except StoreError as exc:
        raise UserError(str(exc)) from None


@contextlib.contextmanager
def _reading(cfg: Config) -> Iterator[sqlite3.Connection]:
    """A read-only connection; a database fault met while reading (damaged pages behind
    an intact header) is one line naming the file, never a traceback."""
    conn = _open(cfg)
    try:
        yield conn
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{cfg.db_path}: corrupt or unreadable database ({exc})") from None
    finally:
        conn.close()


def snapshot(cfg: Config, sx: str, sy: str, *, as_json: bool) -> int:
    """The metrics at the last settled bar (`quanttui.store.queries.settled_end_ms`): a
    bar whose trades may not all be stored yet is left out, as the engine's alerts and
    snapshots leave out the bar still open."""
    a = cfg.analytics
    with _reading(cfg) as conn:
        bars, _open_bars = load_settled_bars(conn, sx, sy, a.timeframe, max_gap_bars=2 * a.window)
        marks = load_marks(conn, [sx, sy])
        intervals = funding_intervals(conn, [sx, sy])
    if len(bars) < a.window:
        raise UserError(
            f"too little data for {sx}/{sy} at {a.timeframe}: {len(bars)} settled bars stored, "
            f"the window needs {a.window} (z-score needs {2 * a.window - 1})"
        )
    engine = PairParams(
        sx, sy, a.timeframe, a.window, a.hedge, a.kalman_delta, a.kalman_obs_var
    ).analytics()
    run_bars(engine, bars)
    snap = build_snapshot(engine, sx, sy, a.timeframe)
    if marks:
        state = FundingState.from_marks(
            sx, sy, marks.values(), intervals, log_hedge=a.hedge == "log"
        )
        now = int(time.time() * 1000)
        snap = dataclasses.replace(snap, funding=state.metrics(snap.beta, snap.zscore, now))
    if as_json:
        sys.stdout.write(
            orjson.dumps(snap.as_json(), option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n"
        )
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from quanttui.report import funding_rows, snapshot_rows

    table = Table(
        title=f"{sx} -> {sy}  ({sy} = a + b·{sx})  {a.timeframe}  W={a.window}  {a.hedge}"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for _key, label, value in snapshot_rows(snap):
        table.add_row(Text(label), Text(value))
    if snap.funding is not None:
        for _key, label, value in funding_rows(snap):
            table.add_row(Text(label), Text(value))
    Console().print(table)
    if snap.flags:
        print("flags: " + ", ".join(snap.flags))
    return 0


def backtest(cfg: Config, sx: str, sy: str, args) -> int:
    from quanttui.analytics.backtest import BacktestParams, backtest_bars
    from quanttui.export import ExportError, export_backtest
    from quanttui.model import parse_iso_ms

    a, b = cfg.analytics, cfg.backtest
    try:
        lo = parse_iso_ms(args.from_) if args.from_ else None
        hi = parse_iso_ms(args.to) if args.to else None
    except ValueError as exc:
        raise UserError(f"bad --from/--to time: {exc}", 2) from None
    pair = PairParams(sx, sy, a.timeframe, a.window, a.hedge, a.kalman_delta, a.kalman_obs_var)
    with _reading(cfg) as conn:
        bars = load_pair_bars(conn, sx, sy, a.timeframe, max_gap_bars=pair.max_gap_bars)
        series = load_funding_series(conn, [sx, sy])
    params = BacktestParams(a.entry_z, a.exit_z, b.stop_z or None, b.fee_bps, a.hedge == "log")
    try:
        report = backtest_bars(bars, pair, params, lo, hi, (series[sx], series[sy]))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.out:
        try:
            written = export_backtest(report, args.out)
        except ExportError as exc:
            raise UserError(str(exc)) from None
        for path, rows in written.values():
            print(f"{path}  ({rows:,} rows)", file=sys.stderr)
    if args.json:
        sys.stdout.write(
            orjson.dumps(report.as_json(), option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n"
        )
        return 0
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from quanttui.report import (
        BACKTEST_COLUMNS,
        backtest_day,
        backtest_rows,
        backtest_summary,
        backtest_title,
    )

    con = Console()
    con.print(f"backtest {backtest_title(report)}", markup=False, highlight=False)
    con.print(backtest_summary(report), markup=False, highlight=False)
    day = backtest_day(report)
    table = Table(
        title=f"trades, times UTC{f' on {day}' if day else ''}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for c in BACKTEST_COLUMNS:
        table.add_column(c, justify="right", no_wrap=True)
    for row in backtest_rows(report):
        table.add_row(*row)
    con.print(table)
    return 0


def export(cfg: Config, sx: str, sy: str, out: str) -> int:
    from quanttui.export import ExportError, export_pair

    a = cfg.analytics
    params = PairParams(sx, sy, a.timeframe, a.window, a.hedge, a.kalman_delta, a.kalman_obs_var)
    with _reading(cfg) as conn:
        try:
            written = export_pair(conn, params, out)
        except ExportError as exc:
            raise UserError(str(exc)) from None
    for path, rows in written.values():
        print(f"{path}  ({rows:,} rows)")
    return 0


def import_files(cfg: Config, files: list[str], symbol: str | None, *, progress: bool) -> int:
    """Import each file in its own transaction; exit 1 if any file failed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.text import Text

    from quanttui.store.importer import ArchiveError, estimate_rows, import_file

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    conn = _open_writable(cfg)
    failed = 0
    total_new = 0
    try:
        with Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=not progress or not err.is_terminal,
            transient=True,
        ) as bar:
            for f in files:
                task = bar.add_task(printable(Path(f).name, 60), total=estimate_rows(f))

                def tick(rows: int, task: int = task) -> None:
                    bar.update(task, completed=rows)

                try:
                    res = import_file(conn, f, symbol=symbol, progress=tick)
                except ArchiveError as exc:
                    failed += 1
                    bar.remove_task(task)
                    err.print(Text(f"quanttui: error: {printable(exc, 1000, one_line=True)}"))
                    continue
                bar.remove_task(task)
                total_new += res.inserted
                name = printable(res.path, one_line=True)
                err.print(
                    Text(
                        f"{name}: {res.symbol} {res.kind}, {res.rows:,} rows, {res.inserted:,} new"
                    )
                )
    finally:
        conn.close()
    ok = len(files) - failed
    err.print(
        f"imported {ok} of {len(files)} file{'s' if len(files) != 1 else ''}, "
        f"{total_new:,} new rows into {cfg.db_path}",
        markup=False,
    )
    return 1 if failed else 0


def _open_writable(cfg: Config):
    try:
        conn = connect(cfg.db_path)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def basket_params(cfg: Config, symbols: list[str]) -> BasketParams:
    """The basket of `symbols` with the config's `[analytics]` timeframe and window and
    `[basket]` keys; a bad combination is a usage error (exit 2)."""
    from quanttui.analytics.basket import BasketParams

    a, b = cfg.analytics, cfg.basket
    try:
        return BasketParams(
            tuple(symbols), a.timeframe, a.window, b.det_order, b.k_ar_diff, b.log_prices
        )
    except ValueError as exc:
        raise UserError(f"basket {'+'.join(symbols)}: {exc}", 2) from None


def _check_legs(conn: sqlite3.Connection, symbols: list[str]) -> None:
    """A leg with nothing stored (a typo, a symbol never recorded) is exit 2."""
    from quanttui.store.queries import newest_data_ms

    missing = [s for s in symbols if newest_data_ms(conn, [s], "1m") is None]
    if missing:
        raise UserError(f"no data stored for {', '.join(missing)} in the database", 2)


def basket_snapshot(cfg: Config, symbols: list[str], *, as_json: bool) -> int:
    """`quanttui snapshot A B C`: the basket's metrics at its last settled bar."""
    from quanttui.analytics.basket import build_basket_snapshot, run_basket_bars
    from quanttui.store.queries import load_settled_basket_bars

    params = basket_params(cfg, symbols)
    with _reading(cfg) as conn:
        _check_legs(conn, symbols)
        bars, _open = load_settled_basket_bars(
            conn, symbols, params.timeframe, max_gap_bars=params.max_gap_bars
        )
    if len(bars) < params.window:
        raise UserError(
            f"too little data for {params.key} at {params.timeframe}: {len(bars)} settled "
            f"bars stored, the window needs {params.window} (z-score needs "
            f"{2 * params.window - 1})"
        )
    engine = params.analytics(history=1)
    run_basket_bars(engine, bars)
    doc = build_basket_snapshot(engine, series=0).as_json()
    if as_json:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from quanttui.report import basket_rows

    table = Table(
        title=f"{params.key}  {params.timeframe}  W={params.window}  "
        f"det_order={params.det_order} k_ar_diff={params.k_ar_diff}  "
        f"{'log prices' if params.log_prices else 'prices'}"
    )
    table.add_column("metric")
    for s in ("value", "90%", "95%", "99%"):
        table.add_column(s, justify="right")
    for row in basket_rows(doc):
        table.add_row(*(Text(c) for c in row))
    Console().print(table)
    return 0


def basket_export(cfg: Config, symbols: list[str], out: str) -> int:
    from quanttui.export import ExportError, export_basket

    params = basket_params(cfg, symbols)
    with _reading(cfg) as conn:
        _check_legs(conn, symbols)
        try:
            written = export_basket(conn, params, out)
        except ExportError as exc:
            raise UserError(str(exc)) from None
    for path, rows in written.values():
        print(f"{path}  ({rows:,} rows)")
    return 0


def basket_backtest(cfg: Config, symbols: list[str], args) -> int:
    from quanttui.analytics.backtest import BacktestParams
    from quanttui.analytics.basket import backtest_basket
    from quanttui.export import ExportError, export_basket_backtest
    from quanttui.model import parse_iso_ms
    from quanttui.store.queries import load_basket_bars

    a, b = cfg.analytics, cfg.backtest
    try:
        lo = parse_iso_ms(args.from_) if args.from_ else None
        hi = parse_iso_ms(args.to) if args.to else None
    except ValueError as exc:
        raise UserError(f"bad --from/--to time: {exc}", 2) from None
    params = basket_params(cfg, symbols)
    if not 0 <= cfg.basket.min_rank <= len(symbols):
        raise UserError(
            f"--min-rank must be 0 to {len(symbols)} (the legs), got {cfg.basket.min_rank}", 2
        )
    with _reading(cfg) as conn:
        _check_legs(conn, symbols)
        bars = load_basket_bars(conn, symbols, a.timeframe, max_gap_bars=params.max_gap_bars)
        series = load_funding_series(conn, symbols)
    bt = BacktestParams(a.entry_z, a.exit_z, b.stop_z or None, b.fee_bps, params.log_prices)
    try:
        report = backtest_basket(
            bars, params, bt, lo, hi, [series[s] for s in symbols], min_rank=cfg.basket.min_rank
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.out:
        try:
            written = export_basket_backtest(report, args.out)
        except ExportError as exc:
            raise UserError(str(exc)) from None
        for path, rows in written.values():
            print(f"{path}  ({rows:,} rows)", file=sys.stderr)
    doc = report.as_json()
    if args.json:
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
        return 0

    def num(v: float | None, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    r = report.result
    print(
        f"backtest {params.key} {params.timeframe} W={params.window}: {report.bars:,} bars, "
        f"{len(r.trades)} trades, pnl {num(r.total_pnl, ',.4f')} (fees {num(r.fees, ',.4f')}), "
        f"return on notional {num(r.return_on_notional, '.4%')}, sharpe {num(r.sharpe, '.2f')}, "
        f"max drawdown {num(r.max_drawdown, ',.4f')}, win rate {num(r.win_rate, '.0%')}, "
        f"exposure {r.exposure:.0%}"
    )
    f = r.funding
    if f is not None and f.expected:
        print(
            f"funding {f.total:+,.4f}; pnl after funding {r.pnl_after_funding:,.4f}; coverage "
            f"{f.coverage:.0%}: {f.missing} of {f.expected} settlements missing, "
            f"{f.missing_in_position} while in a position (not counted)"
        )
    return 0
