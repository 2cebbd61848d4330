"""The watchlist's redraw when every bar closes at once: 20 pairs, 120x40.

Every pair's bar closes in the same second, so all 20 rows change together. What the UI
loop then does in one go (a tick: `WatchlistScreen._draw`, then the screen's compositor
pass with the terminal's escape sequences made, as a real terminal's driver makes them)
is the longest burst the keyboard waits behind; on a busy machine, preemptions stretch it
into a stall (`bench_serve.py`). Three ways, measured in the same run on the same
snapshots (the longest tick per bar and the CPU per bar, medians over `--bars` bars, the
loop thread's CPU time; the bytes for the terminal per bar):

* **now**: lines made at the widget's width with one segment per run of a style, from
  styles made once per theme; at most `ROWS_PER_DRAW` rows a tick (`DRAW_TICK_S` apart);
* **one tick**: the same lines, every changed row in one tick (as before the slices);
* **baseline**: the lines as they were made before (the widget's `rich_style`, which
  walks every ancestor's CSS, per line; one segment per cell; cropped and extended to the
  width afterwards), every row in one tick.

Textual's headless driver (`App.run_test`) stands in for the terminal; the escape
sequences are made from each compositor update as the Linux driver would write them.

Usage: python benchmarks/bench_redraw.py [--bars 200]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
from array import array
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.segment import Segment  # noqa: E402
from rich.style import Style  # noqa: E402
from textual._compositor import CompositorUpdate  # noqa: E402
from textual.app import App  # noqa: E402
from textual.screen import Screen  # noqa: E402
from textual.strip import Strip  # noqa: E402

from quanttui.app.screens import watchlist  # noqa: E402
from quanttui.app.screens.watchlist import WatchlistScreen  # noqa: E402
from quanttui.app.widgets.watchtable import Cell, WatchTable, fit  # noqa: E402
from quanttui.engine.events import PairInfo, Status  # noqa: E402
from quanttui.model import Series, Snapshot  # noqa: E402

PAIRS = 20
INFOS = [
    PairInfo(f"S{2 * k:02d}USDT/S{2 * k + 1:02d}USDT", f"S{2 * k:02d}USDT", f"S{2 * k + 1:02d}USDT",
             "1s", 300, "ols")
    for k in range(PAIRS)
]  # fmt: skip
SYMBOLS = tuple(s for i in INFOS for s in (i.symbol_x, i.symbol_y))


def snapshot(info: PairInfo, k: int, bar: int) -> Snapshot:
    """A bar's snapshot with every column's metric set, z moving bar to bar."""
    z = [2.6 * math.sin((bar + j) / 7 + k) for j in range(600)]
    return Snapshot(
        info.symbol_x, info.symbol_y, "1s", 300, "ols", 600, time_ms=bar * 1000,
        beta=1.2 + 0.01 * ((bar + k) % 50), corr=0.5 + 0.4 * math.cos(bar / 11 + k),
        adf_p=0.001 * ((bar * 7 + k) % 90), coint_p=0.001 * ((bar * 3 + k) % 90),
        half_life_s=30.0 + (bar + k) % 70, zscore=z[-1], series=Series(zscore=array("d", z)),
    )  # fmt: skip


def status(bar: int) -> Status:
    return Status("live", "", 5000.0, bar * 5000, bar * 5000, bar * 5000,
                  dict.fromkeys(SYMBOLS, 0.1), SYMBOLS, 0, 0, 0, 10_000_000 + bar)  # fmt: skip


def baseline_line(self: WatchTable, cells: Sequence[Cell], on: bool) -> Strip:
    """`WatchTable._line` as it was: the widget's style looked up per line, a segment per
    cell, then cropped and extended to the width."""
    base = self.rich_style
    extra = Style(reverse=True) if on else None
    segs = []
    for col, (text, style) in zip(self.columns, cells, strict=True):
        st = base + Style.parse(style) if style else base
        if extra is not None:
            st = st + extra
        segs.append(Segment(" " + fit(text, col.width) + " ", st))
    width = self.size.width
    return Strip(segs).crop_extend(0, width, base + extra if extra is not None else base)


class Host(App):
    def on_mount(self) -> None:
        self.push_screen(WatchlistScreen(INFOS, "LIVE", 2.0))


PASS_CPU: list[float] = []
BYTES: list[int] = []


def measure_passes() -> None:
    """Time each compositor pass, and make the escape sequences it would write."""
    update = Screen._on_timer_update

    def timed(self: Screen) -> None:
        c = time.thread_time()
        update(self)
        PASS_CPU.append(time.thread_time() - c)

    display = App._display

    def encoded(self: App, screen: Screen, renderable: object) -> None:
        if isinstance(renderable, CompositorUpdate) and not self._batch_count:
            BYTES.append(len(renderable.render_segments(self.console).encode()))
        display(self, screen, renderable)

    Screen._on_timer_update = timed  # before the screen exists: its timer binds it
    App._display = encoded


async def run(bars: int, rows_per_tick: int, baseline: bool) -> dict[str, float]:
    saved_line, saved_rows = WatchTable._line, watchlist.ROWS_PER_DRAW
    if baseline:
        WatchTable._line = baseline_line
    watchlist.ROWS_PER_DRAW = rows_per_tick
    try:
        app = Host()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.3)
            wl = app.screen
            assert isinstance(wl, WatchlistScreen)
            wl.draw_timer.pause()
            longest, total, sent = [], [], []
            for bar in range(bars):
                for k, info in enumerate(INFOS):
                    wl.show_snapshot(info.key, snapshot(info, k, bar))
                wl.show_status(status(bar))
                ticks = []
                while True:
                    PASS_CPU.clear()
                    BYTES.clear()
                    c = time.thread_time()
                    wl._draw()
                    drew = time.thread_time() - c
                    await pilot.pause()
                    ticks.append(drew + sum(PASS_CPU))
                    sent.append(sum(BYTES))
                    if not wl._dirty:
                        break
                shown = sum(1 for i in INFOS if wl.shown[i.key].time_ms == bar * 1000)
                assert shown == PAIRS, shown
                longest.append(max(ticks))
                total.append(sum(ticks))
            return {
                "longest": statistics.median(longest[bars // 10 :]),
                "total": statistics.median(total[bars // 10 :]),
                "ticks": len(ticks),
                "bytes": sum(sent) / bars,
            }
    finally:
        WatchTable._line, watchlist.ROWS_PER_DRAW = saved_line, saved_rows


async def main_async(bars: int) -> None:
    measure_passes()
    ways = {
        "baseline": (PAIRS, True),
        "one tick": (PAIRS, False),
        "now": (watchlist.ROWS_PER_DRAW, False),
    }
    results = {}
    for name, (rows, baseline) in ways.items():
        results[name] = await run(bars, rows, baseline)
    print(f"{PAIRS} rows changed at once, 120x40, medians over {bars} bars (loop thread CPU)")
    for name, r in results.items():
        print(
            f"  {name:<9} longest tick {r['longest'] * 1000:5.2f} ms, per bar "
            f"{r['total'] * 1000:5.2f} ms in {r['ticks']} tick(s), {r['bytes'] / 1024:5.1f} KB "
            "for the terminal"
        )
    b, o, n = results["baseline"], results["one tick"], results["now"]
    print(
        f"longest tick: baseline / now {b['longest'] / n['longest']:.2f}x (the lines alone "
        f"{b['longest'] / o['longest']:.2f}x, the slices {o['longest'] / n['longest']:.2f}x); "
        f"CPU per bar: now / baseline {n['total'] / b['total']:.2f}x; bytes per bar: "
        f"baseline / now {b['bytes'] / n['bytes']:.2f}x"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bars", type=int, default=200)
    args = p.parse_args()
    asyncio.run(main_async(args.bars))


if __name__ == "__main__":
    main()
