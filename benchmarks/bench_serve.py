"""`quanttui serve` under load: 20 pairs over 40 symbols at 5,000 trades/s, three views.

Issue 29 ("quanttui serve"). Every part is a real process: the fake exchange (this
script with `--exchange`: `tests.fakes.exchange.FakeExchange` over `universe_trades`,
every pair cointegrated, trades stamped with the wall clock), the server
(`python -m quanttui serve X/Y ...`, W=300 one-second bars on a database that holds
700 s of every symbol's history, so every window is full from the first load), and three
views attached to it:

* **app**: the Textual app (`QuantApp(..., attach=socket)`, as `quanttui attach` builds
  it) on a real pty at 120x40, drained all along, with a 1 ms ticker on its event loop
  (this script with `--app-view`, launched in the pty);
* **remote**: a `RemoteEngine` view on an asyncio loop that drains its mailbox as the app
  does, with the same ticker (this script with `--view`);
* **headless**: `quanttui attach --headless` itself (a thread view with no event loop:
  its stall is not measured; it is there for the load, and must stay attached).

Beside them, the **machine's floor**: the same ticker on a bare asyncio loop in a process
of its own (no socket, no screen; this script with `--control`), twice: in a session of
its own, as the app on its pty is (with autogroups on, each session is one group to the
scheduler), and in this script's session, with the server and the other views; and the
hypervisor's steal time (``/proc/stat``) each second. A view's stall that the floor shows
at the same second was the machine's (the host, or the processes sharing its two cores),
not the view's work.

Figures, each against the issue's target:

1. **Every trade stored once**: once the exchange goes quiet and the server has
   committed, the `ticks` rows of the live span against the trades the exchange
   produced (its ledger): missing, not produced and duplicate rows must all be 0.
2. **Worst UI-loop stall** of each event-loop view, from `go` (all views attached and
   settled) to `stop`: the ticker's largest lateness (<= 33 ms).
3. **Attach to first full frame**, median of 5 attaches spread over the run (a fourth,
   transient `RemoteEngine` in this process): from `connect()` until a snapshot of
   every pair, with its z-score, has arrived (<= 300 ms). Baseline: a cold embedded
   start, `Engine` + `EngineThread` in a fresh process on a copy of the database, from
   constructing the engine to the same full set of snapshots (median of 3).
4. **Server RSS** (VmRSS, sampled each second): from minute 2 to the end (the median
   of 30 s after minute 2 against the median of the last 30 s), within 3%. `--quick`
   runs the views for 60 s and compares the second half of those samples to the first.
5. **Ingest with zero views and with three**: stored trades/s and the server's CPU over
   windows of the same length, first before any view attaches, then with the three
   (the ratio should be ~1.0: views cost the engine nothing but their encoding).

To find what a stall was, for the app's view: ``QUANTTUI_BENCH_HANDLES=FILE`` times every
callback of its loop (wall, CPU, waits and preemptions; cheap enough to leave the run
as it is) and every compositor pass (with what asked for it: a layout, a repaint, the
dirty widgets), and writes, per worst stall, the callbacks, passes and collections in it,
then the passes by cause;
``QUANTTUI_BENCH_STALLS=FILE`` samples the loop's stack during stalls (it slows the
app's collections about threefold: use it for stacks, not for a pass or a fail).

Usage: python benchmarks/bench_serve.py [--minutes 10] [--quick] [--rate 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gcpauses import GcPauses, Stalls, census, census_growth  # noqa: E402
from procs import cpu_s, rss_mb  # noqa: E402

SYMBOLS = [f"S{k:02d}USDT" for k in range(40)]
PAIRS = [(SYMBOLS[2 * k], SYMBOLS[2 * k + 1]) for k in range(20)]
KEYS = [f"{x}/{y}" for x, y in PAIRS]
HISTORY_S = 700
HISTORY_PER_SYMBOL_S = 2
FIRST_ID = 5001
SEED = 29
TICK_S = 0.001
STALL_TARGET = 0.033
ATTACH_TARGET = 0.300
RSS_TARGET = 0.03


# ------------------------------------------------------------------ the fake exchange
async def exchange(db: Path, rate: float, live: int) -> None:
    """Write the history into `db`, then serve the live trades that continue it; print
    the port, then answer on stdin: ``count`` (trades produced), ``stop`` (quiet from
    now on), ``ids PATH`` (write the produced (symbol, id) pairs there)."""
    from quanttui.model import Tick
    from tests.fakes.exchange import FakeExchange, universe_trades
    from tests.helpers import store_ticks

    n_hist = HISTORY_S * HISTORY_PER_SYMBOL_S * len(SYMBOLS)
    trades = universe_trades(n_hist + live, SYMBOLS, seed=SEED, first_id=FIRST_ID)
    hist, trades = trades[:n_hist], trades[n_hist:]
    now = int(time.time() * 1000) - 200
    step = HISTORY_S * 1000 / len(hist)
    start = now - HISTORY_S * 1000
    store_ticks(
        db,
        [
            Tick(t.symbol, t.a, int(start + i * step), float(t.p), float(t.q), t.m)
            for i, t in enumerate(hist)
        ],
    ).close()
    del hist
    async with FakeExchange(trades, rate=rate, restamp=True) as ex:
        print(json.dumps({"port": ex.port}), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "count":
                print(len(ex.produced), flush=True)
            elif cmd == "stop":
                await ex.stop_producing()
                print(len(ex.produced), flush=True)
            elif cmd == "ids":
                text = json.dumps([[t.symbol, t.a] for t in ex.produced])
                await asyncio.to_thread(Path(arg).write_text, text)
                print("ok", flush=True)


class Exchange:
    def __init__(self, db: Path, rate: float, live: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--exchange", str(db), "--rate", str(rate)]
            + ["--live", str(live)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = json.loads(self.proc.stdout.readline())["port"]
        self._lock = threading.Lock()

    def ask(self, line: str) -> str:
        with self._lock:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
            return self.proc.stdout.readline().strip()

    def count(self) -> int:
        return int(self.ask("count"))

    def ids(self, path: Path) -> list[tuple[str, int]]:
        assert self.ask(f"ids {path}") == "ok"
        return [(s, a) for s, a in json.loads(path.read_text())]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def net_args(port: int) -> list[str]:
    return [
        "--ws-url",
        f"ws://127.0.0.1:{port}/market",
        "--rest-url",
        f"http://127.0.0.1:{port}",
        "--backfill",
        "off",
    ]


def stored_live(db: Path) -> int:
    """Rows of the live span so far, cheaply (ids are consecutive per symbol): the sum of
    each symbol's highest id past its history, read from the primary key."""
    first_live = FIRST_ID + HISTORY_S * HISTORY_PER_SYMBOL_S
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as c:
        total = 0
        for s in SYMBOLS:
            (top,) = c.execute("SELECT max(trade_id) FROM ticks WHERE symbol = ?", (s,)).fetchone()
            total += max(0, (top or 0) - first_live + 1)
    return total


# ------------------------------------------------------------------ the views' probe
def _exists(path: str) -> bool:
    return os.path.exists(path)  # a stat: it does not block the loop for long


LAST_TICK = [0.0, False, 0.0]
"""The ticker's last wake-up, whether it is recording (read by `StallSampler`) and when
it began to (`perf_counter`, for `HandleTimer`)."""


class HandleTimer:
    """With ``QUANTTUI_BENCH_HANDLES=FILE``: every callback the event loop runs is timed
    (wall and the loop thread's CPU; two clock reads each, unlike `StallSampler`'s
    stacks, so the run is barely changed), and those longer than `keep` s are kept. At
    the end, for each of the ticker's worst stalls, the callbacks and collections that
    overlap it are written to FILE: what the loop did in the stall, and for how long it
    had the CPU."""

    def __init__(self, out: str, keep: float = 0.0005) -> None:
        import collections

        self.out, self.keep = out, keep
        self.slow: collections.deque = collections.deque(maxlen=400_000)
        self.passes: collections.deque = collections.deque(maxlen=400_000)
        self._orig = asyncio.events.Handle._run
        self._orig_pass = None

    def __enter__(self) -> HandleTimer:
        import resource

        orig, slow, keep, name = self._orig, self.slow, self.keep, self.name
        clock, usage, me = time.perf_counter, resource.getrusage, resource.RUSAGE_THREAD

        def _run(handle: asyncio.Handle) -> None:
            t, u = clock(), usage(me)
            orig(handle)
            w = clock() - t
            if w > keep:
                v = usage(me)
                slow.append(
                    (
                        t,
                        w,
                        v.ru_utime + v.ru_stime - u.ru_utime - u.ru_stime,
                        v.ru_nvcsw - u.ru_nvcsw,
                        v.ru_nivcsw - u.ru_nivcsw,
                        name(handle),
                    )
                )

        asyncio.events.Handle._run = _run
        self._time_passes()
        return self

    def _time_passes(self) -> None:
        """Each compositor pass (`Screen._on_timer_update`): its wall and CPU time, and
        what asked for it (a layout, a scroll, a repaint, or which widgets were dirty)."""
        from textual.screen import Screen

        orig = self._orig_pass = Screen._on_timer_update
        passes, clock, cpu = self.passes, time.perf_counter, time.thread_time

        def _on_timer_update(screen: Screen) -> None:
            why = (
                ("layout " if screen._layout_required else "")
                + ("scroll " if screen._scroll_required else "")
                + ("repaint " if screen._repaint_required else "")
                + ",".join(sorted({w.id or type(w).__name__ for w in screen._dirty_widgets}))
            )
            t, c = clock(), cpu()
            orig(screen)
            passes.append((t, clock() - t, cpu() - c, why))

        Screen._on_timer_update = _on_timer_update

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._orig
        if self._orig_pass is not None:
            from textual.screen import Screen

            Screen._on_timer_update = self._orig_pass

    @staticmethod
    def name(handle: asyncio.Handle) -> str:
        cb = getattr(handle, "_callback", None)
        owner = getattr(cb, "__self__", None)
        if isinstance(owner, asyncio.Task):
            coro = owner.get_coro()
            frame = getattr(coro, "cr_frame", None)
            timer = frame.f_locals.get("self") if frame is not None else None
            what = getattr(timer, "_callback", None) if timer is not None else None
            extra = f" {getattr(timer, 'name', '')} {getattr(what, '__qualname__', what)}"
            return f"task {getattr(coro, '__qualname__', coro)}{extra if timer else ''}"
        return getattr(cb, "__qualname__", repr(cb))[:120]

    def report(self, worst: list, gc_pauses: list) -> None:
        t0 = LAST_TICK[2]
        lines = []
        for w, at, cpu, pc in sorted(worst, reverse=True):
            a = t0 + at
            b = a + w + TICK_S
            lines.append(
                f"stall {w * 1000:.1f} ms @ {at:.1f}s (loop CPU {cpu * 1000:.1f}, process "
                f"{pc * 1000:.1f})"
            )
            for t, dw, dc, nv, niv, h in self.slow:
                if t < b and t + dw > a:
                    lines.append(
                        f"  +{(t - a) * 1000:6.1f} ms  wall {dw * 1000:5.1f}  cpu "
                        f"{dc * 1000:5.1f}  waits {nv} preempted {niv}  {h}"
                    )
            for t, dw, dc, why in self.passes:
                if t < b and t + dw > a:
                    lines.append(
                        f"  +{(t - a) * 1000:6.1f} ms  wall {dw * 1000:5.1f}  cpu "
                        f"{dc * 1000:5.1f}  (compositor pass: {why})"
                    )
            for gen, dw, _n, dc, t in gc_pauses:
                if t < b and t + dw > a:
                    lines.append(
                        f"  +{(t - a) * 1000:6.1f} ms  wall {dw * 1000:5.1f}  cpu "
                        f"{dc * 1000:5.1f}  (gc generation {gen})"
                    )
        by: dict[str, list[float]] = {}
        for _t, _w, dc, _nv, _niv, h in self.slow:
            by.setdefault(h, []).append(dc)
        lines.append("callbacks over 0.5 ms, by name: count, median and max CPU (ms)")
        for h, cpus in sorted(by.items(), key=lambda kv: -sum(kv[1]))[:12]:
            cpus.sort()
            lines.append(
                f"  {len(cpus):6d}  {cpus[len(cpus) // 2] * 1000:5.2f}  {cpus[-1] * 1000:5.2f}  {h}"
            )
        why: dict[str, list[float]] = {}
        for _t, _w, dc, reason in self.passes:
            why.setdefault(reason, []).append(dc)
        lines.append("compositor passes, by what asked for them: count, median, p99, max CPU (ms)")
        for reason, cpus in sorted(why.items(), key=lambda kv: -sum(kv[1]))[:16]:
            cpus.sort()
            n = len(cpus)
            lines.append(
                f"  {n:6d}  {cpus[n // 2] * 1000:5.2f}  {cpus[min(n - 1, n * 99 // 100)] * 1000:5.2f}"
                f"  {cpus[-1] * 1000:5.2f}  {reason}"
            )
        Path(self.out).write_text("\n".join(lines) + "\n")


class StallSampler:
    """With ``QUANTTUI_BENCH_STALLS=FILE``: a thread that, while the ticker is more than
    `late` s overdue, samples the loop thread's stack every `every` s; the stacks seen
    and their counts (one count ~ `every` s of stall) are written to FILE at the end."""

    def __init__(self, out: str, late: float = 0.010, every: float = 0.002) -> None:
        import collections

        self.out, self.late, self.every = out, late, every
        self.counts: collections.Counter[str] = collections.Counter()
        self.loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> StallSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        import traceback

        while not self._stop.wait(self.every):
            if not LAST_TICK[1] or time.perf_counter() - LAST_TICK[0] < self.late:
                continue
            frame = sys._current_frames().get(self.loop_thread)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)[-14:]
            key = " <- ".join(
                f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack)
            )
            self.counts[key] += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        lines = [f"{n:6d}  {k}" for k, n in self.counts.most_common(60)]
        Path(self.out).write_text("\n".join(lines) + "\n")


async def ticker(ctl: Path, end: asyncio.Event | None = None) -> dict:
    """A 1 ms ticker on this loop: its lateness from the moment `ctl/go` exists until
    `ctl/stop` does."""
    stalls = Stalls()
    go, stop = str(ctl / "go"), str(ctl / "stop")
    recording, t0, n = False, time.perf_counter(), 0
    while True:
        t, c, pc = time.perf_counter(), time.thread_time(), time.process_time()
        LAST_TICK[0], LAST_TICK[1] = t, recording
        await asyncio.sleep(TICK_S)
        if recording:
            stalls.add(
                time.perf_counter() - t - TICK_S,
                t - t0,
                time.thread_time() - c,
                time.process_time() - pc,
            )
        n += 1
        if n % 100:
            continue
        if not recording and _exists(go):
            recording, t0 = True, time.perf_counter()
            LAST_TICK[2] = t0
        elif _exists(stop) or (end is not None and end.is_set()):
            break
    return {
        "max": stalls.max,
        "p99": stalls.quantile(0.99),
        "ticks": stalls.n,
        "worst": sorted(stalls.worst, reverse=True),
        "seconds": time.perf_counter() - t0,
    }


async def remote_view(path: Path, ctl: Path) -> dict:
    """A `RemoteEngine` view on an asyncio loop: it drains its mailbox on the loop, as
    the app does, and keeps each pair's latest snapshot."""
    from quanttui.engine.events import SnapshotEvent
    from quanttui.engine.mailbox import Mailbox
    from quanttui.server.client import RemoteEngine

    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    box = Mailbox(lambda: loop.call_soon_threadsafe(wake.set))
    t0 = time.perf_counter()
    remote = RemoteEngine(path, box).connect().start()
    latest: dict[str, object] = {}
    stats = {"snapshots": 0, "events": 0, "full_s": None}

    async def consume() -> None:
        while True:
            await wake.wait()
            wake.clear()
            events, snaps = box.drain()
            stats["events"] += len(events)
            for ev in snaps:
                if isinstance(ev, SnapshotEvent):
                    latest[ev.pair] = ev.snapshot
                    stats["snapshots"] += 1
            if stats["full_s"] is None and all(
                (s := latest.get(k)) is not None and s.zscore is not None for k in KEYS
            ):
                stats["full_s"] = time.perf_counter() - t0

    task = asyncio.create_task(consume())
    data = await ticker(ctl)
    task.cancel()
    stats["attached_at_end"] = remote.alive
    remote.stop()
    return {**data, **stats}


def app_view(db: Path, ctl: Path) -> dict:
    """The app attached to the server, as `quanttui attach` makes it, plus the ticker."""
    import dataclasses

    from quanttui.app.app import QuantApp
    from quanttui.config import load_config
    from quanttui.server.sessions import socket_path

    t_launch = time.perf_counter()
    cfg = load_config(use_user_file=False, overrides={("storage", "db"): str(db)})
    cfg = dataclasses.replace(cfg, alerts=dataclasses.replace(cfg.alerts, bell=False))
    app = QuantApp(cfg, pairs=PAIRS, watchlist=True, engine_process=True, attach=socket_path(db))
    stats: dict = {"full_s": None}

    async def watch_rows() -> None:
        wl = app.watchlist_screen
        while stats["full_s"] is None:
            await asyncio.sleep(0.01)
            shown = getattr(wl, "shown", {})
            if all((s := shown.get(k)) is not None and s.zscore is not None for k in KEYS):
                stats["full_s"] = time.perf_counter() - t_launch

    async def main() -> dict:
        end = asyncio.Event()
        out = os.environ.get("QUANTTUI_BENCH_STALLS")
        sampler = StallSampler(out).start() if out else None
        handles_out = os.environ.get("QUANTTUI_BENCH_HANDLES")
        timer = HandleTimer(handles_out).__enter__() if handles_out else None
        probe = asyncio.create_task(ticker(ctl, end))
        rows = asyncio.create_task(watch_rows())

        async def count_heap() -> None:
            """The unfrozen heap by type at `go` and at `stop` (outside what is timed)."""
            want = "census_go"
            while want:
                await asyncio.sleep(0.2)
                if (ctl / want.removeprefix("census_")).exists():
                    stats[want] = census()
                    want = "census_stop" if want == "census_go" else ""

        counting = asyncio.create_task(count_heap())
        with GcPauses() as gcp:
            await app.run_async()
        counting.cancel()
        if "census_stop" in stats:
            stats["heap"] = (
                f"{sum(stats['census_go'].values()):,} objects unfrozen at go; "
                + census_growth(stats.pop("census_go"), stats.pop("census_stop"))
            )
        rows.cancel()
        end.set()
        if sampler is not None:
            sampler.stop()
        data = await probe
        if timer is not None:
            timer.__exit__()
            timer.report(data["worst"], gcp.pauses)
        return {**data, **stats, "gc": gcp.summary()}

    return asyncio.run(main())


# ------------------------------------------------------------------ memory tracing
def serve_traced(out: Path, ctl: Path, argv: list[str]) -> None:
    """``--trace-memory``: the server (`quanttui serve` with `argv`) with a thread that
    every 10 s appends one JSON line to `out`: the seconds since `ctl/go`, VmRSS and
    RssAnon, glibc's `mallinfo2` (arena: bytes from sbrk; hblkhd: bytes in mmapped
    chunks; uordblks: in use; fordblks: free but kept), CPython's allocated blocks, the
    objects the cyclic GC tracks, the types whose count grew most since `go`, and the
    threads: cheap enough not to slow the server, and enough to tell Python objects from
    malloc's free lists from SQLite's caches."""
    import collections
    import ctypes
    import gc
    import runpy

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2

    def status() -> dict[str, float]:
        got = {}
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    got[key] = int(rest.split()[0]) / 1024
        return got

    def census() -> collections.Counter[str]:
        return collections.Counter(type(o).__qualname__ for o in gc.get_objects())

    def watch() -> None:
        t0 = time.monotonic()
        at_go: collections.Counter[str] | None = None
        with open(out, "w") as fh:
            while not (ctl / "stop").exists():
                if at_go is None and (ctl / "go").exists():
                    at_go = census()
                grown = (census() - at_go).most_common(8) if at_go is not None else []
                m = libc.mallinfo2()
                row = {
                    "t": round(time.monotonic() - t0, 1),
                    "go": (ctl / "go").exists(),
                    **status(),
                    **{
                        k: getattr(m, k) / 2**20
                        for k in ("arena", "hblkhd", "uordblks", "fordblks")
                    },
                    "blocks": sys.getallocatedblocks(),
                    "gc_objects": len(gc.get_objects()),
                    "threads": threading.active_count(),
                    "grown": grown,
                }
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                time.sleep(10)

    threading.Thread(target=watch, daemon=True).start()
    sys.argv = ["quanttui", *argv]
    runpy.run_module("quanttui", run_name="__main__")


# ------------------------------------------------------------------ the cold baseline
def cold(db: Path, port: int) -> None:
    """An embedded engine's cold start on `db`: prints the seconds from constructing it
    to a snapshot of every pair with its z-score."""
    from quanttui.config import load_config
    from quanttui.engine import Engine, EngineThread
    from quanttui.engine.events import SnapshotEvent
    from quanttui.engine.mailbox import Mailbox

    cfg = load_config(
        use_user_file=False,
        overrides={
            ("feed", "ws_url"): f"ws://127.0.0.1:{port}/market",
            ("feed", "rest_url"): f"http://127.0.0.1:{port}",
            ("feed", "backfill"): "off",
            ("storage", "db"): str(db),
            ("analytics", "timeframe"): "1s",
            ("analytics", "window"): 300,
        },
    )
    t0 = time.perf_counter()
    engine = Engine(cfg, PAIRS)
    box = engine.subscribe(Mailbox())
    runner = EngineThread(engine).start()
    latest: dict = {}
    took = float("nan")
    while time.perf_counter() - t0 < 60:
        box.wait(0.01)
        _events, snaps = box.drain()
        for ev in snaps:
            if isinstance(ev, SnapshotEvent):
                latest[ev.pair] = ev.snapshot
        if all((s := latest.get(k)) is not None and s.zscore is not None for k in KEYS):
            took = time.perf_counter() - t0
            break
    runner.stop()
    print(json.dumps({"full_s": took}), flush=True)


# ------------------------------------------------------------------ the run
class PtyView:
    """`tests.ptyrun.PtyApp`'s pty and reader, around this script's `--app-view`."""

    def __init__(self, argv: list[str], env: dict[str, str], cols: int = 120, rows: int = 40):
        import fcntl
        import struct
        import termios

        from tests.ptyrun import PtyApp

        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        full = {k: v for k, v in env.items() if k not in ("NO_COLOR", "COLORTERM")}
        full.update(TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows))
        self.app = app = PtyApp.__new__(PtyApp)
        app.t0 = time.perf_counter()
        app.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=full,
            start_new_session=True,
            cwd=ROOT,
        )
        os.close(slave)
        app.master, app.log, app.buf = master, [], bytearray()
        self.bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def drain_in_background(self) -> None:
        def run() -> None:
            while not self._stop.is_set() and self.app.proc.poll() is None:
                self.app.pump(0.5, keep=False)
                self.bytes += sum(n for _, n in self.app.log)
                self.app.log.clear()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def quit(self) -> int | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        return self.app.quit()


async def control_view(ctl: Path) -> dict:
    """The machine's floor: the ticker alone on an event loop with nothing else to do."""
    return await ticker(ctl)


def steal_ms() -> float:
    """The hypervisor's steal time so far, both CPUs, in ms (``/proc/stat``)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def batch() -> None:
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def sample_rss(
    pid: int,
    t0: float,
    out: list[tuple[float, float]],
    stop: threading.Event,
    steal: list[tuple[float, float]],
):
    last = steal_ms()
    while not stop.wait(1.0):
        mb = rss_mb(pid, children=False)
        now = steal_ms()
        steal.append((time.monotonic() - t0, now - last))
        last = now
        if mb:
            out.append((time.monotonic() - t0, mb))


def window(ex: Exchange, db: Path, pid: int, seconds: float) -> dict[str, float]:
    """Stored trades/s, produced trades/s and the server's CPU share over `seconds`."""
    t, s, p, c = time.monotonic(), stored_live(db), ex.count(), cpu_s(pid)
    time.sleep(seconds)
    dt = time.monotonic() - t
    s2, p2, c2 = stored_live(db), ex.count(), cpu_s(pid)
    return {
        "stored": (s2 - s) / dt,
        "produced": (p2 - p) / dt,
        "cpu": (c2 - c) / dt,
        "behind": p2 - s2,
    }


def run(args: argparse.Namespace) -> int:
    from quanttui.server.client import RemoteEngine, probe
    from quanttui.server.sessions import socket_path

    quick = args.quick
    views_s = 60.0 if quick else max(args.minutes * 60 - 60, 60)
    base_s = 12.0 if quick else 60.0
    live = int(args.rate * (views_s + base_s + 120))
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    run_dir = tmp / "run"
    run_dir.mkdir(mode=0o700)
    ctl = tmp / "ctl"
    ctl.mkdir()
    os.environ["XDG_RUNTIME_DIR"] = str(run_dir)
    env = dict(os.environ)
    db = tmp / "serve.db"
    print(
        f"{len(PAIRS)} pairs over {len(SYMBOLS)} symbols, {args.rate:,.0f} trades/s in total, "
        f"W=300 1s bars; views for {views_s:.0f} s"
        + (" (--quick)" if quick else f" (--minutes {args.minutes:g})"),
        flush=True,
    )
    t_gen = time.monotonic()
    ex = Exchange(db, args.rate, live)
    print(f"  exchange ready ({time.monotonic() - t_gen:.1f} s to generate)", flush=True)
    server = None
    procs: list[subprocess.Popen] = []
    pty: PtyView | None = None
    rss: list[tuple[float, float]] = []
    steal: list[tuple[float, float]] = []
    stop_rss = threading.Event()
    ok: dict[str, bool] = {}
    try:
        err = open(tmp / "serve.log", "wb")  # noqa: SIM115
        words = [f"{x}/{y}" for x, y in PAIRS]
        traced = (
            [__file__, "--serve-traced", str(Path(args.trace_memory).resolve()), "--ctl", str(ctl)]
            if args.trace_memory
            else ["-m", "quanttui"]
        )
        server = subprocess.Popen(
            [sys.executable, *traced, "serve", *words, "--db", str(db)]
            + [*net_args(ex.port), "--timeframe", "1s", "--window", "300"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            preexec_fn=batch if args.server_batch else None,
        )
        err.close()
        t_server = time.monotonic()
        path = socket_path(db)
        while probe(path) is None:
            assert server.poll() is None, (tmp / "serve.log").read_text()
            assert time.monotonic() - t_server < 60, "the server never answered"
            time.sleep(0.1)
        threading.Thread(
            target=sample_rss, args=(server.pid, t_server, rss, stop_rss, steal), daemon=True
        ).start()
        print(f"  server pid {server.pid} answering after {time.monotonic() - t_server:.1f} s")
        # wait for the live stream to be flowing into the database
        while stored_live(db) < args.rate * 3:
            assert time.monotonic() - t_server < 90, "no trade stored"
            time.sleep(0.5)
        time.sleep(3.0)
        zero = window(ex, db, server.pid, base_s)
        print(
            f"  zero views, {base_s:.0f} s: stored {zero['stored']:,.0f}/s (produced "
            f"{zero['produced']:,.0f}/s), server CPU {zero['cpu'] * 100:.0f}%",
            flush=True,
        )

        # the three views
        view_out = {
            "app": tmp / "app.json",
            "remote": tmp / "remote.json",
            "floor": tmp / "floor.json",
            "floor-shared": tmp / "floor-shared.json",
        }
        pty = PtyView(
            [
                sys.executable,
                __file__,
                "--app-view",
                str(db),
                "--ctl",
                str(ctl),
                "--out",
                str(view_out["app"]),
            ],
            env,
        )
        t_title = pty.app.pump(30, b"WATCHLIST")
        pty.drain_in_background()
        for name, flags in (
            ("remote", ["--view", str(path)]),
            ("floor", ["--control"]),
            ("floor-shared", ["--control"]),
        ):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        *flags,
                        "--ctl",
                        str(ctl),
                        "--out",
                        str(view_out[name]),
                    ],
                    cwd=ROOT,
                    env=env,
                    start_new_session=name == "floor",
                )
            )
        headless_out = open(tmp / "headless.out", "wb")  # noqa: SIM115
        headless = subprocess.Popen(
            [sys.executable, "-m", "quanttui", "attach", "--headless", "--db", str(db)],
            cwd=ROOT,
            env=env,
            stdout=headless_out,
            stderr=subprocess.STDOUT,
        )
        procs.append(headless)
        headless_out.close()
        deadline = time.monotonic() + 60
        while (w := probe(path)) is not None and w.get("viewers", 0) < 3:
            assert time.monotonic() < deadline, f"views never attached: {w}"
            time.sleep(0.2)
        time.sleep(5.0)  # the app's first loads and frames
        (ctl / "go").touch()
        t_go = time.monotonic()
        print(
            f"  3 views attached (app title on the pty {t_title * 1000:.0f} ms after launch); "
            "measuring",
            flush=True,
        )
        three = window(ex, db, server.pid, base_s)
        print(
            f"  three views, {base_s:.0f} s: stored {three['stored']:,.0f}/s (produced "
            f"{three['produced']:,.0f}/s), server CPU {three['cpu'] * 100:.0f}%",
            flush=True,
        )

        # five attaches spread over the rest of the run
        attach: list[float] = []
        rest = views_s - (time.monotonic() - t_go)
        gap = max(rest / 6, 1.0)
        for k in range(5):
            time.sleep(gap)
            from quanttui.engine.events import SnapshotEvent
            from quanttui.engine.mailbox import Mailbox

            box = Mailbox()
            latest: dict = {}
            t0 = time.perf_counter()
            remote = RemoteEngine(path, box).connect().start()
            took = float("nan")
            while time.perf_counter() - t0 < 10:
                box.wait(0.005)
                _events, snaps = box.drain()
                for ev in snaps:
                    if isinstance(ev, SnapshotEvent):
                        latest[ev.pair] = ev.snapshot
                if all((s := latest.get(q)) is not None and s.zscore is not None for q in KEYS):
                    took = time.perf_counter() - t0
                    break
            remote.stop()
            attach.append(took)
            print(f"  attach {k + 1}: {took * 1000:.0f} ms", flush=True)
        while time.monotonic() - t_go < views_s:
            time.sleep(0.5)
        alive = {
            "headless": headless.poll() is None,
            "remote": procs[0].poll() is None,
            "app": pty.app.proc.poll() is None,
        }
        (ctl / "stop").touch()
        stop_rss.set()
        deadline = time.monotonic() + 15
        while not all(p.exists() for p in view_out.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        term_bytes = pty.bytes
        pty.quit()
        headless.send_signal(signal.SIGINT)
        for p in procs:
            p.wait(15)
        results = {k: json.loads(p.read_text()) for k, p in view_out.items() if p.exists()}

        # the ledger
        ex.ask("stop")
        produced = ex.ids(tmp / "ids.json")
        deadline = time.monotonic() + 30
        while stored_live(db) < len(produced) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.0)
        server.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        code = server.wait(15)
        exit_s = time.monotonic() - t_term
        first_live = FIRST_ID + HISTORY_S * HISTORY_PER_SYMBOL_S
        with sqlite3.connect(db) as c:
            rows = c.execute(
                "SELECT symbol, trade_id FROM ticks WHERE trade_id >= ?", (first_live,)
            ).fetchall()
        stored = set(rows)
        want = set(produced)
        missing, extra = len(want - stored), len(stored - want)
        dupes = len(rows) - len(stored) + (len(produced) - len(want))

        # the cold baseline, on a copy of the final database (the exchange is quiet)
        colds = []
        for k in range(3):
            copy = tmp / f"cold{k}.db"
            shutil.copy(db, copy)
            out = subprocess.run(
                [sys.executable, __file__, "--cold", str(copy), "--port", str(ex.port)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            lines = out.stdout.strip().splitlines()
            if not lines:
                raise RuntimeError(f"the cold start failed: {out.stderr.strip()[-2000:]}")
            colds.append(json.loads(lines[-1])["full_s"])
    finally:
        stop_rss.set()
        if pty is not None and pty.app.proc.poll() is None:
            pty.app.proc.kill()
        for p in procs:
            if p.poll() is None:
                p.kill()
        if server is not None and server.poll() is None:
            server.kill()
        ex.close()

    # ------------------------------------------------------------ the figures
    print()
    print(
        f"storage: {len(produced):,} live trades produced, {len(rows):,} rows stored; "
        f"missing {missing}, not produced {extra}, duplicates {dupes}; server exit {code} "
        f"{exit_s:.1f} s after SIGTERM"
    )
    ok["every trade stored once"] = missing == extra == dupes == 0 and len(rows) == len(want)
    since_go = [(t - (t_go - t_server), ms) for t, ms in steal]

    def steal_at(t: float) -> float:
        """The steal of the one-second samples that cover `t` s after go (each sample is
        the second before it), the larger of two to allow for the clocks' offset."""
        return max((ms for ts, ms in since_go if t <= ts < t + 2), default=0.0)

    for name in ("app", "remote"):
        r = results.get(name)
        if r is None:
            print(f"{name} view: no result")
            ok[f"{name} view stall <= 33 ms"] = False
            continue
        worst = ", ".join(
            f"{w * 1000:.1f}@{t:.0f}s ({cpu * 1000:.0f}/{pc * 1000:.0f}; {steal_at(t):.0f})"
            for w, t, cpu, pc in r["worst"]
        )
        full = f"{r['full_s'] * 1000:.0f} ms" if r.get("full_s") is not None else "never"
        print(
            f"{name} view: worst stall {r['max'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms "
            f"over {r['seconds']:.0f} s ({r['ticks']:,} ticks of 1 ms); first full frame "
            f"{full} after {'launch' if name == 'app' else 'connect'}"
            f"{'; snapshots ' + format(r['snapshots'], ',') if 'snapshots' in r else ''}"
        )
        print(
            "  worst (ms @ s: CPU ms of the loop thread / of the process; ms stolen by the "
            f"hypervisor in that second): {worst}"
        )
        if "gc" in r:
            print(f"  cyclic GC of the app's process: {r['gc']}")
        if "heap" in r:
            print(f"  the app's heap: {r['heap']}")
        ok[f"{name} view stall <= 33 ms"] = r["max"] <= STALL_TARGET
    for name, where in (
        ("floor", "its own process and session, as the app's pty is"),
        ("floor-shared", "its own process, in this script's session with the server"),
    ):
        floor = results.get(name)
        if floor is None:
            continue
        worst = ", ".join(
            f"{w * 1000:.1f}@{t:.0f}s ({steal_at(t):.0f})" for w, t, _c, _p in floor["worst"]
        )
        print(
            f"machine's floor (the ticker alone on a bare event loop, {where}): "
            f"worst stall {floor['max'] * 1000:.1f} ms, p99 {floor['p99'] * 1000:.1f} ms; "
            f"worst: {worst}"
        )
    span = [(t, ms) for t, ms in steal if t >= t_go - t_server]
    if span:
        t_max, ms_max = max(span, key=lambda x: x[1])
        total = sum(ms for _, ms in span)
        print(
            f"  hypervisor steal over the views' run: {total / 1000:.2f} s of "
            f"{2 * len(span)} CPU-s ({total / 20 / len(span):.2f}%); the worst second "
            f"{ms_max:.0f} ms at {t_max - (t_go - t_server):.0f}s"
        )
    print(
        f"headless view: attached to the end {alive['headless']}; terminal of the app "
        f"{term_bytes / max(views_s, 1) / 1024:.1f} KB/s"
    )
    ok["all views attached to the end"] = all(alive.values())
    am, cm = statistics.median(attach), statistics.median(colds)
    print(
        f"attach -> first full frame, median of 5: {am * 1000:.0f} ms (runs: "
        f"{', '.join(f'{t * 1000:.0f}' for t in attach)}); cold embedded start "
        f"{cm * 1000:.0f} ms (runs: {', '.join(f'{t * 1000:.0f}' for t in colds)}), "
        f"ratio {cm / am:.1f}x"
    )
    ok["attach <= 300 ms"] = am <= ATTACH_TARGET
    if quick:
        span = [(t, m) for t, m in rss if t >= t_go - t_server]
        half = len(span) // 2
        a = statistics.median(m for _, m in span[:half])
        b = statistics.median(m for _, m in span[half:])
        how = "first half of the views' run -> second half (--quick: indicative only)"
    else:
        a = statistics.median(m for t, m in rss if 120 <= t < 150)
        end = rss[-1][0]
        b = statistics.median(m for t, m in rss if t >= end - 30)
        how = f"minute 2 -> minute {end / 60:.1f}"
    drift = (b - a) / a
    curve = ", ".join(f"{m:.0f}" for t, m in rss[:: 10 if quick else 60])
    print(
        f"server RSS {how}: {a:.1f} -> {b:.1f} MB ({drift * 100:+.2f}%); max "
        f"{max(m for _, m in rss):.1f} MB; every {'10 s' if quick else 'minute'}: {curve}"
    )
    ok["server RSS within 3%"] = abs(drift) <= RSS_TARGET
    print(
        f"ingest, zero views -> three: stored {zero['stored']:,.0f} -> {three['stored']:,.0f}"
        f" trades/s (ratio {three['stored'] / zero['stored']:.3f}); server CPU "
        f"{zero['cpu'] * 100:.0f}% -> {three['cpu'] * 100:.0f}% "
        f"({three['cpu'] / zero['cpu']:.2f}x); behind at the end {zero['behind']:,} / "
        f"{three['behind']:,} trades"
    )
    ok["ingest with 3 views >= 0.95x zero views"] = three["stored"] >= 0.95 * zero["stored"]
    print()
    print(f"{'target':<44} result")
    for k, v in ok.items():
        print(f"{k:<44} {'PASS' if v else 'FAIL'}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(ok.values()) else 1


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--quick", action="store_true", help="views for 60 s, RSS halves compared")
    p.add_argument("--rate", type=float, default=5000.0)
    p.add_argument(
        "--server-batch",
        action="store_true",
        help="start the server under SCHED_BATCH, as the app's own engine process runs",
    )
    p.add_argument(
        "--trace-memory",
        metavar="FILE",
        help="write the server's memory (RSS, malloc's arenas, Python's blocks and objects) "
        "every 10 s to FILE as JSON lines",
    )
    p.add_argument("--serve-traced", metavar="OUT", help=argparse.SUPPRESS)
    p.add_argument("--exchange", metavar="DB", help=argparse.SUPPRESS)
    p.add_argument("--live", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--view", metavar="SOCKET", help=argparse.SUPPRESS)
    p.add_argument("--control", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--app-view", metavar="DB", help=argparse.SUPPRESS)
    p.add_argument("--cold", metavar="DB", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ctl", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args, rest = p.parse_known_args()
    if args.serve_traced:
        serve_traced(Path(args.serve_traced), Path(args.ctl), rest)
        return
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.exchange:
        asyncio.run(exchange(Path(args.exchange), args.rate, args.live))
    elif args.control:
        Path(args.out).write_text(json.dumps(asyncio.run(control_view(Path(args.ctl)))))
    elif args.view:
        Path(args.out).write_text(
            json.dumps(asyncio.run(remote_view(Path(args.view), Path(args.ctl))))
        )
    elif args.app_view:
        Path(args.out).write_text(json.dumps(app_view(Path(args.app_view), Path(args.ctl))))
    elif args.cold:
        cold(Path(args.cold), args.port)
    else:
        sys.exit(run(args))


if __name__ == "__main__":
    main()
