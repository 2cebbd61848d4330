"""The watchlist's drawing: `WatchTable`'s lines (exactly the widget's width, one segment
per run of a style, redrawn when the theme changes) and the screen's redraw in slices
(twenty rows changed at once are drawn a few per tick, every one within `DRAW_S`, the
order changed only once every row shows its new value)."""

from __future__ import annotations

import math
from array import array

from textual.app import App, ComposeResult
from textual.widgets import Static

from quanttui.app.screens.watchlist import (
    DRAW_S,
    DRAW_TICK_S,
    DRAW_TICKS,
    ROWS_PER_DRAW,
    STATUS_TICKS,
    WatchlistScreen,
)
from quanttui.app.widgets.watchtable import TableColumn, WatchTable
from quanttui.engine.events import PairInfo, Status
from quanttui.model import Series, Snapshot

COLUMNS = [TableColumn("pair", "pair", 8), TableColumn("z", "z", 6), TableColumn("p", "p", 5)]


class Host(App):
    def compose(self) -> ComposeResult:
        yield WatchTable(id="t")


def text(strip) -> str:
    return "".join(seg.text for seg in strip)


async def test_a_line_is_the_widgets_width_with_a_segment_per_run_of_a_style() -> None:
    app = Host()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(WatchTable)
        table.set_columns(COLUMNS)
        table.set_order(["a", "b"])
        table.set_cells(
            "a", {"pair": ("BTC->ETH", ""), "z": ("+2.31", "bold red"), "p": ("0.01", "")}
        )
        table.set_cells("b", {"pair": ("SOL->ADA", ""), "z": ("-0.40", ""), "p": ("0.20", "")})
        await pilot.pause()
        width = table.size.width
        a, b = table.render_line(1), table.render_line(2)
        assert a.cell_length == b.cell_length == width
        assert text(a) == " BTC->ETH  +2.31   0.01  ".ljust(width)
        assert [seg.text.strip() for seg in a] == ["BTC->ETH", "+2.31", "0.01", ""]
        assert a._segments[1].style.bold and a._segments[1].style.color.name == "red"
        # one style all along: the cells and the blank rest
        assert len(list(b)) == 2 and text(b).split() == ["SOL->ADA", "-0.40", "0.20"]
        assert len({seg.style for seg in b}) == 1
        # the cursor's row, with the table focused, is reversed to the edge
        table.focus()
        await pilot.pause()
        assert all(seg.style.reverse for seg in table.render_line(1))
        assert not any(seg.style.reverse for seg in table.render_line(2))

        await pilot.resize_terminal(14, 10)
        await pilot.pause()
        narrow = table.render_line(2)
        assert narrow.cell_length == table.size.width
        assert text(narrow) == " SOL->ADA  -0.40   0.20  "[: table.size.width]


async def test_a_theme_change_redraws_the_rows_in_the_new_style() -> None:
    app = Host()
    async with app.run_test(size=(60, 10)) as pilot:
        app.theme = "textual-dark"
        table = app.query_one(WatchTable)
        table.set_columns(COLUMNS)
        table.set_order(["a"])
        table.set_cells("a", {"pair": ("BTC->ETH", ""), "z": ("+0.10", ""), "p": ("0.01", "")})
        await pilot.pause()
        before = table.render_line(1)._segments[0].style.bgcolor
        assert before == table.rich_style.bgcolor
        app.theme = "textual-light"
        await pilot.pause()
        after = table.render_line(1)._segments[0].style.bgcolor
        assert after == table.rich_style.bgcolor and after != before
        assert table.render_line(0)._segments[0].style.bgcolor == after


def pair(k: int) -> PairInfo:
    x, y = f"S{2 * k:02d}USDT", f"S{2 * k + 1:02d}USDT"
    return PairInfo(f"{x}/{y}", x, y, "1s", 300, "ols")


def snap(info: PairInfo, z: float, bar: int) -> Snapshot:
    series = Series(zscore=array("d", [z * math.sin(j / 9) for j in range(50)] + [z]))
    return Snapshot(
        info.symbol_x, info.symbol_y, "1s", 300, "ols", 600, time_ms=bar * 1000, zscore=z,
        beta=1.5, corr=0.9, adf_p=0.01, coint_p=0.02, half_life_s=40.0, series=series,
    )  # fmt: skip


class ListHost(App):
    def __init__(self, infos: list[PairInfo]) -> None:
        super().__init__()
        self.infos = infos

    def on_mount(self) -> None:
        self.push_screen(WatchlistScreen(self.infos, "LIVE", 2.0))


async def until_drawn(wl: WatchlistScreen, pilot, infos: list[PairInfo], bar: int) -> list[int]:
    """Tick the screen's draw by hand until every row shows bar `bar`: how many rows each
    tick drew."""
    per_tick, shown = [], 0
    while shown < len(infos):
        wl._draw()
        await pilot.pause()
        now = sum(1 for i in infos if (s := wl.shown.get(i.key)) and s.time_ms == bar * 1000)
        per_tick.append(now - shown)
        shown = now
        assert len(per_tick) <= DRAW_S / DRAW_TICK_S, per_tick
    return per_tick


async def test_twenty_rows_changed_at_once_are_drawn_in_slices_within_draw_s() -> None:
    infos = [pair(k) for k in range(20)]
    app = ListHost(infos)
    async with app.run_test(size=(120, 40)) as pilot:
        wl = app.screen
        assert isinstance(wl, WatchlistScreen)
        wl.draw_timer.pause()
        table = wl.query_one("#wl-table", WatchTable)
        for k, info in enumerate(infos):
            wl.show_snapshot(info.key, snap(info, 0.1 * k, 1))
        assert await until_drawn(wl, pilot, infos, 1) == [8, 8, 4]
        assert ROWS_PER_DRAW == 8

        wl.action_sort("z")  # largest |z| first
        assert table.order == [i.key for i in reversed(infos)]
        # the bar closes with the smallest |z| now the largest: the order holds until
        # every row shows the new bar, then follows it
        for k, info in enumerate(infos):
            wl.show_snapshot(info.key, snap(info, 3.0 - 0.1 * k, 2))
        wl._draw()
        await pilot.pause()
        assert table.order == [i.key for i in reversed(infos)]
        await until_drawn(wl, pilot, infos, 2)
        assert table.order == [i.key for i in infos]
        for info in infos:
            z = wl.shown[info.key].zscore
            assert table.cell(info.key, "z") == f"{z:+.2f}"


async def test_a_hundred_rows_are_all_drawn_within_draw_s() -> None:
    infos = [pair(k) for k in range(100)]
    app = ListHost(infos)
    async with app.run_test(size=(120, 40)) as pilot:
        wl = app.screen
        wl.draw_timer.pause()
        for info in infos:
            wl.show_snapshot(info.key, snap(info, 1.0, 1))
        per_tick = await until_drawn(wl, pilot, infos, 1)
        assert per_tick == [20] * 5  # ceil(100 * DRAW_TICK_S / DRAW_S) a tick


async def test_rows_that_never_stop_changing_are_put_in_order_every_draw_ticks() -> None:
    """Every row changes again before its slice comes round, so the dirty rows never run
    out: the order must still follow the values every `DRAW_TICKS` ticks."""
    infos = [pair(k) for k in range(100)]
    app = ListHost(infos)
    async with app.run_test(size=(120, 40)) as pilot:
        wl = app.screen
        wl.draw_timer.pause()
        table = wl.query_one("#wl-table", WatchTable)
        wl.action_sort("z")
        for k, info in enumerate(infos):
            wl.show_snapshot(info.key, snap(info, 0.01 * k, 1))
        await until_drawn(wl, pilot, infos, 1)
        before = [i.key for i in reversed(infos)]
        assert table.order == before
        orders = []
        for bar in range(2, 2 + 2 * DRAW_TICKS):
            sign = 1 if (bar - 2) // DRAW_TICKS % 2 == 0 else -1
            for k, info in enumerate(infos):
                wl.show_snapshot(info.key, snap(info, 3.0 - sign * 0.01 * k, bar))
            wl._draw()
            await pilot.pause()
            assert wl._dirty
            orders.append(list(table.order))
        n = DRAW_TICKS
        assert orders[: n - 1] == [before] * (n - 1)
        assert orders[n - 1] == [i.key for i in infos]
        assert orders[n : 2 * n - 1] == [orders[n - 1]] * (n - 1)
        assert orders[2 * n - 1] == before


def status(rate: float, state: str = "live", ages: float = 0.5) -> Status:
    symbols = ("S00USDT", "S01USDT")
    return Status(
        state=state, detail="", rate=rate, ticks=0, stored=0, inserted=0,
        leg_age=dict.fromkeys(symbols, ages), symbols=symbols, gaps_open=0, gaps_filled=0,
        malformed=0, db_bytes=1_500_000,
    )  # fmt: skip


async def test_a_status_is_drawn_with_the_rows_or_within_status_ticks_and_a_warning_at_once() -> (
    None
):
    infos = [pair(0)]
    app = ListHost(infos)
    async with app.run_test(size=(120, 40)) as pilot:
        wl = app.screen
        wl.draw_timer.pause()
        line = wl.query_one("#wl-status", Static)

        async def tick() -> str:
            wl._draw()
            await pilot.pause()
            return str(line.render())

        wl.show_status(status(100))
        assert "100 ticks/s" in await tick()  # the first status: drawn at once

        # a new rate alone waits for rows, at most STATUS_TICKS ticks
        wl.show_status(status(200))
        shown = [await tick() for _ in range(STATUS_TICKS)]
        assert ["200 ticks/s" in s for s in shown] == [False] * (STATUS_TICKS - 1) + [True]

        # ... and is drawn with the rows when they come first
        wl.show_status(status(300))
        assert "300 ticks/s" not in await tick()
        wl.show_snapshot(infos[0].key, snap(infos[0], 1.0, 1))
        assert "300 ticks/s" in await tick()

        # what it warns of is drawn at the next tick
        wl.show_status(status(300, "reconnecting"))
        assert "RECONNECTING" in await tick()
        wl.show_status(status(300, "reconnecting", ages=90.0))
        assert "no recent trades: S00 S01" in await tick()
