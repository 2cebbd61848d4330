"""Screens at 80x24 and 120x40, offline over the fixed real recording (deterministic).

The SVGs show the time labels under each chart, the ±entry and 0 guide lines on the rows
labelled with them, every metric without scrolling, and `q`/`?` first in the key bar;
`test_screen.py` asserts the same on the rendered text."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path

import pytest
from rich.console import Console

from quanttui.app.app import QuantApp
from tests.app.conftest import app_config


def offline_app(db: Path, tmp_path: Path) -> QuantApp:
    cfg = app_config(db, "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path)
    cfg = dataclasses.replace(
        cfg, feed=dataclasses.replace(cfg.feed, reconnect_base_s=600, reconnect_max_s=600)
    )
    return QuantApp(cfg, "BTCUSDT", "ETHUSDT")


def screen_text(app: QuantApp) -> str:
    """The screen as plain text, as the snapshot SVG shows it."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


async def settle(pilot) -> None:
    app = pilot.app
    mon = app.monitor
    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while not (
        app.snapshot is not None
        and app.snapshot.adf_p is not None
        and app.feed_state == "offline"
        and app.engine.backfill is not None
        and app.engine.backfill.state == "skipped"
        and mon.status is not None
        and mon.status.state == "offline"
        and mon.status.backfill == "skipped"
        and mon.status.stored > 0
    ):
        assert loop.time() < end
        await asyncio.sleep(0.05)
    await pilot.pause(0.3)
    mon._dirty = True
    for _ in range(4):  # the table, then one chart per call (built in a thread)
        mon._draw_tick()
    while not all(c.drawn(mon.frame()) for c in mon.query("Chart")):
        assert loop.time() < end
        await asyncio.sleep(0.05)
    app.clear_notifications()
    mon.show_status(mon.status)
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_screen(snap_compare, fixed_db: Path, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(offline_app(fixed_db, tmp_path), terminal_size=size, run_before=settle)
