"""`quanttui ... --headless`: the engine with a JSON-lines view.

One JSON line per alert on stdout (`{"time", "pair", "rule", "metric", "value",
"threshold"}`; `"revised": true` on an alert a recompute added), and one
`{"retract": {...the alert...}, "time_withdrawn": ..., "reason": ...}` line when a
recompute from the database contradicts an alert already printed. At the end, one
`{"snapshot": {...}}` line per pair: its last snapshot (`Snapshot.as_json`, with `pair`).
Status goes to stderr. Attached to a server (`attach`), the pairs and baskets named are
added to it when it lacks them, and only their lines are printed.

The engine runs on its own thread; this view drains its mailbox on the main thread. A
reader that stops reading stdout (or stderr) blocks only this thread: ingestion goes on,
the mailbox keeps at most `MAX_EVENTS` events (then drops the oldest and says so with a
`{"dropped": N}` line once the reader is back; every alert is in the database). SIGINT,
SIGTERM and SIGHUP flush and exit 0 (within 5 s, even while a write is blocked: see
`ShutdownGuard`); a second signal changes nothing. A reader that has gone (the pipe's
last reader closed it, seen by `watch_reader` or as EPIPE; or EIO on a hung-up
terminal) ends the run the same way: nothing more can be delivered.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from quanttui.config import Config
from quanttui.engine import Engine, EngineThread, Mailbox, ShutdownGuard
from quanttui.engine.events import (
    AlertEvent,
    AlertWithdrawn,
    BackfillEvent,
    BasketInfo,
    BasketSnapshotEvent,
    FeedState,
    Finished,
    Notice,
    Recomputed,
    SnapshotEvent,
)
from quanttui.errors import UserError
from quanttui.feed.replay import ReplaySpec
from quanttui.model import BasketSnapshot, Snapshot, iso_utc
from quanttui.terminal import relayed_stderr, watch_hangup, watch_reader
from quanttui.textsafe import printable

if TYPE_CHECKING:
    from quanttui.server.client import RemoteEngine


def _safe(obj: object) -> object:
    """Every string of a JSON line through `printable` (rule text, pair, reasons)."""
    if isinstance(obj, str):
        return printable(obj, 1000, one_line=True)
    if isinstance(obj, dict):
        return {k: _safe(v) for k, v in obj.items()}
    return obj


def _out(obj: object) -> None:
    sys.stdout.write(orjson.dumps(_safe(obj)).decode() + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null: what is still buffered, and the interpreter's last flush,
    then go nowhere instead of failing with EPIPE."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def run(
    cfg: Config,
    pairs: Sequence[tuple[str, str]],
    *,
    extra_rules: Sequence[str] = (),
    replay: ReplaySpec | None = None,
    cleanup: Callable[[], object] | None = None,
    baskets: Sequence[Sequence[str]] = (),
) -> int:
    """`cleanup` runs before a forced exit (`ShutdownGuard`), e.g. removing a replay's
    scratch directory. Meanwhile stderr is relayed (`relayed_stderr`): the engine's log
    records never wait for it. `baskets` (3+ legs each) run beside the pairs; their
    alerts' `pair` is ``A+B+C`` and their last line `BasketSnapshot.as_json`."""
    with relayed_stderr():
        return _run(cfg, pairs, extra_rules, replay, cleanup, baskets)


def _run(
    cfg: Config,
    pairs: Sequence[tuple[str, str]],
    extra_rules: Sequence[str],
    replay: ReplaySpec | None,
    cleanup: Callable[[], object] | None,
    baskets: Sequence[Sequence[str]] = (),
) -> int:
    engine = Engine(cfg, pairs, rules=extra_rules, replay=replay, baskets=baskets)
    wake = threading.Event()
    box = engine.subscribe(Mailbox(wake.set))
    return _view(EngineThread(engine), box, wake, replay, cleanup)


def attach(path: Path, entries: Sequence[Sequence[str]] = ()) -> int:
    """`quanttui attach --headless [PAIRS...]`: the same JSON lines, from the server at
    `path` (`quanttui serve`); the alerts it fired before this view attached are not
    printed again. With `entries` (pairs X/Y and baskets A+B+C), the server is asked to
    add those it lacks, and only their alerts and last snapshots are printed; one it
    cannot add (an unknown symbol) ends the view with its reason and exit code 2, the
    server unchanged. Ctrl-C detaches; the server keeps running."""
    from quanttui.server.client import AttachError, RemoteEngine

    wake = threading.Event()
    box = Mailbox(wake.set)
    try:
        runner = RemoteEngine(path, box, history=False).connect()
    except AttachError as exc:
        raise UserError(str(exc), 1) from None
    with relayed_stderr():
        return _view(runner, box, wake, None, None, entries)


def _keys(entries: Sequence[Sequence[str]]) -> set[str]:
    """The names an entry's alerts and snapshots may carry: ``A+B+C`` for a basket, both
    ``X/Y`` and ``Y/X`` for a pair (an alert names the legs in the engine's order)."""
    keys = set()
    for e in entries:
        if len(e) == 2:
            keys |= {f"{e[0]}/{e[1]}", f"{e[1]}/{e[0]}"}
        else:
            keys.add("+".join(e))
    return keys


def _add_missing(
    runner: RemoteEngine, entries: Sequence[Sequence[str]]
) -> dict[str, concurrent.futures.Future]:
    """Ask the server for each entry it does not run yet (its welcome's ``pairs``); the
    replies, by entry key."""
    served = set(runner.welcome.get("pairs", ()))
    asked = {}
    for e in entries:
        if len(e) == 2:
            key = f"{e[0]}/{e[1]}"
            if key not in served and f"{e[1]}/{e[0]}" not in served:
                asked[key] = runner.call_method("add_pair", e[0], e[1])
        elif (key := "+".join(e)) not in served:
            asked[key] = runner.call_method("add_basket", list(e))
    return asked


def _view(
    runner: EngineThread | RemoteEngine,
    box: Mailbox,
    wake: threading.Event,
    replay: ReplaySpec | None,
    cleanup: Callable[[], object] | None,
    entries: Sequence[Sequence[str]] = (),
) -> int:
    recomputes = 0
    only = _keys(entries) if entries else None
    stop = threading.Event()

    def request_exit(code: int) -> None:
        stop.set()
        wake.set()

    gone = threading.Event()

    def reader_gone() -> None:
        gone.set()
        wake.set()

    def out(obj: object) -> None:
        if gone.is_set():
            return
        try:
            _out(obj)
        except (OSError, ValueError):
            reader_gone()

    guard = ShutdownGuard(runner, request_exit, cleanup=cleanup).install()
    runner.start()
    asked = _add_missing(runner, entries) if entries else {}
    refused: str | None = None
    fired = dropped = 0
    last: dict[str, Snapshot | BasketSnapshot] = {}
    finished: Finished | None = None
    stopping = False
    try:
        stdout_fd = sys.stdout.fileno()
    except (OSError, ValueError):
        stdout_fd = -1
    watches = contextlib.ExitStack()
    watches.enter_context(watch_hangup(guard.hangup))
    if stdout_fd >= 0:
        watches.enter_context(watch_reader(stdout_fd, reader_gone))
    try:
        while finished is None:
            wake.wait(0.5)
            wake.clear()
            if gone.is_set() and not stop.is_set():
                _silence_stdout()
                _err("quanttui: stdout has no reader any more; stopping")
                stop.set()
                guard.arm()
            if stop.is_set() and not stopping:
                stopping = True
                runner.call_soon("stop")
            for key, fut in list(asked.items()):
                if fut.done():
                    del asked[key]
                    if fut.exception() is not None and refused is None:
                        refused = f"cannot add {key}: {fut.exception()}"
                        stop.set()
                        wake.set()
            events, latest = box.drain()
            for ev in latest:
                if isinstance(ev, SnapshotEvent | BasketSnapshotEvent):
                    last[ev.pair] = ev.snapshot
            if only is not None:
                events = [
                    ev
                    for ev in events
                    if not isinstance(ev, AlertEvent | AlertWithdrawn) or ev.alert.pair in only
                ]
            if box.dropped > dropped:
                out({"dropped": box.dropped - dropped})
                dropped = box.dropped
            for ev in events:
                if isinstance(ev, AlertEvent):
                    fired += 1
                    line = ev.alert.as_json()
                    if ev.revised:
                        line["revised"] = True
                    out(line)
                elif isinstance(ev, AlertWithdrawn):
                    out(
                        {
                            "retract": ev.alert.as_json(),
                            "time_withdrawn": iso_utc(ev.withdrawn_ms),
                            "reason": ev.reason,
                        }
                    )
                elif isinstance(ev, FeedState):
                    _err(f"feed: {ev.state} {printable(ev.detail, one_line=True)}".rstrip())
                    if ev.state == "finished" and replay is not None and not replay.loop:
                        runner.call_soon("stop")
                elif isinstance(ev, BackfillEvent) and ev.state in ("done", "skipped"):
                    detail = printable(ev.detail, one_line=True)
                    _err(f"backfill {ev.state}: {ev.rows:,} rows {detail}".rstrip())
                elif isinstance(ev, Recomputed):
                    if ev.resync:
                        recomputes += 1
                        _err(f"recomputed from the database ({recomputes})")
                    else:
                        i = ev.info
                        what = (
                            f"{i.key} {i.timeframe} W={i.window} johansen"
                            if isinstance(i, BasketInfo)
                            else f"{i.symbol_x}/{i.symbol_y} {i.timeframe} W={i.window} {i.hedge}"
                        )
                        _err(
                            f"headless {what}: {ev.bars} bars loaded"
                            + (
                                ", replaying"
                                if replay is not None
                                else f", live from {iso_utc(ev.live_from)}"
                            )
                        )
                elif isinstance(ev, Notice):
                    text = printable(ev.text, 300, one_line=True)
                    _err(text if ev.title == "Database" else f"quanttui: {ev.severity}: {text}")
                elif isinstance(ev, Finished):
                    finished = ev
            if runner.done.is_set() and finished is None and not len(box):
                finished = runner.result or Finished(1, "engine ended")
    finally:
        watches.close()
        runner.stop()
        guard.uninstall()
    if gone.is_set():
        _silence_stdout()
    if refused is not None:
        raise UserError(printable(refused, 1000, one_line=True), 2)
    if finished.error and finished.code == 2:
        raise UserError(finished.error, 2)
    _, latest = box.drain()
    for ev in latest:
        if isinstance(ev, SnapshotEvent | BasketSnapshotEvent):
            last[ev.pair] = ev.snapshot
    for key, snap in last.items():
        if only is not None and key not in only:
            continue
        _out({"snapshot": {"pair": key, **snap.as_json()}})
    s = finished.stats
    _err(
        f"stopped: {s.get('ticks', 0):,} trades, {s.get('alerts', 0)} alerts, "
        f"{s.get('recomputes', 0)} recomputes"
        + (f", {s['withdrawn']} withdrawn" if s.get("withdrawn") else "")
    )
    if finished.loss:
        _err(printable(finished.loss, 2000, one_line=True))
    if finished.error:
        _err(f"quanttui: error: {printable(finished.error, 1000, one_line=True)}")
    return finished.code
