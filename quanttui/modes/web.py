"""`quanttui web`: the browser view, with the engine it needs.

* a server for the database is running (`quanttui serve`): only the browser view starts,
  in front of it; Ctrl-C ends the view and leaves the server running;
* none is running: this process becomes the server (as `quanttui serve PAIRS --web
  ADDR`), so closing the last tab stops nothing, and Ctrl-C or SIGTERM stops it all;
* ``--demo``: the server replays the bundled demo recording (as `quanttui demo`) into a
  temporary session database, removed at the end.

The browser view itself is `quanttui.web`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from quanttui.config import Config
from quanttui.errors import UserError
from quanttui.web import WebSpec


def front_only(
    spec: WebSpec,
    socket: Path,
    cfg: Config,
    config_path: str | None,
    pairs: Sequence[Sequence[str]],
) -> int:
    """The browser view of a server that runs elsewhere, until SIGINT/SIGTERM/SIGHUP;
    `pairs`: pairs (x, y) and baskets (3+ legs) each tab opens."""
    from quanttui.server.client import probe
    from quanttui.web.launch import WebFront, tab_command

    welcome = probe(socket)
    if welcome is None:
        raise UserError(f"the server at {socket} does not answer")
    served = [str(p) for p in welcome.get("pairs", [])]
    title = "quanttui " + " ".join(
        served or ["/".join(p) if len(p) == 2 else "+".join(p) for p in pairs]
    )
    front = WebFront(spec, tab_command(cfg.db_path, config_path, pairs), title)
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    front.start()
    _log(f"{front.describe()}; views of the server pid {welcome.get('pid')}")
    try:
        while not stop.wait(0.5):
            if not front.alive():
                raise UserError("the browser view's process ended", 1)
    finally:
        front.close()
    _log("browser view stopped; the server goes on")
    return 0


def demo(
    cfg: Config,
    speed: float,
    spec: WebSpec,
    config_path: str | None,
    recording: Path,
    serve: Callable[..., int],
) -> int:
    """The demo replay (as `quanttui demo` runs it) served to the browser."""
    from quanttui.feed import replay

    pairs = [("BTCUSDT", "ETHUSDT")]
    a = cfg.analytics
    with contextlib.ExitStack() as stack:
        try:
            tmp = stack.enter_context(replay.scratch_dir())
            src = replay.prepare_source([recording], tmp / "source.db")
            replay.check_fill(src, pairs[0], a.timeframe, a.window, a.hedge)
        except replay.ReplayError as exc:
            raise UserError(f"demo: {exc}", 2) from None
        prefill = 2 * a.window * a.timeframe_ms
        rspec = replay.ReplaySpec(src, speed, True, "DEMO", prefill, str(recording.name))
        storage = dataclasses.replace(cfg.storage, db=str(tmp / "session.db"))
        session = dataclasses.replace(cfg, storage=storage)
        return serve(session, pairs, rspec)


def _log(line: str) -> None:
    from quanttui.textsafe import printable

    print(f"quanttui web: {printable(line, 500, one_line=True)}", file=sys.stderr, flush=True)
