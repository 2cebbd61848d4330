"""The watchlist under load: 20 pairs over 25 symbols at 5,000 trades/s in total, 120x40.

Budgets (issue "Watchlist"): worst event-loop stall <= 33 ms, terminal <= 20 KB/s, first
frame <= 500 ms, every trade stored once, memory flat once windows are full (the median
RSS of the run's second half within 3% of its first half's, the memory issue's rule for
10 minutes). Each figure is printed with a naive baseline measured in the same run:

1. **First frame**: `quanttui X/Y ... (20 pairs)` in a real pty at 120x40 until the
   watchlist title is on the terminal (median of `--runs`). Baseline: the single-pair
   monitor `quanttui X Y` on the same database and exchange.
2. **Event loop, memory, storage** (the app in-process, Textual's headless driver at
   120x40, its engine in a process of its own as the CLI runs it; RSS is both's):
   once every pair shows a z-score, a probe task measures how long the UI loop is
   blocked for `--seconds`; the watchlist's redraw (`_draw`) is timed; RSS is sampled
   every second. Then the exchange's produced trade ids are compared with the stored
   ones. Baselines: the same redraw of 20 changed rows with Textual's `DataTable` (whose
   `update_cell` re-renders every cell), and recomputing the 20 pairs from the database
   per refresh.
3. **Terminal bytes/s** at steady state in the pty at 120x40. Baseline: a full repaint
   (the bytes of the first 2 s on screen) at 4 Hz.

The database holds 700 s of history of every symbol at launch (written here), so every
window (W=300 one-second bars, z defined after 2W-1 bars) is full from the first load;
the exchange (`--serve`, this script in a subprocess, `tests.fakes.exchange.FakeExchange`)
then streams the same synthetic universe on, ids continuing.

Usage: python benchmarks/bench_watchlist.py [--seconds 30] [--runs 5] [--rate 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gcpauses import GcPauses, Stalls, census, census_growth  # noqa: E402
from procs import rss_mb  # noqa: E402

SYMBOLS = [f"W{k:02d}USDT" for k in range(25)]
PAIRS = [(SYMBOLS[2 * k], SYMBOLS[2 * k + 1]) for k in range(12)] + [
    (SYMBOLS[24], SYMBOLS[0]),
    *((SYMBOLS[2 * k + 1], SYMBOLS[2 * k + 2]) for k in range(7)),
]
HISTORY_S = 700
HISTORY_PER_SYMBOL_S = 2  # history trades per symbol per second
SEED = 11


@functools.cache
def trade_list(live: int):
    from tests.fakes.exchange import universe_trades

    n_hist = HISTORY_S * HISTORY_PER_SYMBOL_S * len(SYMBOLS)
    trades = universe_trades(n_hist + live, SYMBOLS, seed=SEED)
    return trades[:n_hist], trades[n_hist:]


# ------------------------------------------------------------------ the exchange
async def serve(rate: float, live: int) -> None:
    """The fake exchange; prints its port, then answers ``ids PATH`` on stdin by writing
    the produced trade ids there."""
    from tests.fakes.exchange import FakeExchange

    _hist, trades = trade_list(live)
    async with FakeExchange(trades, rate=rate, restamp=True) as ex:
        print(json.dumps({"port": ex.port}), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "stop":
                await ex.stop_producing()
                print("ok", flush=True)
            elif cmd == "ids":
                text = json.dumps(sorted(ex.produced_ids()))
                await asyncio.to_thread(Path(arg).write_text, text)
                print("ok", flush=True)


class Server:
    def __init__(self, rate: float, live: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--rate", str(rate), "--live", str(live)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = json.loads(self.proc.stdout.readline())["port"]

    def quiet(self) -> None:
        """No trade is produced from now on."""
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def produced(self, path: Path) -> set[tuple[str, int]]:
        self.proc.stdin.write(f"ids {path}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"
        return {(s, a) for s, a in json.loads(path.read_text())}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def history_db(path: Path, live: int) -> set[tuple[str, int]]:
    """The history, ending now, written by a subprocess (so that generating the trade
    list leaves nothing on this process's heap); returns its ids."""
    subprocess.run(
        [sys.executable, __file__, "--history", str(path), "--live", str(live)],
        cwd=ROOT,
        check=True,
    )
    with sqlite3.connect(path) as c:
        return set(c.execute("SELECT symbol, trade_id FROM ticks").fetchall())


def write_history(path: Path, live: int) -> None:
    from quanttui.model import Tick
    from tests.helpers import store_ticks

    hist, _ = trade_list(live)
    now = int(time.time() * 1000) - 200
    step = HISTORY_S * 1000 / len(hist)
    start = now - HISTORY_S * 1000
    store_ticks(
        path,
        [
            Tick(t.symbol, t.a, int(start + i * step), float(t.p), float(t.q), t.m)
            for i, t in enumerate(hist)
        ],
    ).close()


def cli_args(port: int, db: Path, pairs: list[tuple[str, str]]) -> list[str]:
    words = [f"{x}/{y}" for x, y in pairs] if len(pairs) > 1 else list(pairs[0])
    return [
        *words,
        "--db",
        str(db),
        "--backfill",
        "off",
        "--ws-url",
        f"ws://127.0.0.1:{port}/market",
        "--rest-url",
        f"http://127.0.0.1:{port}",
    ]


# ------------------------------------------------------------------ 1 and 3: the pty
def first_frames(runs: int, rate: float, live: int) -> tuple[list[float], list[float]]:
    from tests.ptyrun import PtyApp

    server = Server(rate, live)
    watch, single = [], []
    try:
        with tempfile.TemporaryDirectory() as d:
            base = Path(d) / "base.db"
            history_db(base, live)
            for k in range(runs):
                for pairs, title, out in (
                    (PAIRS, b"WATCHLIST", watch),
                    (PAIRS[:1], b"W00USDT -> W01USDT", single),
                ):
                    db = Path(d) / f"r{k}{len(pairs)}.db"
                    shutil.copy(base, db)
                    app = PtyApp(cli_args(server.port, db, pairs))
                    t = app.pump(15, title)
                    app.quit()
                    out.append(t if t is not None else float("nan"))
    finally:
        server.stop()
    return watch, single


def terminal_bytes(seconds: float, rate: float, live: int) -> tuple[float, float]:
    from tests.ptyrun import PtyApp

    server = Server(rate, live)
    try:
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "b.db"
            history_db(db, live)
            app = PtyApp(cli_args(server.port, db, PAIRS))
            app.pump(15, b"WATCHLIST")
            app.pump(2.0, keep=False)
            full = sum(n for _, n in app.log)
            app.pump(3.0, keep=False)  # every row has its z by now
            app.log.clear()
            start = time.perf_counter()
            app.pump(seconds, keep=False)
            steady = sum(n for _, n in app.log) / (time.perf_counter() - start)
            app.quit()
    finally:
        server.stop()
    return steady, full


# ------------------------------------------------------------------ 2: in process
def app_rss_mb(app) -> float:  # noqa: ANN001
    """The app's process plus its engine's (`EngineProcess`), as the CLI runs it."""
    pid = getattr(app.runner, "pid", None)
    return rss_mb(children=False) + (rss_mb(pid) if pid is not None else 0.0)


async def table_costs(rounds: int = 40) -> tuple[float, float]:
    """One redraw of 20 rows whose z, sparkline and last alert changed, cells updated and
    the table's lines rendered: `DataTable` (update_cell, which re-renders every cell)
    against `WatchTable` (only the changed rows). Medians, seconds."""
    from rich.text import Text
    from textual.app import App
    from textual.geometry import Region
    from textual.widgets import DataTable

    from quanttui.app.screens.watchlist import plan_columns, sparkline
    from quanttui.app.widgets.watchtable import TableColumn, WatchTable

    columns, spark = plan_columns(120, 8)
    widths = {
        c.key: (8 if c.key == "pair" else spark if c.key == "spark" else c.width) for c in columns
    }

    def cells(k: int, r: int) -> dict[str, tuple[str, str]]:
        z = ((k * 7 + r * 3) % 41 - 20) / 8
        series = [((k + r + i) % 13 - 6) / 2 for i in range(spark)]
        return {
            c.key: {
                "mark": ("▲" if z >= 2 else " ", "bold red"),
                "pair": (f"W{k:02d}->W{k + 1:02d}", ""),
                "z": (f"{z:+.2f}", "bold red" if abs(z) >= 2 else ""),
                "spark": (sparkline(series, spark, 3.0), ""),
                "alert": (f"00:00:{r % 60:02d} {z:+.2f}", ""),
            }.get(c.key, (f"{k * 0.137 + 1:.4g}", ""))
            for c in columns
        }

    class Bench(App):
        def compose(self):
            yield DataTable(id="dt")
            yield WatchTable(id="wt")

    app = Bench()
    dt_times, wt_times = [], []
    async with app.run_test(size=(120, 60)):
        dt = app.query_one(DataTable)
        wt = app.query_one(WatchTable)
        dt.styles.height = wt.styles.height = 22
        for c in columns:
            dt.add_column(c.label, key=c.key, width=widths[c.key])
        wt.set_columns([TableColumn(c.key, c.label, widths[c.key]) for c in columns])
        keys = [f"k{k}" for k in range(20)]
        for k, key in enumerate(keys):
            row = cells(k, 0)
            dt.add_row(*(Text(*row[c.key]) for c in columns), key=key)
            wt.set_cells(key, row)
        wt.set_order(keys)
        await asyncio.sleep(0.1)
        crop = Region(0, 0, 120, 21)
        for r in range(1, rounds):
            t = time.perf_counter()
            for k, key in enumerate(keys):
                row = cells(k, r)
                for col in ("z", "spark", "alert"):
                    if col in row:
                        dt.update_cell(key, col, Text(*row[col]))
            dt.render_lines(crop)
            dt_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            for k, key in enumerate(keys):
                wt.set_cells(key, cells(k, r))
            wt.render_lines(crop)
            wt_times.append(time.perf_counter() - t)
            await asyncio.sleep(0.02)
    return statistics.median(dt_times), statistics.median(wt_times)


async def loop_and_storage(seconds: float, rate: float, live: int) -> dict[str, float]:
    import dataclasses

    from quanttui.analytics.live import LivePair, PairParams
    from quanttui.app.app import QuantApp
    from quanttui.config import load_config
    from quanttui.feed.binance import now_ms
    from quanttui.store.db import connect

    server = Server(rate, live)
    try:
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "f.db"
            hist = history_db(db, live)
            cfg = load_config(
                use_user_file=False,
                overrides={
                    ("feed", "ws_url"): f"ws://127.0.0.1:{server.port}/market",
                    ("feed", "rest_url"): f"http://127.0.0.1:{server.port}",
                    ("feed", "backfill"): "off",
                    ("storage", "db"): str(db),
                },
            )
            cfg = dataclasses.replace(cfg, alerts=dataclasses.replace(cfg.alerts, bell=False))
            app = QuantApp(cfg, pairs=PAIRS, engine_process=True)
            wl = app.watchlist_screen
            draws: list[float] = []
            original = wl._draw

            def timed_draw() -> None:
                t = time.perf_counter()
                original()
                draws.append(time.perf_counter() - t)

            wl._draw = timed_draw
            stalls = Stalls()
            rss: list[tuple[float, float]] = []
            keys = [f"{x}/{y}" for x, y in PAIRS]
            gcp = GcPauses()
            async with app.run_test(size=(120, 40)) as pilot:
                loop = asyncio.get_running_loop()
                t_launch = time.perf_counter()
                while not all(
                    (s := wl.shown.get(k)) is not None and s.zscore is not None for k in keys
                ):
                    await asyncio.sleep(0.05)
                    assert time.perf_counter() - t_launch < 60, "rows never filled"
                settle = time.perf_counter() - t_launch
                await asyncio.sleep(2.0)
                draws.clear()
                heap_before = census()
                ru0 = resource.getrusage(resource.RUSAGE_SELF)
                gcp.__enter__()
                end = loop.time() + seconds
                t0 = time.perf_counter()
                next_rss = t0
                while loop.time() < end:
                    t, c, pc = time.perf_counter(), time.thread_time(), time.process_time()
                    await asyncio.sleep(0.005)
                    stalls.add(
                        time.perf_counter() - t - 0.005,
                        t - t0,
                        time.thread_time() - c,
                        time.process_time() - pc,
                    )
                    if t >= next_rss:
                        rss.append((t - t0, app_rss_mb(app)))
                        next_rss += 1.0
                steady_draws = list(draws)
                gcp.__exit__()
                ru1 = resource.getrusage(resource.RUSAGE_SELF)
                heap_growth = census_growth(heap_before, census())
                server.quiet()
                await asyncio.sleep(2.0)  # the last frames arrive and are committed
                produced = server.produced(Path(d) / "ids.json")
                elapsed = time.perf_counter() - t_launch
                received = app.status.ticks
                await pilot.press("q")
            with sqlite3.connect(db) as c:
                rows = c.execute("SELECT symbol, trade_id FROM ticks").fetchall()
            stored = set(rows) - hist
            conn = connect(db, readonly=True)
            naive = []
            for _ in range(2):
                t = time.perf_counter()
                for x, y in PAIRS:
                    LivePair.from_store(conn, PairParams(x, y, "1s", 300, "ols"), now_ms())
                naive.append(time.perf_counter() - t)
            conn.close()
    finally:
        server.stop()
    worst = sorted(stalls.worst, reverse=True)
    print(
        "  worst stalls (ms @ s: CPU ms of the loop's thread / of the process):",
        ", ".join(f"{w * 1000:.0f}@{t:.1f}: {c * 1000:.0f}/{p * 1000:.0f}" for w, t, c, p in worst),
    )
    print("  cyclic GC meanwhile:", gcp.summary())
    print("  the UI's heap over the run (not frozen):", heap_growth)
    cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    print(
        f"  the UI's process over the run: {cpu:.1f} s CPU, "
        f"{ru1.ru_minflt - ru0.ru_minflt:,} minor and {ru1.ru_majflt - ru0.ru_majflt:,} major "
        f"page faults, {ru1.ru_nivcsw - ru0.ru_nivcsw:,} involuntary context switches"
    )
    half = len(rss) // 2
    first, second = rss[:half], rss[half:]
    span_min = (
        statistics.median(t for t, _ in second) - statistics.median(t for t, _ in first)
    ) / 60
    return {
        "settle_s": settle,
        "stall_max": stalls.max,
        "stall_p99": stalls.quantile(0.99),
        "draw_median": statistics.median(steady_draws),
        "draw_max": max(steady_draws),
        "draws": len(steady_draws),
        "naive_recompute": statistics.median(naive),
        "rss_first": statistics.median(m for _, m in first),
        "rss_second": statistics.median(m for _, m in second),
        "rss_slope": (
            statistics.median(m for _, m in second) - statistics.median(m for _, m in first)
        )
        / span_min,
        "rss_max": max(m for _, m in rss),
        "produced": len(produced),
        "stored": len(stored),
        "rows": len(rows) - len(hist),
        "missing": len(produced - stored),
        "extra": len(stored - produced),
        "received": received,
        "rate": len(produced) / elapsed,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rate", type=float, default=5000.0)
    p.add_argument(
        "--parts", default="first,loop,terminal", help="which figures (default: all three)"
    )
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--history", metavar="DB", help=argparse.SUPPRESS)
    p.add_argument("--live", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    live = args.live or int(args.rate * (args.seconds + 90))
    if args.serve:
        asyncio.run(serve(args.rate, live))
        return
    if args.history:
        write_history(Path(args.history), live)
        return
    print(
        f"{len(PAIRS)} pairs over {len({s for p in PAIRS for s in p})} symbols, "
        f"{args.rate:,.0f} trades/s in total, W=300 1s bars, 120x40"
    )

    parts = set(args.parts.split(","))
    ok: dict[str, bool] = {}
    if "first" in parts:
        watch, single = first_frames(args.runs, args.rate, live)
        fw, fs = statistics.median(watch), statistics.median(single)
        ok["first frame <= 500 ms"] = fw <= 0.5
        print(
            f"first frame (pty), median of {args.runs}: watchlist {fw * 1000:.0f} ms "
            f"(runs: {', '.join(f'{t * 1000:.0f}' for t in watch)}); single-pair monitor "
            f"{fs * 1000:.0f} ms, ratio {fs / fw:.2f}x"
        )
    if "loop" in parts:
        r = asyncio.run(loop_and_storage(args.seconds, args.rate, live))
        ok["stall <= 33 ms"] = r["stall_max"] <= 0.033
        ok["every trade stored once"] = (
            r["missing"] == r["extra"] == 0 and r["rows"] == r["stored"] == r["produced"]
        )
        ok["memory flat (second half within 3% of the first)"] = (
            r["rss_second"] <= 1.03 * r["rss_first"]
        )
        print(
            f"event loop over {args.seconds:.0f} s once all {len(PAIRS)} rows had a z "
            f"({r['settle_s']:.1f} s after launch): max stall {r['stall_max'] * 1000:.1f} ms, "
            f"p99 {r['stall_p99'] * 1000:.1f} ms; redraw median "
            f"{r['draw_median'] * 1000:.2f} ms, max {r['draw_max'] * 1000:.1f} ms over "
            f"{r['draws']} redraws"
        )
        dt, wt = asyncio.run(table_costs())
        print(
            f"  a redraw of 20 changed rows, cells set and lines rendered: DataTable "
            f"{dt * 1000:.1f} ms, WatchTable {wt * 1000:.1f} ms, ratio {dt / wt:.1f}x; "
            f"recomputing the {len(PAIRS)} pairs from the database per refresh: "
            f"{r['naive_recompute'] * 1000:.0f} ms, "
            f"{r['naive_recompute'] / r['stall_max']:.1f}x the longest stall"
        )
        print(
            f"storage: {r['produced']:,} trades produced, {r['stored']:,} stored "
            f"({r['rows']:,} rows), missing {r['missing']}, not produced {r['extra']}; "
            f"{r['received']:,} received live ({r['rate']:,.0f} trades/s achieved)"
        )
        print(
            f"memory (RSS, sampled each second): median {r['rss_first']:.1f} MB in the first "
            f"half, {r['rss_second']:.1f} MB in the second ({r['rss_slope']:+.1f} MB/min), "
            f"max {r['rss_max']:.1f} MB"
        )
    if "terminal" in parts:
        steady, full = terminal_bytes(args.seconds, args.rate, live)
        naive = full * 4
        ok["terminal <= 20 KB/s"] = steady <= 20 * 1024
        print(
            f"terminal output at steady state (pty 120x40): {steady / 1024:.1f} KB/s "
            f"(full repaint {full / 1024:.1f} KB; repainting it at 4 Hz: "
            f"{naive / 1024:.1f} KB/s, ratio {naive / steady:.1f}x)"
        )
    print("budgets:", "; ".join(f"{k}: {'ok' if v else 'OVER'}" for k, v in ok.items()))


if __name__ == "__main__":
    main()
