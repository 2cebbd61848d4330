"""The engine's side of `EngineProcess`: `python -m quanttui.engine.child`.

Reads the spec (config, pairs, rules, replay, baskets) from stdin, runs the `Engine` on an
`EngineThread`, and then serves the link described in `quanttui.engine.process`: this
thread reads calls from stdin, a sender thread writes the mailbox's events and the
replies to stdout. Only `EngineProcess` starts it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from quanttui.engine.events import Finished
from quanttui.engine.process import read_frame, write_frame
from quanttui.engine.runner import EXIT_MARGIN_S, HARD_EXIT_S
from quanttui.sched import yield_to_screens

if TYPE_CHECKING:
    from quanttui.engine import EngineThread, Mailbox


class Link:
    def __init__(self, out_fd: int, box: Mailbox) -> None:
        self.out_fd = out_fd
        self.replies: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()
        self.box = box
        self.broken = False

    def send(self, obj: object) -> None:
        if self.broken:
            return
        try:
            write_frame(self.out_fd, obj)
        except OSError:
            self.broken = True

    def reply(self, cid: int, ok: bool, value: object) -> None:
        with self.lock:
            self.replies.append(("reply", cid, ok, value))
        self.box.poke()


def _serve_events(link: Link, box: Mailbox, runner: EngineThread) -> None:
    """Events first, then the replies taken before them were drained: a reply follows
    every event its command published (the engine puts those before the command's
    future is done and `Link.reply` runs)."""
    while True:
        box.wait(0.25)
        with link.lock:
            replies, link.replies = link.replies, []
        events, latest = box.drain()
        if events or latest:
            link.send(("events", events, latest))
        for r in replies:
            try:
                link.send(r)
            except Exception as exc:  # noqa: BLE001 - an unpicklable result
                link.send(("reply", r[1], False, f"{exc.__class__.__name__}: {exc}"))
        if runner.done.is_set() and not len(box):
            with link.lock:
                if link.replies:
                    continue
            return


def _deadline(after: float) -> None:
    """Exit hard `after` seconds from now, whatever the engine is doing."""

    def watch() -> None:
        time.sleep(after)
        os._exit(1)

    threading.Thread(target=watch, name="quanttui-child-exit", daemon=True).start()


def main() -> int:
    yield_to_screens()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    in_fd, out_fd = sys.stdin.fileno(), os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    spec = read_frame(in_fd)
    if spec is None:
        return 0
    config, pairs, rules, replay, baskets = spec

    from quanttui.engine import Engine, EngineThread, Mailbox
    from quanttui.textsafe import guard_logging

    guard_logging()
    box = Mailbox()
    link = Link(out_fd, box)
    try:
        engine = Engine(config, pairs, rules=rules, replay=replay, baskets=baskets)
    except Exception as exc:  # noqa: BLE001 - reported as the engine's end
        link.send(("done", Finished(1, f"{exc.__class__.__name__}: {exc}")))
        return 1
    engine.subscribe(box)
    link.send(
        ("ready", engine.pair_infos(), {i.key: engine.rules(i.key) for i in engine.pair_infos()})
    )
    runner = EngineThread(engine).start()
    stopping = threading.Event()

    def stop(*_: object) -> None:
        if not stopping.is_set():
            stopping.set()
            _deadline(HARD_EXIT_S - EXIT_MARGIN_S / 2)
            runner.call_soon("stop")

    signal.signal(signal.SIGTERM, stop)
    sender = threading.Thread(
        target=_serve_events, args=(link, box, runner), name="quanttui-link-out", daemon=True
    )
    sender.start()

    def read_calls() -> None:
        while True:
            try:
                frame = read_frame(in_fd)
            except Exception:  # noqa: BLE001 - a broken link is the end of the link
                frame = None
            if frame is None or frame[0] == "stop":
                stop()
                return
            if frame[0] == "call":
                _, cid, name, args, kwargs = frame

                def done(fut, cid: int = cid) -> None:  # noqa: ANN001
                    if fut.cancelled():
                        link.reply(cid, False, "cancelled")
                    elif fut.exception() is not None:
                        link.reply(cid, False, str(fut.exception()))
                    else:
                        link.reply(cid, True, fut.result())

                try:
                    runner.call_method(name, *args, **kwargs).add_done_callback(done)
                except Exception as exc:  # noqa: BLE001 - the engine has stopped
                    link.reply(cid, False, str(exc))

    threading.Thread(target=read_calls, name="quanttui-link-in", daemon=True).start()
    while not runner.done.wait(0.5):
        pass
    sender.join(timeout=2.0)
    result = runner.result or Finished(1, "the engine ended without a result")
    link.send(("done", result))
    with contextlib.suppress(OSError):
        os.close(out_fd)
    return result.code


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
