"""Screens at 80x24 and 120x40, offline over the fixed real recording (deterministic)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from quanttui.app.app import QuantApp
from tests.app.conftest import app_config


def offline_app(db: Path, tmp_path: Path) -> QuantApp:
    cfg = app_config(db, "ws://127.0.0.1:1/market", "http://127.0.0.1:1", tmp_path)
    cfg = dataclasses.replace(
        cfg, feed=dataclasses.replace(cfg.feed, reconnect_base_s=600, reconnect_max_s=600)
    )
    return QuantApp(cfg, "BTCUSDT", "ETHUSDT")


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
    ):
        assert loop.time() < end
        await asyncio.sleep(0.05)
    await pilot.pause(0.3)
    mon._dirty = True
    for _ in range(4):  # the table, then one chart per call
        mon._draw_tick()
    app.clear_notifications()
    mon.show_status(mon.status)
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_screen(snap_compare, fixed_db: Path, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(offline_app(fixed_db, tmp_path), terminal_size=size, run_before=settle)
