"""An attached app view in a process of its own, for the serve tests: `QuantApp` attached
to the server of a database under Pilot, printing each bar's z-score its monitor showed,
one JSON line ``[time_ms, z]`` per bar, for `seconds`.

Usage: python -m tests.viewprobe DB SECONDS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path


async def watch(db: Path, seconds: float) -> None:
    from quanttui.app.app import QuantApp
    from quanttui.app.screens.monitor import MonitorScreen
    from quanttui.config import load_config
    from quanttui.server.sessions import socket_path

    cfg = load_config(use_user_file=False, overrides={("storage", "db"): str(db)})
    app = QuantApp(cfg, pairs=[("BTCUSDT", "ETHUSDT")], engine_process=True, attach=socket_path(db))
    shown: dict[int, float] = {}
    async with app.run_test(size=(100, 30)) as pilot:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await pilot.pause(0.1)
            mon = app.screen
            if isinstance(mon, MonitorScreen) and mon.snapshot is not None:
                s = mon.snapshot
                if s.zscore is not None and s.time_ms not in shown:
                    shown[s.time_ms] = s.zscore
                    print(json.dumps([s.time_ms, s.zscore]), flush=True)
        await pilot.press("q")


if __name__ == "__main__":
    asyncio.run(watch(Path(sys.argv[1]), float(sys.argv[2])))
