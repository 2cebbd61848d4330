"""`LogLines`: the alert log's rows as strings, drawn on demand, capped, never markup."""

from __future__ import annotations

import gc

from textual.app import App, ComposeResult

from quanttui.app.widgets.loglines import LogLines


class Host(App):
    def compose(self) -> ComposeResult:
        yield LogLines([8, None, None], limit=5, padding=1, id="log")


def screen_lines(app: App) -> list[str]:
    log = app.query_one(LogLines)
    return [log.render_line(y).text for y in range(log.size.height)]


async def test_rows_draw_follow_the_newest_drop_the_oldest_and_replace() -> None:
    app = Host()
    async with app.run_test(size=(60, 3)) as pilot:
        log = app.query_one(LogLines)
        for k in range(7):
            log.add(((f"12:00:0{k}", ""), (f"P{k}", ""), (f"z >= 2: {k}", "bold red")), key=f"{k}")
        await pilot.pause()
        assert len(log) == 5 and [t[1] for t in log.texts()] == ["P2", "P3", "P4", "P5", "P6"]
        lines = screen_lines(app)
        assert lines[-1].rstrip() == " 12:00:06  P6  z >= 2: 6"  # the newest, at the bottom
        assert all(len(line) == 60 for line in lines)
        strip = log.render_line(2)
        assert any(seg.style and seg.style.bold for seg in strip)

        assert log.replace("5", (("12:00:05", ""), ("P5", ""), ("WITHDRAWN", "strike")))
        assert log.texts()[3][2] == "WITHDRAWN"
        assert not log.replace("0", (("", ""), ("", ""), ("gone", "")))  # dropped already

        log.add((("t", ""), ("[bold]x[/bold]", ""), ("[red]", "")))
        await pilot.pause()
        assert "[bold]x[/bold]" in screen_lines(app)[-1]  # drawn as it is, never markup

        log.clear()
        await pilot.pause()
        assert len(log) == 0 and not "".join(screen_lines(app)).strip()


async def test_stored_rows_are_not_tracked_by_the_cyclic_gc() -> None:
    app = Host()
    async with app.run_test(size=(60, 3)):
        log = app.query_one(LogLines)
        for k in range(5):
            log.add(((f"12:00:0{k}", ""), (f"P{k}", ""), ("z >= 2", "")), key=f"{k} P z")
        gc.collect()
        assert len(log) == 5 and not any(gc.is_tracked(row) for row in log.rows)
