"""Steady-state memory of an always-on monitor: RSS over `--minutes` at 5,000 trades/s.

Issue "An always-on monitor holds flat memory": between minute 2 and the end, the RSS of
the `quanttui` process grows by under 3%. Two runs, one after the other, each against its
own fake exchange (`tests.fakes.serve --endless`, its own process: BTCUSDT/ETHUSDT
cointegrated, trade times = now, 700 s of earlier trades served over REST so that the
warm start fills the window, W=300 one-second bars, at once):

1. **app**: `quanttui BTCUSDT ETHUSDT` on a real pty at 120x40, drained all along;
2. **headless**: `quanttui BTCUSDT ETHUSDT --headless`, stdout and stderr read.

Every 10 s the process's VmRSS (/proc/<pid>/status, the app's engine process's added)
is sampled with the trades stored so
far (from the database, the backfilled history included: per-symbol trade-id spans, exact
`count(*)` at the end) and the live trades the exchange has sent. The curve is printed, then the growth from minute 2 to
the end and PASS/FAIL against the 3% budget, the slope in each third of that span (does
it level off?), and the rate the feed really delivered.
`behind` is the trades sent (plus the history) not yet stored: a backlog in the client,
whose high-water the allocator keeps as RSS after it has drained.

Baseline, measured in the same run: the memory one `Tick` costs when kept in a list
(tracemalloc over 100,000 of them), times the trades stored between minute 2 and the end:
what a monitor that kept every received trade would have grown by over the same span.

Usage: python benchmarks/bench_memory.py [--minutes 10] [--rate 5000] [--modes app,headless]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from procs import rss_mb, serve  # noqa: E402

from tests.ptyrun import PtyApp  # noqa: E402

SYMBOLS = ("BTCUSDT", "ETHUSDT")
HISTORY_S = 700
HISTORY_ROWS = HISTORY_S * 20
"""Trades before the start, served over REST only (`EndlessExchange`: 20 trades/s)."""
BUDGET = 0.03
STEADY_FROM_S = 120.0
TITLE = b"BTCUSDT -> ETHUSDT"


@dataclass
class Sample:
    t: float
    rss_mb: float
    stored: int
    sent: int


@dataclass
class Run:
    mode: str
    samples: list[Sample] = field(default_factory=list)
    rows: int = 0
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)


def stored_rows(db: Path) -> int:
    """Trades stored so far, as the sum of each symbol's trade-id span (ids are consecutive
    per symbol on this exchange; two index lookups instead of a scan of millions of rows)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as c:
            total = 0
            for s in SYMBOLS:
                lo, hi = c.execute(
                    "SELECT min(trade_id), max(trade_id) FROM ticks WHERE symbol = ?", (s,)
                ).fetchone()
                total += 0 if lo is None else hi - lo + 1
            return total
    except sqlite3.Error:
        return 0


def count_rows(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return c.execute("SELECT count(*) FROM ticks").fetchone()[0]


def sent_count(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/count", timeout=2) as r:
            return json.loads(r.read())["count"]
    except OSError:
        return -1


def cli_args(port: int, db: Path) -> list[str]:
    return [
        *SYMBOLS,
        "--db",
        str(db),
        "--timeframe",
        "1s",
        "--window",
        "300",
        "--ws-url",
        f"ws://127.0.0.1:{port}/market",
        "--rest-url",
        f"http://127.0.0.1:{port}",
    ]


def drain(stream, counter: list[int]) -> None:
    for chunk in iter(lambda: stream.read1(65536), b""):
        counter[0] += len(chunk)


def run_mode(mode: str, minutes: float, rate: float, every: float) -> Run:
    run = Run(mode)
    server, port = serve("--endless", "--rate", str(rate), "--history", str(HISTORY_S))
    try:
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "m.db"
            env = {"XDG_CONFIG_HOME": d, "XDG_DATA_HOME": d}
            args = cli_args(port, db)
            if mode == "app":
                app = PtyApp(args, 120, 40, env=env)
                proc = app.proc

                def wait(seconds: float) -> None:
                    app.pump(seconds, keep=False)

                if app.pump(15, TITLE) is None:
                    run.notes.append("the title never reached the terminal")
            else:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "quanttui", *args, "--headless"],
                    cwd=ROOT,
                    env={**os.environ, **env},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                out, err = [0], [0]
                readers = [
                    threading.Thread(target=drain, args=(proc.stdout, out), daemon=True),
                    threading.Thread(target=drain, args=(proc.stderr, err), daemon=True),
                ]
                for r in readers:
                    r.start()

                def wait(seconds: float) -> None:
                    time.sleep(seconds)

            t0 = time.monotonic()
            end = t0 + minutes * 60 + every / 2
            next_at = t0 + every
            while (now := time.monotonic()) < end and proc.poll() is None:
                if now < next_at:
                    wait(min(next_at, end) - now)
                    continue
                try:
                    mb = rss_mb(proc.pid)
                except OSError:
                    break
                run.samples.append(
                    Sample(time.monotonic() - t0, mb, stored_rows(db), sent_count(port))
                )
                x = run.samples[-1]
                print(f"[{mode}] {x.t:.0f}s {x.rss_mb:.1f} MB", file=sys.stderr, flush=True)
                next_at += every
            if proc.poll() is not None:
                run.notes.append(f"quanttui exited early with {proc.returncode}")
            if mode == "app":
                run.exit_code = app.quit()
            else:
                proc.send_signal(signal.SIGINT)
                try:
                    run.exit_code = proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                for r in readers:
                    r.join(2)
                run.notes.append(f"read {out[0]:,} bytes of stdout, {err[0]:,} of stderr")
            run.rows = count_rows(db) if db.exists() else 0
    finally:
        server.terminate()
        server.wait()
    return run


def tick_bytes(n: int = 100_000) -> float:
    """Bytes one received `Tick` costs when kept in a list (object, its int and float
    fields, the list slot), by tracemalloc."""
    from quanttui.model import Tick

    base = 1_700_000_000_000
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [
        Tick(
            SYMBOLS[k % 2], 5_000_000 + k, base + k, 90000.0 + k * 0.1, 0.01 + k * 1e-6, k % 3 == 0
        )
        for k in range(n)
    ]
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    return used / n


def report(run: Run, minutes: float, rate: float, per_tick: float) -> bool:
    s = run.samples
    print(f"\n{run.mode}: {minutes:g} min at {rate:,.0f} trades/s, W=300 1s bars")
    print(f"  {'time':>6}  {'RSS MB':>7}  {'rows stored':>11}  {'sent live':>10}  {'behind':>7}")
    for x in s:
        behind = x.sent + HISTORY_ROWS - x.stored
        print(f"  {x.t:5.0f}s  {x.rss_mb:7.1f}  {x.stored:11,}  {x.sent:10,}  {behind:7,}")
    for n in run.notes:
        print(f"  note: {n}")
    if len(s) < 2:
        print("  too few samples")
        return False
    start = min(STEADY_FROM_S, s[-1].t / 2)
    a = next(x for x in s if x.t >= start - 1)
    z = s[-1]
    span = z.t - a.t
    rows_live = run.rows - HISTORY_ROWS
    fed = (z.stored - s[0].stored) / (z.t - s[0].t)
    sent = (z.sent - s[0].sent) / (z.t - s[0].t)
    print(
        f"  feed: {run.rows:,} rows stored in all ({rows_live:,} live); "
        f"{fed:,.0f} trades/s stored and {sent:,.0f}/s sent from {s[0].t:.0f} s to "
        f"{z.t:.0f} s" + ("" if fed >= 0.95 * rate else f": BELOW the {rate:,.0f}/s asked")
    )
    growth = (z.rss_mb - a.rss_mb) / a.rss_mb
    trades = z.stored - a.stored
    ok = growth < BUDGET and not any("exited early" in n for n in run.notes)
    peak = max(x.rss_mb for x in s if x.t >= a.t)
    print(
        f"  RSS {a.rss_mb:.1f} MB at {a.t:.0f} s -> {z.rss_mb:.1f} MB at {z.t:.0f} s "
        f"(max {peak:.1f}): {growth * 100:+.2f}% "
        f"({(z.rss_mb - a.rss_mb) / (span / 60):+.2f} MB/min, "
        f"{(z.rss_mb - a.rss_mb) * 2**20 / max(trades, 1):+.1f} bytes per trade) "
        f"-> {'PASS' if ok else 'FAIL'} (budget {BUDGET * 100:.0f}%)"
    )
    thirds = [x for x in s if x.t >= a.t]
    third = len(thirds) // 3
    if third >= 2:
        slopes = [
            (part[-1].rss_mb - part[0].rss_mb) / ((part[-1].t - part[0].t) / 60)
            for part in (thirds[: third + 1], thirds[third : 2 * third + 1], thirds[2 * third :])
        ]
        print(
            "  RSS slope in each third since then: "
            + ", ".join(f"{m:+.2f}" for m in slopes)
            + " MB/min (a slope that falls toward 0 is an allocator settling, not a leak)"
        )
    naive = per_tick * trades / 2**20
    print(
        f"  baseline, keeping every received Tick ({per_tick:.0f} bytes each): "
        f"+{naive:,.0f} MB over the same {trades:,} trades ({naive / a.rss_mb * 100:+.0f}%)"
    )
    return ok


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=5000.0)
    p.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--modes", default="app,headless")
    args = p.parse_args()
    per_tick = tick_bytes()
    results = {}
    for mode in args.modes.split(","):
        run = run_mode(mode, args.minutes, args.rate, args.every)
        results[mode] = report(run, args.minutes, args.rate, per_tick)
        sys.stdout.flush()
    print(
        "\nbudget RSS growth < 3% from minute 2:",
        "; ".join(f"{m}: {'PASS' if ok else 'FAIL'}" for m, ok in results.items()),
    )


if __name__ == "__main__":
    main()
