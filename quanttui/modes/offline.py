"""Modes that read stored data and print: `snapshot` and `backtest`."""

from __future__ import annotations

import sys

import orjson

from quanttui.analytics.engine import PairAnalytics
from quanttui.analytics.snapshot import build_snapshot, run_bars
from quanttui.config import Config
from quanttui.errors import UserError
from quanttui.store.db import StoreError, connect
from quanttui.store.queries import load_pair_bars


def _open(cfg: Config):
    try:
        return connect(cfg.db_path, readonly=True)
    except StoreError as exc:
        raise UserError(str(exc)) from None


def engine_for(cfg: Config, history: int = 600) -> PairAnalytics:
    a = cfg.analytics
    return PairAnalytics(
        a.window,
        a.hedge,
        kalman_delta=a.kalman_delta,
        kalman_obs_var=a.kalman_obs_var,
        history=history,
    )


def snapshot(cfg: Config, sx: str, sy: str, *, as_json: bool) -> int:
    a = cfg.analytics
    conn = _open(cfg)
    try:
        bars = load_pair_bars(conn, sx, sy, a.timeframe, max_gap_bars=2 * a.window)
    finally:
        conn.close()
    if len(bars) < a.window:
        raise UserError(
            f"too little data for {sx}/{sy} at {a.timeframe}: {len(bars)} bars stored, "
            f"the window needs {a.window} (z-score needs {2 * a.window - 1})"
        )
    engine = engine_for(cfg)
    run_bars(engine, bars)
    snap = build_snapshot(engine, sx, sy, a.timeframe)
    if as_json:
        sys.stdout.write(
            orjson.dumps(snap.as_json(), option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n"
        )
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from quanttui.report import snapshot_rows

    table = Table(title=f"{sy} = a + b·{sx}   {a.timeframe}  W={a.window}  {a.hedge}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for _key, label, value in snapshot_rows(snap):
        table.add_row(Text(label), Text(value))
    Console().print(table)
    if snap.flags:
        print("flags: " + ", ".join(snap.flags))
    return 0


def backtest(cfg: Config, sx: str, sy: str, args) -> int:
    import numpy as np

    from quanttui.analytics.backtest import BacktestParams, run_backtest
    from quanttui.model import iso_utc, parse_iso_ms

    a = cfg.analytics
    try:
        lo = parse_iso_ms(args.from_) if args.from_ else None
        hi = parse_iso_ms(args.to) if args.to else None
    except ValueError as exc:
        raise UserError(f"bad --from/--to time: {exc}", 2) from None
    conn = _open(cfg)
    try:
        bars = load_pair_bars(conn, sx, sy, a.timeframe, max_gap_bars=2 * a.window)
    finally:
        conn.close()
    engine = engine_for(cfg, history=max(len(bars), 1))
    run_bars(engine, bars)
    hist = list(engine.history)
    keep = [m for m in hist if (lo is None or m.ts_ms >= lo) and (hi is None or m.ts_ms <= hi)]
    if len(keep) < 2 or not any(np.isfinite(m.zscore) for m in keep):
        raise UserError(
            f"too little data for a backtest of {sx}/{sy} at {a.timeframe}: {len(keep)} bars in range, "
            f"z-scores need {2 * a.window - 1} bars"
        )
    col = lambda f: np.array([getattr(m, f) for m in keep], dtype=float)  # noqa: E731
    params = BacktestParams(a.entry_z, a.exit_z, args.stop_z, args.fee_bps, a.hedge == "log")
    res = run_backtest(
        np.array([m.ts_ms for m in keep]),
        col("x"),
        col("y"),
        col("zscore"),
        col("beta"),
        params,
        a.timeframe_ms,
    )

    def trade_json(t) -> dict:
        return {
            "entry_time": iso_utc(t.entry_time),
            "exit_time": iso_utc(t.exit_time) if t.exit_time is not None else None,
            "side": t.side,
            "entry_x": t.entry_x,
            "entry_y": t.entry_y,
            "exit_x": t.exit_x,
            "exit_y": t.exit_y,
            "beta": t.beta,
            "pnl": t.pnl,
            "bars_held": t.bars_held,
        }

    report = {
        "trades": [trade_json(t) for t in res.trades],
        "total_pnl": res.total_pnl,
        "fees": res.fees,
        "return_on_notional": res.return_on_notional,
        "sharpe": res.sharpe,
        "max_drawdown": res.max_drawdown,
        "win_rate": res.win_rate,
        "exposure": res.exposure,
        "bars": len(keep),
        "params": {
            **res.params,
            "symbol_x": sx,
            "symbol_y": sy,
            "timeframe": a.timeframe,
            "window": a.window,
            "hedge": a.hedge,
        },
    }
    if args.out:
        _write_backtest_csv(args.out, sx, sy, res, report)
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    con = Console()
    table = Table(
        title=f"backtest {sy} vs {sx}  {a.timeframe} W={a.window} {a.hedge}  {len(keep):,} bars"
    )
    for c in ("entry (UTC)", "exit (UTC)", "side", "b", "bars", "pnl"):
        table.add_column(c, justify="right")
    for t in report["trades"]:
        table.add_row(
            t["entry_time"][:19],
            (t["exit_time"] or "open")[:19],
            t["side"],
            f"{t['beta']:.4g}",
            str(t["bars_held"]),
            f"{t['pnl']:,.2f}",
        )
    con.print(table)
    fmt = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
    con.print(
        f"total pnl {res.total_pnl:,.2f}  fees {res.fees:,.2f}  return/notional {fmt(res.return_on_notional, '.4%')}  "
        f"sharpe {fmt(res.sharpe, '.2f')}  max dd {res.max_drawdown:,.2f}  win rate {fmt(res.win_rate, '.0%')}  "
        f"exposure {res.exposure:.0%}",
        markup=False,
        highlight=False,
    )
    return 0


def _write_backtest_csv(out: str, sx: str, sy: str, res, report: dict) -> None:
    import csv
    import os
    from pathlib import Path

    from quanttui.model import iso_utc

    d = Path(out).expanduser()
    try:
        d.mkdir(parents=True, exist_ok=True)
        trades = d / f"{sx}_{sy}_backtest_trades.csv"
        equity = d / f"{sx}_{sy}_backtest_equity.csv"
        keys = list(report["trades"][0]) if report["trades"] else ["entry_time"]
        with open(trades.with_suffix(".part"), "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(report["trades"])
        with open(equity.with_suffix(".part"), "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["time", "bar_pnl", "equity"])
            for t, p, e in zip(
                res.ts_ms.tolist(), res.bar_pnl.tolist(), res.equity.tolist(), strict=True
            ):
                w.writerow([iso_utc(t), repr(p), repr(e)])
        os.replace(trades.with_suffix(".part"), trades)
        os.replace(equity.with_suffix(".part"), equity)
    except OSError as exc:
        raise UserError(f"cannot write backtest CSVs to {d}: {exc.strerror or exc}") from None


def export(cfg: Config, sx: str, sy: str, out: str) -> int:
    from quanttui.analytics.live import PairParams
    from quanttui.export import ExportError, export_pair

    a = cfg.analytics
    params = PairParams(sx, sy, a.timeframe, a.window, a.hedge, a.kalman_delta, a.kalman_obs_var)
    conn = _open(cfg)
    try:
        written = export_pair(conn, params, out)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    finally:
        conn.close()
    for path, rows in written.values():
        print(f"{path}  ({rows:,} rows)")
    return 0
