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
