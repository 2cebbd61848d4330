"""`quanttui scan`: fetch what is missing, rank every ordered pair, then print the ranking as
JSON (``--json``), write it as CSV (``--out DIR``), or open the scanner screen (from which
Enter opens a pair's monitor in this process, on the same database; see
`quanttui.app.scan_app`).

Progress and warnings go to stderr (a self-updating line on a terminal, plain lines
otherwise); stdout carries only the JSON document.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import orjson

from quanttui.analytics.scan import rank_pairs
from quanttui.config import Config
from quanttui.errors import UserError
from quanttui.feed.klines import SyncProgress
from quanttui.scanner import ScanError, ScanRequest, compute, run_refresh


def warn(message: str) -> None:
    print(f"quanttui: warning: {message}", file=sys.stderr, flush=True)


def progress_printer() -> tuple[Callable[[SyncProgress], None], Callable[[], None]]:
    """`(update, finish)`: a throttled self-updating stderr line on a terminal; on a pipe,
    a line per weight wait and nothing else until `finish`."""
    tty = sys.stderr.isatty()
    state = {"last": 0.0, "shown": False, "p": None, "detail": ""}

    def line(p: SyncProgress) -> str:
        text = (
            f"klines: {p.symbols_done}/{p.symbols_total} symbols, {p.rows:,} rows, "
            f"{p.requests} requests"
        )
        return text + (f"  ({p.detail})" if p.detail else "")

    def update(p: SyncProgress) -> None:
        state["p"] = p
        if not tty:
            if p.detail and p.detail != state["detail"]:
                print(f"klines: {p.detail}", file=sys.stderr, flush=True)
            state["detail"] = p.detail
            return
        now = time.monotonic()
        if now - state["last"] >= 0.1 or p.symbols_done == p.symbols_total:
            state["last"] = now
            state["shown"] = True
            sys.stderr.write("\r\x1b[K" + line(p))
            sys.stderr.flush()

    def finish() -> None:
        p = state["p"]
        if tty and state["shown"]:
            sys.stderr.write("\r\x1b[K")
        if p is not None:
            waits = f", {p.waits} weight waits" if p.waits else ""
            print(
                f"klines: {p.rows:,} new rows for {p.symbols_total} symbols in "
                f"{p.requests} requests{waits}",
                file=sys.stderr,
                flush=True,
            )

    return update, finish


def run(
    cfg: Config,
    req: ScanRequest,
    *,
    as_json: bool,
    out_dir: str | None,
    basket: int = 0,
    basket_pairs: int = 30,
) -> int:
    from quanttui.store.db import StoreError, prepare

    try:
        req.check()
        prepare(req.db_path)
    except ScanError as exc:
        raise UserError(str(exc), exc.code) from None
    except StoreError as exc:
        raise UserError(str(exc), 2) from None
    now = int(time.time() * 1000)
    update, finish = progress_printer()
    try:
        universe = run_refresh(req, now, on_progress=update, on_warning=warn)
    except ScanError as exc:
        raise UserError(str(exc), exc.code) from None
    finally:
        finish()
    if basket:
        return _baskets(cfg, req, universe, now, basket, basket_pairs, as_json, out_dir)
    if not as_json and out_dir is None:
        if len(universe.symbols) < 2:
            raise UserError(f"fewer than 2 symbols to scan ({', '.join(universe.symbols)})", 2)
        from quanttui.app.scan_app import ScanApp

        app = ScanApp(
            req,
            universe,
            now,
            export_dir=cfg.export.dir,
            config=cfg,
            guard=True,
            engine_process=True,
        )
        try:
            app.run()
        finally:
            if app.shutdown_guard is not None:
                app.shutdown_guard.uninstall()
        return app.return_code or 0
    try:
        outcome = compute(req, universe, now)
    except ScanError as exc:
        raise UserError(str(exc), exc.code) from None
    for sym, why in outcome.meta.skipped[len(universe.skipped) :]:
        warn(f"skipping {sym}: {why}")
    rows = rank_pairs(outcome.result, bar_ms=req.bar_ms)
    if out_dir is not None:
        from quanttui.export import ExportError
        from quanttui.scan_report import export_scan

        try:
            path, n = export_scan(outcome.meta, rows, out_dir)
        except ExportError as exc:
            raise UserError(str(exc)) from None
        print(f"{path}  ({n:,} rows)", file=sys.stderr)
    if as_json:
        from quanttui.scan_report import scan_json

        sys.stdout.write(orjson.dumps(scan_json(outcome.meta, rows)).decode() + "\n")
    return 0


def _baskets(
    cfg: Config,
    req: ScanRequest,
    universe,
    now: int,
    size: int,
    pairs: int,
    as_json: bool,
    out_dir: str | None,
) -> int:
    """`scan --basket K`: the pair scan, then Johansen on baskets of K legs built from its
    most cointegrated pairs (`quanttui.analytics.scan.scan_baskets`); JSON, CSV or a text
    table, always with the multiple-testing statement."""
    from quanttui.analytics.scan import scan_baskets
    from quanttui.scan_report import basket_correction, basket_json, basket_values, fmt, fmt_p

    try:
        outcome = compute(req, universe, now)
    except ScanError as exc:
        raise UserError(str(exc), exc.code) from None
    meta = outcome.meta
    for sym, why in meta.skipped[len(universe.skipped) :]:
        warn(f"skipping {sym}: {why}")
    if len(meta.symbols) < size:
        raise UserError(
            f"a basket of {size} legs needs {size} symbols with enough history, "
            f"got {len(meta.symbols)}",
            2,
        )
    b = cfg.basket
    assert outcome.logp is not None
    result = scan_baskets(
        outcome.logp,
        meta.symbols,
        outcome.result.pvalue,
        size=size,
        pairs=pairs,
        det_order=b.det_order,
        k_ar_diff=b.k_ar_diff,
    )
    note = basket_correction(result)
    print(f"baskets: {note}", file=sys.stderr)
    if out_dir is not None:
        from quanttui.export import ExportError
        from quanttui.scan_report import export_baskets

        try:
            path, n = export_baskets(meta, result, out_dir)
        except ExportError as exc:
            raise UserError(str(exc)) from None
        print(f"{path}  ({n:,} rows)", file=sys.stderr)
    if as_json:
        sys.stdout.write(orjson.dumps(basket_json(meta, result)).decode() + "\n")
        return 0
    if out_dir is not None:
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"baskets of {size}, {meta.timeframe}, {meta.bars:,} bars", caption=note)
    for c in ("#", "basket", "p_holm", "p", "trace", "cv95", "rank", "weights", "half-life", "z"):
        table.add_column(c, justify="left" if c in ("basket", "weights") else "right")
    for k, row in enumerate(result.baskets[:50], 1):
        v = basket_values(k, row, meta.bar_ms)
        table.add_row(
            str(k),
            v[1],
            fmt_p(row.p_holm),
            fmt_p(row.pvalue),
            fmt(row.trace_stat, ".2f"),
            fmt(row.trace_cv95, ".2f"),
            str(row.rank),
            v[9],
            fmt(row.half_life, ".1f"),
            fmt(row.zscore, "+.2f"),
        )
    Console().print(table)
    return 0
