"""`quanttui record SYMBOL...`: the engine with no pairs, and a status line on stderr.

Text from outside (REST errors, close reasons) reaches stderr only through
`quanttui.textsafe.printable`. A database failure is reported on stderr the moment a
commit fails, and once more when the database takes writes again; the status line
carries `unsaved=N` (and `DB ERROR (reason)` while it lasts). A stop signal ends the run
within 5 s whatever the database's state (`ShutdownGuard`), and the exit code is 1 when
trades could not be stored.
"""

from __future__ import annotations

import sys
import threading
import time

from quanttui.config import Config
from quanttui.engine import Engine, EngineThread, Mailbox, ShutdownGuard
from quanttui.engine.events import BackfillEvent, FeedState, Finished, Notice, Status
from quanttui.errors import UserError
from quanttui.store.db import StoreError
from quanttui.terminal import relayed_stderr
from quanttui.textsafe import printable

DETAIL_LIMIT = 160
NOTICE_LIMIT = 300


def status_line(st: Status) -> str:
    per = " ".join(f"{sym}={st.per_symbol.get(sym, 0):,}" for sym in st.symbols)
    db = f"DB ERROR ({st.db_error})  " if st.db_error else ""
    dropped = f" dropped={st.dropped:,}" if st.dropped else ""
    line = (
        f"{db}[{st.state}] {st.rate:,.0f} ticks/s  {per}  stored={st.inserted:,} "
        f"unsaved={st.unsaved:,}{dropped}  reconnects={st.reconnects}  "
        f"gaps filled={st.gaps_filled} open={st.gaps_open}  malformed={st.malformed}"
    )
    if st.state != "live" and st.detail:
        line += f"  ({printable(st.detail, DETAIL_LIMIT, one_line=True)})"
    return line


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(cfg: Config, symbols: list[str], *, status_every: float = 5.0) -> int:
    """Record until a stop signal. stderr is relayed (`relayed_stderr`), so a status
    reader that stops reading never blocks the engine's log lines."""
    with relayed_stderr():
        return _run(cfg, symbols, status_every)


def _run(cfg: Config, symbols: list[str], status_every: float) -> int:
    try:
        engine = Engine(cfg, [], symbols=symbols)
    except StoreError as exc:
        raise UserError(str(exc), 2) from None
    wake = threading.Event()
    box = engine.subscribe(Mailbox(wake.set))
    runner = EngineThread(engine)
    stop = threading.Event()

    def request_exit(code: int) -> None:
        stop.set()
        wake.set()

    guard = ShutdownGuard(runner, request_exit).install()
    runner.start()
    where = printable(engine.feed.writer.path, one_line=True)
    announced = False
    finished: Finished | None = None
    status: Status | None = None
    next_status = time.monotonic() + status_every
    try:
        while finished is None:
            wake.wait(min(0.5, status_every))
            wake.clear()
            if stop.is_set():
                runner.call_soon("stop")
            events, latest = box.drain()
            for ev in events:
                if isinstance(ev, FeedState) and not announced:
                    announced = True
                    _err(f"recording {', '.join(symbols)} into {where}")
                if isinstance(ev, Notice):
                    level = "" if ev.title == "Database" else f"{ev.severity}: "
                    text = printable(ev.text, NOTICE_LIMIT, one_line=True)
                    _err(text if ev.title == "Database" else f"quanttui: {level}{text}")
                elif isinstance(ev, BackfillEvent) and ev.state in ("done", "skipped"):
                    detail = printable(ev.detail, one_line=True)
                    _err(f"backfill {ev.state}: {ev.rows:,} rows {detail}".rstrip())
                elif isinstance(ev, Finished):
                    finished = ev
            for ev in latest:
                if isinstance(ev, Status):
                    status = ev
            if status is not None and time.monotonic() >= next_status and finished is None:
                next_status = time.monotonic() + status_every
                _err(status_line(status))
            if runner.done.is_set() and finished is None and not len(box):
                finished = runner.result or Finished(1, "engine ended")
    finally:
        runner.stop()
        guard.uninstall()
    if finished.error and finished.code == 2:
        raise UserError(finished.error, 2)
    s = finished.stats
    _err(f"stopped: received {s.get('ticks', 0):,} trades, stored {s.get('stored', 0):,} new rows")
    if finished.loss:
        _err(printable(finished.loss, 2000, one_line=True))
    if finished.error:
        _err(f"quanttui: error: {printable(finished.error, 1000, one_line=True)}")
    return finished.code
