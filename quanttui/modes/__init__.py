"""Headless modes. `run_until_signal` is their shared life cycle: SIGINT, SIGTERM and
SIGHUP (an SSH hang-up) all end the run cleanly, after a flush."""

from __future__ import annotations

import asyncio
import signal


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)


async def start_checked(ing) -> asyncio.Event:
    """Check the symbols (unknown or non-trading, or absent from a replay source:
    `UserError`, exit 2; REST unreachable: warn on stderr), install the stop signals and
    start ingestion or the replay."""
    import sys

    from quanttui.errors import UserError
    from quanttui.feed.binance import SymbolError
    from quanttui.textsafe import printable

    try:
        warning = await ing.check_symbols()
    except SymbolError as exc:
        rest = getattr(ing, "rest", None)
        if rest is not None:
            await rest.close()
        raise UserError(str(exc), 2) from None
    if warning:
        print(f"quanttui: warning: {printable(warning, one_line=True)}", file=sys.stderr)
    stop = asyncio.Event()
    install_stop_signals(stop)
    await ing.start()
    return stop
