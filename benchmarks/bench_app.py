"""The app over a terminal: first frame, frame time under load, bytes written to the pty.

Three figures, each against a naive baseline measured in the same run:

1. **First frame**: launch `quanttui X Y` in a real pty at 120x40 (fake exchange in its own
   process) and time until the title is on the terminal. Baseline: the same plus an eager
   `import statsmodels.tsa.stattools` (what the app would pay without the lazy import).
2. **Frame time at 5,000 trades/s**: the app in-process (`run_test`, headless driver,
   120x40), its engine in a process of its own as the CLI runs it, against the fake
   exchange at 5k trades/s, measured once the warm start and the first load are done
   (start-up is reported apart); then, for comparison, with the engine on a thread of
   the UI's process. A probe task measures how long the
   event loop is blocked (a frame is composed synchronously on the loop, so the longest
   stall bounds the longest frame); the redraw handler is timed too. Baseline: the full
   recompute from the database that the old dashboards did on every refresh.
3. **Pty bytes/s** at steady state, 120x40, while trades stream in. Baseline: repainting
   the full screen at the same 4 Hz.

Usage: python benchmarks/bench_app.py [--seconds 15] [--runs 5] [--frame-runs 3] [--thread-runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gcpauses import GcPauses  # noqa: E402
from procs import serve  # noqa: E402

from tests.ptyrun import PtyApp  # noqa: E402

TITLE = b"BTCUSDT -> ETHUSDT"


FIRST_FRAME_S = 0.5
STALL_S = 0.033
BYTES_PER_S = 20 * 1024
"""Budgets (issue "A screen that tells the truth"): first frame, the longest event-loop
stall at 5,000 trades/s, terminal output at 120x40."""


def verdict(value: float, budget: float) -> str:
    return "[within budget]" if value <= budget else "[OVER BUDGET]"


def app_args(port: int, db: Path) -> list[str]:
    return [
        "BTCUSDT",
        "ETHUSDT",
        "--db",
        str(db),
        "--ws-url",
        f"ws://127.0.0.1:{port}/market",
        "--rest-url",
        f"http://127.0.0.1:{port}",
    ]


def first_frame(runs: int) -> tuple[list[float], list[float]]:
    server, port = serve("--trades", "1000000", "--rate", "200", "--restamp")
    times = []
    try:
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as d:
                app = PtyApp(app_args(port, Path(d) / "b.db"))
                t = app.pump(10, TITLE)
                app.quit()
                times.append(t if t is not None else float("nan"))
    finally:
        server.terminate()
    imports = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import statsmodels.tsa.stattools"], check=True)
        imports.append(time.perf_counter() - t)
    return times, imports


def pty_bytes(seconds: float, rate: int) -> tuple[float, float]:
    server, port = serve("--trades", "10000000", "--rate", str(rate), "--restamp")
    try:
        with tempfile.TemporaryDirectory() as d:
            app = PtyApp(app_args(port, Path(d) / "b.db"))
            app.pump(10, TITLE)
            app.pump(2.0, keep=False)
            full = sum(n for _, n in app.log)
            app.log.clear()
            start = time.perf_counter()
            app.pump(seconds, keep=False)
            steady = sum(n for _, n in app.log) / (time.perf_counter() - start)
            app.quit()
    finally:
        server.terminate()
    return steady, full


async def frame_times(seconds: float, process: bool = True) -> dict[str, float]:
    import dataclasses

    from quanttui.analytics.live import LivePair
    from quanttui.app.app import QuantApp
    from quanttui.config import load_config
    from quanttui.feed.binance import now_ms
    from quanttui.store.db import connect

    server, port = serve("--trades", "10000000", "--rate", "5000", "--restamp")
    try:
        with tempfile.TemporaryDirectory() as d:
            cfg = load_config(
                use_user_file=False,
                overrides={
                    ("feed", "ws_url"): f"ws://127.0.0.1:{port}/market",
                    ("feed", "rest_url"): f"http://127.0.0.1:{port}",
                    ("storage", "db"): str(Path(d) / "f.db"),
                },
            )
            cfg = dataclasses.replace(cfg, alerts=dataclasses.replace(cfg.alerts, bell=False))
            app = QuantApp(cfg, "BTCUSDT", "ETHUSDT", engine_process=process)
            mon = app.monitor
            assert mon is not None
            renders: list[float] = []
            original = mon._draw_tick

            def timed_render() -> None:
                drawing = mon._dirty and mon.snapshot is not None and not mon.paused
                t = time.perf_counter()
                original()
                if drawing:
                    renders.append(time.perf_counter() - t)

            mon._draw_tick = timed_render
            stalls: list[float] = []
            startup: list[float] = []
            at: list[float] = []
            gcp = GcPauses()
            recomputes = 0
            dispatch = app._dispatch

            def counted(ev: object) -> None:
                nonlocal recomputes
                recomputes += type(ev).__name__ == "Recomputed"
                dispatch(ev)

            app._dispatch = counted
            async with app.run_test(size=(120, 40)) as pilot:
                loop = asyncio.get_running_loop()

                def settled() -> bool:
                    st = app.status
                    return (
                        st is not None
                        and mon.snapshot is not None
                        and st.backfill in ("done", "skipped", "off")
                        and st.inserted >= 5000
                    )

                while not settled():
                    t = time.perf_counter()
                    await asyncio.sleep(0.005)
                    startup.append(time.perf_counter() - t - 0.005)
                gcp.__enter__()
                end = loop.time() + seconds
                t_start = time.perf_counter()
                received0, recomputes0 = app.status.inserted, recomputes
                while loop.time() < end:
                    t = time.perf_counter()
                    await asyncio.sleep(0.005)
                    stalls.append(time.perf_counter() - t - 0.005)
                    at.append(t - t_start)
                gcp.__exit__()
                await asyncio.sleep(1.1)  # the status of the window's end
                received = app.status.inserted - received0
                resyncs = recomputes - recomputes0
                await pilot.press("q")
            conn = connect(cfg.db_path, readonly=True)
            naive = []
            for _ in range(5):
                t = time.perf_counter()
                LivePair.from_store(conn, app.params, now_ms())
                naive.append(time.perf_counter() - t)
            conn.close()
    finally:
        server.terminate()
    worst = sorted(zip(stalls, at, strict=True), reverse=True)[:5]
    print("  worst stalls (ms @ s):", ", ".join(f"{w * 1000:.0f}@{t:.1f}" for w, t in worst))
    print("  cyclic GC meanwhile:", gcp.summary())
    stalls.sort()
    return {
        "stall_max": stalls[-1],
        "startup_max": max(startup, default=0.0),
        "stall_p99": stalls[int(0.99 * (len(stalls) - 1))],
        "render_max": max(renders) if renders else float("nan"),
        "render_median": statistics.median(renders) if renders else float("nan"),
        "renders": len(renders),
        "trades": received,
        "rate": received / seconds,
        "naive_recompute": statistics.median(naive),
        "resyncs": resyncs,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--frame-runs", type=int, default=3)
    p.add_argument(
        "--thread-runs",
        type=int,
        default=3,
        help="runs with the engine on a thread of the UI process instead, for comparison",
    )
    args = p.parse_args()

    times, imports = first_frame(args.runs)
    ff, imp = statistics.median(times), statistics.median(imports)
    print(
        f"first frame (120x40 pty), median of {args.runs}: {ff * 1000:.0f} ms "
        f"(runs: {', '.join(f'{t * 1000:.0f}' for t in times)}) {verdict(ff, FIRST_FRAME_S)}"
    )
    print(
        f"  eager statsmodels import adds {imp * 1000:.0f} ms: baseline {(ff + imp) * 1000:.0f} ms, ratio {(ff + imp) / ff:.2f}x"
    )

    runs = []
    for _ in range(args.frame_runs):
        ft = asyncio.run(frame_times(args.seconds))
        runs.append(ft)
        print(
            f"5k trades/s for {args.seconds:.0f} s ({ft['trades']:,} stored, "
            f"{ft['rate']:,.0f}/s): "
            f"max loop stall {ft['stall_max'] * 1000:.1f} ms, p99 {ft['stall_p99'] * 1000:.1f} ms; "
            f"redraw median {ft['render_median'] * 1000:.1f} ms, max {ft['render_max'] * 1000:.1f} ms "
            f"over {ft['renders']} redraws; from launch until the warm start and first load "
            f"are done: max stall {ft['startup_max'] * 1000:.1f} ms; "
            f"{ft['resyncs']} recomputes after late trades"
        )
    ft = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"  median of {len(runs)} runs: max loop stall {ft['stall_max'] * 1000:.1f} ms, "
        f"p99 {ft['stall_p99'] * 1000:.1f} ms, start-up max stall {ft['startup_max'] * 1000:.1f} ms "
        f"{verdict(ft['stall_max'], STALL_S)}"
    )
    print(
        f"  naive full recompute per refresh: {ft['naive_recompute'] * 1000:.1f} ms, "
        f"ratio {ft['naive_recompute'] / ft['render_median']:.0f}x the median redraw, "
        f"{ft['naive_recompute'] / ft['stall_max']:.1f}x the longest stall"
    )
    if args.thread_runs:
        on_thread = [
            asyncio.run(frame_times(args.seconds, process=False))["stall_max"]
            for _ in range(args.thread_runs)
        ]
        t = statistics.median(on_thread)
        print(
            f"  the engine on a thread of the UI process instead (one GIL, one GC): max loop "
            f"stall {t * 1000:.1f} ms (runs: {', '.join(f'{x * 1000:.0f}' for x in on_thread)}), "
            f"ratio {t / ft['stall_max']:.2f}x"
        )

    for rate in (200, 5000):
        steady, full = pty_bytes(args.seconds, rate)
        naive = full * 4
        print(
            f"pty output at {rate} trades/s, 120x40: {steady / 1024:.1f} KB/s "
            f"(full repaint {full / 1024:.1f} KB; repainting it at 4 Hz: {naive / 1024:.1f} KB/s, "
            f"ratio {naive / steady:.1f}x) {verdict(steady, BYTES_PER_S)}"
        )


if __name__ == "__main__":
    main()
