"""Headless modes. `run_until_signal` is their shared life cycle: SIGINT, SIGTERM and
SIGHUP (an SSH hang-up) all end the run cleanly, after a flush."""

from __future__ import annotations

import asyncio
import signal


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
