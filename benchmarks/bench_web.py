"""Browser tabs against the engine: ten opened and closed in a loop, then ten at once.

Issue 31 ("the same screens in a browser"). Every part is a real process: the endless
fake exchange (`python -m tests.fakes.serve --endless`, BTCUSDT/ETHUSDT at `--rate`
trades/s, 300 s of history for the warm start), the server (`python -m quanttui serve
BTCUSDT ETHUSDT --web 127.0.0.1:0`, W=60 one-second bars), its browser view, and the
tabs: pages of a headless Chromium driven over CDP (`tests/cdp.py`) when
``/usr/bin/chromium`` exists, else textual-serve websocket clients that speak the page's
protocol (`tests/webproc.tab`) and read the app's output. A tab counts as open once its
screen shows the pair.

Figures, over windows of `--window` seconds:

1. **Ingest**: trades stored per second (from the database's primary key) against the
   trades the exchange produced, with no tab (before), during a loop of ten tabs each
   opened, shown and closed, over a window after it, and twice: with ten tabs open at
   once, then with all closed. The ratios to "before" should be ~1.0 (>= 0.95): a tab
   costs the engine one attached view.
2. **Server RSS** (VmRSS of the server process alone: the front and the tabs are
   processes of their own) at the same points: after the loop against before (within
   2%), and after the second round of ten at once against after the first (within 2%:
   the first round's rise is the allocator's high-water mark for ten views' threads; a
   leak would rise again).
3. **Per tab**: the time from opening a tab to its screen showing the pair, and the RSS
   of one tab's app process (the price of a tab, on the machine that serves it), and of
   the front.

Usage: python benchmarks/bench_web.py [--rate 2000] [--window 15] [--no-browser]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from procs import rss_mb, serve  # noqa: E402

from tests import cdp  # noqa: E402
from tests.webproc import WebServer, descendants, read_output, tab, tab_apps  # noqa: E402

TABS = 10
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def stored(db: Path) -> int:
    """Trades stored so far, from the primary key (ids are consecutive per symbol)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as c:
        return sum(
            c.execute(
                "SELECT coalesce(max(trade_id), 0) FROM ticks WHERE symbol = ?", (s,)
            ).fetchone()[0]
            for s in SYMBOLS
        )


def produced(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/count", timeout=5) as r:
        import json

        return int(json.loads(r.read())["count"])


class Meter:
    """Stored and produced trades/s, and the server's RSS, over a span."""

    def __init__(self, db: Path, port: int, pid: int) -> None:
        self.db, self.port, self.pid = db, port, pid

    def start(self) -> tuple[float, int, int]:
        return time.monotonic(), stored(self.db), produced(self.port)

    def stop(self, mark: tuple[float, int, int]) -> dict[str, float]:
        t, s, p = mark
        dt = time.monotonic() - t
        return {
            "stored": (stored(self.db) - s) / dt,
            "produced": (produced(self.port) - p) / dt,
            "rss": rss_mb(self.pid, children=False),
            "seconds": dt,
        }

    def over(self, seconds: float) -> dict[str, float]:
        mark = self.start()
        time.sleep(seconds)
        return self.stop(mark)


class BrowserTabs:
    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.browser = cdp.Browser(workdir)

    def open(self) -> tuple[str, object]:
        return self.open_many(1)[0]

    def open_many(self, n: int) -> list[tuple[str, object]]:
        """Open `n` tabs at once; return when each shows the pair."""
        handles = [self.browser.new_tab(self.url) for _ in range(n)]
        for _tid, page in handles:
            cdp.wait_for(
                lambda page=page: "BTCUSDT ->" in (self.browser.screen_text(page) or ""),
                90,
                "a tab's screen",
            )
        return handles

    def close(self, handle: tuple[str, object]) -> None:
        self.browser.close_tab(*handle)

    def shutdown(self) -> None:
        self.browser.close()


class SocketTabs:
    def __init__(self, url: str, _workdir: Path) -> None:
        self.url = url

    def open(self):  # noqa: ANN201
        return self.open_many(1)[0]

    def open_many(self, n: int) -> list:
        socks = [tab(self.url) for _ in range(n)]
        for ws in socks:
            assert b"BTCUSDT" in read_output(ws, 90, until=b"BTCUSDT"), "a tab showed nothing"
            threading.Thread(target=self._drain, args=(ws,), daemon=True).start()
        return socks

    @staticmethod
    def _drain(ws) -> None:  # noqa: ANN001
        """Read on, as a page does, until the tab is closed."""
        with contextlib.suppress(Exception):
            while True:
                ws.recv()

    def close(self, ws) -> None:  # noqa: ANN001
        ws.close()

    def shutdown(self) -> None:
        pass


def line(name: str, m: dict[str, float], base: dict[str, float] | None) -> str:
    ratio = f"  x{m['stored'] / base['stored']:.3f} of before" if base else ""
    return (
        f"  {name:<28} stored {m['stored']:>8,.0f}/s  produced {m['produced']:>8,.0f}/s  "
        f"server RSS {m['rss']:6.1f} MB{ratio}"
    )


def run(args: argparse.Namespace) -> int:
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    run_dir = tmp / "run"
    run_dir.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run_dir), XDG_CONFIG_HOME=str(tmp / "cfg"))
    use_browser = not args.no_browser and cdp.available() is None
    ex, port = serve("--endless", "--rate", str(args.rate), "--history", "300")
    server = tabs = None
    try:
        db = tmp / "web.db"
        server = WebServer(
            ["serve", *SYMBOLS, "--db", str(db), "--timeframe", "1s", "--window", "60",
             "--ws-url", f"ws://127.0.0.1:{port}/market", "--rest-url", f"http://127.0.0.1:{port}",
             "--web", "127.0.0.1:0"],
            env, tmp / "serve.log",
        )  # fmt: skip
        server.wait_url()
        meter = Meter(db, port, server.proc.pid)
        deadline = time.monotonic() + 60
        while stored(db) < args.rate * 3:
            assert time.monotonic() < deadline, f"nothing stored:\n{server.text}"
            time.sleep(0.5)
        time.sleep(3)
        kind = "Chromium pages over CDP" if use_browser else "textual-serve websocket clients"
        print(
            f"{args.rate:,.0f} trades/s, server pid {server.proc.pid}; tabs: {kind}; ready "
            f"after {time.monotonic() - t_start:.0f} s"
        )
        before = meter.over(args.window)
        print(line("before (no tab)", before, None), flush=True)

        tabs = (BrowserTabs if use_browser else SocketTabs)(server.url, tmp)
        opened: list[float] = []
        mark = meter.start()
        for k in range(TABS):
            t0 = time.monotonic()
            handle = tabs.open()
            opened.append(time.monotonic() - t0)
            tabs.close(handle)
            print(f"  tab {k + 1}: screen after {opened[-1] * 1000:.0f} ms, closed", flush=True)
        loop = meter.stop(mark)
        print(line(f"loop of {TABS} open/close", loop, before), flush=True)
        time.sleep(3)
        settled = meter.over(args.window)
        print(line("after the loop", settled, before), flush=True)

        together: list[dict[str, float]] = []
        after: list[dict[str, float]] = []
        left = 0
        for n in range(2):
            handles = tabs.open_many(TABS)
            apps = tab_apps(server.proc.pid)
            front = [p for p in descendants(server.proc.pid) if p not in apps]
            per_tab = statistics.median(rss_mb(p, children=False) for p in apps)
            front_mb = max((rss_mb(p, children=False) for p in front), default=0.0)
            together.append(meter.over(args.window))
            print(line(f"{TABS} tabs open at once ({n + 1})", together[-1], before), flush=True)
            for h in handles:
                tabs.close(h)
            deadline = time.monotonic() + 15
            while tab_apps(server.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            left += len(tab_apps(server.proc.pid))
            time.sleep(3)
            after.append(meter.over(args.window))
            print(line(f"all closed ({n + 1})", after[-1], before), flush=True)
        code, took = server.stop()
    finally:
        if tabs is not None:
            tabs.shutdown()
        if server is not None:
            server.kill()
        ex.kill()
        ex.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)

    def x(m: dict[str, float]) -> str:
        return f"{m['stored']:,.0f} (x{m['stored'] / before['stored']:.3f})"

    print()
    print(
        f"ingest stored/s: before {before['stored']:,.0f} (produced "
        f"{before['produced']:,.0f}); during the loop of {TABS} {x(loop)}; after it "
        f"{x(settled)}; {TABS} open at once {x(together[0])}, {x(together[1])}; all closed "
        f"{x(after[0])}, {x(after[1])}"
    )
    print(
        f"server RSS: before {before['rss']:.1f} MB; after the loop of {TABS} "
        f"{settled['rss']:.1f} (x{settled['rss'] / before['rss']:.3f}); {TABS} open at once "
        f"{together[0]['rss']:.1f}, closed {after[0]['rss']:.1f}; again "
        f"{together[1]['rss']:.1f}, closed {after[1]['rss']:.1f} MB "
        f"(x{after[1]['rss'] / after[0]['rss']:.3f} of the first round)"
    )
    print(
        f"tab open -> screen shows the pair: median {statistics.median(opened) * 1000:.0f} ms "
        f"(runs: {', '.join(f'{t * 1000:.0f}' for t in opened)}); one tab's app "
        f"{per_tab:.0f} MB RSS (median of {len(apps)}), the front {front_mb:.0f} MB"
    )
    print(f"tab apps left after closing: {left}; server exit {code} {took:.1f} s after SIGTERM")
    print(f"run time {time.monotonic() - t_start:.0f} s")
    rates = [loop, settled, *together, *after]
    ok = (
        min(m["stored"] for m in rates) >= 0.95 * before["stored"]
        and settled["rss"] <= before["rss"] * 1.02
        and after[1]["rss"] <= after[0]["rss"] * 1.02
        and left == 0
        and code == 0
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=float, default=2000.0, help="trades/s of the exchange")
    p.add_argument("--window", type=float, default=10.0, help="seconds per measurement")
    p.add_argument("--no-browser", action="store_true", help="websocket clients, not Chromium")
    sys.exit(run(p.parse_args()))


if __name__ == "__main__":
    main()
