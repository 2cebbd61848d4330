"""`quanttui serve`: one long-lived engine per database, and the views that attach to it.

The server runs the same `Engine` the app and headless mode run (on an `EngineThread`),
and serves it on a Unix socket (`quanttui.server.sessions`) in the protocol of
`quanttui.server.protocol`. Each view gets its own `Mailbox`, filled by the engine
without waiting (snapshots coalesce, other events are bounded), and two threads: one
reads and checks its commands, one sends what its mailbox holds. A view that stops
reading blocks only its own sender thread; after `STALL_DROP_S` of a send that cannot
proceed it is dropped, and it can attach again. Nothing a view does slows ingestion.

Only this user may connect: the socket is 0600 in a 0700 folder, and each connection's
peer credentials (``SO_PEERCRED``) are checked; any other uid is refused with one logged
line. SIGTERM and SIGINT stop the engine (it commits what was received) and the server
exits 0; SIGHUP re-reads the config and applies its alert rules, the watchlist's pairs
and `[notify]`'s destinations, with no view dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from quanttui.engine.events import Finished
from quanttui.engine.mailbox import Mailbox
from quanttui.errors import UserError
from quanttui.server import protocol as P
from quanttui.server.client import read_frame
from quanttui.server.sessions import info_path, secure_dir, socket_path, write_info

STALL_DROP_S = 30.0
"""A view whose socket takes no bytes for this long is dropped (it may attach again): the
send timeout (``SO_SNDTIMEO``); reading a view's commands has none, since a view may
send nothing for days."""
HANDSHAKE_S = 5.0
_CRED = struct.Struct("3i")


def peer_uid(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    pid, uid, _gid = _CRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    )
    return pid, uid


def log(line: str) -> None:
    from quanttui.textsafe import printable

    print(f"quanttui serve: {printable(line, 300, one_line=True)}", file=sys.stderr, flush=True)


class View:
    """One attached connection: its mailbox, its reader and its sender."""

    def __init__(self, server: Server, conn: socket.socket, pid: int) -> None:
        self.server = server
        self.conn = conn
        self.pid = pid
        self.box = Mailbox()
        self.replies: list[list] = []
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.sent_ready = False

    def send(self, obj: object) -> bool:
        return self.send_frame(lambda: P.encode(obj))

    def send_frame(self, frame: Callable[[], bytes]) -> bool:
        try:
            self.conn.sendall(frame())
            return True
        except (OSError, P.ProtocolError, TypeError) as exc:
            if not self.closed.is_set():
                if isinstance(exc, TimeoutError | BlockingIOError):
                    log(f"view pid {self.pid} stopped reading for {STALL_DROP_S:g} s; dropped")
                self.close()
            return False

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.box.poke()
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)
        self.server.detach(self)

    def reply(self, cid: int, ok: bool, value: object) -> None:
        with self.lock:
            self.replies.append(["reply", cid, ok, value])
        self.box.poke()

    def serve_out(self) -> None:
        """Events first, then the replies taken before they were drained (a reply
        follows every event its command published)."""
        while not self.closed.is_set():
            self.box.wait(0.25)
            with self.lock:
                replies, self.replies = self.replies, []
            events, latest = self.box.drain()
            batch = [*events, *latest]
            if batch and not self.send_frame(functools.partial(P.encode_events, batch)):
                return
            for r in replies:
                try:
                    data = P.encode(r)
                except (TypeError, P.ProtocolError) as exc:
                    data = P.encode(["reply", r[1], False, f"{exc.__class__.__name__}: {exc}"])
                try:
                    self.conn.sendall(data)
                except OSError:
                    self.close()
                    return
            done = self.server.finished
            if done is not None and not len(self.box):
                self.send(["done", done])
                self.close()
                return

    def serve_in(self) -> None:
        while not self.closed.is_set():
            try:
                frame = read_frame(self.conn, P.MAX_CLIENT_FRAME)
                if frame is None or frame == ["detach"]:
                    break
                cid, method, args, kwargs = P.check_call(frame)
            except (P.ProtocolError, TypeError, ValueError) as exc:  # never a traceback
                log(f"view pid {self.pid}: {exc}; connection closed")
                with contextlib.suppress(OSError, P.ProtocolError):
                    self.conn.sendall(P.encode(["error", str(exc)]))
                break
            except OSError:
                break
            self.server.call(self, cid, method, args, kwargs)
        self.close()


class Server:
    def __init__(
        self,
        config_loader: Callable[[], Any],
        pairs: Sequence[tuple[str, str]],
        *,
        rules: Sequence[str] = (),
        watchlist: str | None = None,
        replay: Any = None,
        baskets: Sequence[Sequence[str]] = (),
    ) -> None:
        self.load_config = config_loader
        self.cfg = config_loader()
        self.pairs = [tuple(p) for p in pairs]
        self.baskets = [tuple(b) for b in baskets]
        """Baskets (3+ legs) the engine runs beside the pairs (key ``A+B+C``)."""
        self.rules = list(rules)
        self.watchlist = watchlist
        self.replay = replay
        """A `quanttui.feed.replay.ReplaySpec` (`quanttui web --demo`), else the exchange."""
        self.on_start: list[Callable[[], None]] = []
        """Called once the socket answers and the engine runs (the browser view starts)."""
        self.web: str | None = None
        """The browser view's address once it runs (`serve --web`), for the welcome."""
        self.on_stop: list[Callable[[], None]] = []
        """Called (in the signal handler: they must not block) when SIGTERM or SIGINT
        asks the server to stop; the browser view ends its tabs meanwhile."""
        self.views: list[View] = []
        self.views_lock = threading.Lock()
        self.finished: Finished | None = None
        self.started = time.time()
        self.sock_path = socket_path(self.cfg.db_path)
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self.runner = None

    # ----------------------------------------------------------------- the socket
    def bind(self) -> None:
        """Listen on this database's socket; raises `UserError` if a server has it."""
        from quanttui.server.client import probe

        secure_dir()
        path = self.sock_path
        if path.exists() or path.is_symlink():
            w = probe(path)
            if w is not None:
                raise UserError(
                    f"a server for {self.cfg.db_path} is already running (pid {w.get('pid')}); "
                    "'quanttui attach' shows it"
                )
            path.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            s.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        s.listen(16)
        s.settimeout(0.5)
        self._listener = s

    def welcome(self) -> dict:
        eng = self.runner.engine if self.runner else None
        pairs = (
            [i.key for i in eng.pair_infos()]
            if eng
            else [*(f"{x}/{y}" for x, y in self.pairs), *("+".join(b) for b in self.baskets)]
        )
        with self.views_lock:
            viewers = len(self.views)
        return {
            "welcome": P.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "db": str(Path(self.cfg.db_path).resolve()),
            "pairs": pairs,
            "started": self.started,
            "viewers": viewers,
            "label": self.replay.label if self.replay is not None else "LIVE",
            "web": self.web,
        }

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._greet, args=(conn,), daemon=True).start()

    def _greet(self, conn: socket.socket) -> None:
        try:
            pid, uid = peer_uid(conn)
        except OSError:
            conn.close()
            return
        if uid != os.getuid():
            log(f"refused a connection from uid {uid} (pid {pid}): not this server's user")
            conn.close()
            return
        try:
            conn.settimeout(HANDSHAKE_S)
            query, history = P.check_hello(read_frame(conn, P.MAX_CLIENT_FRAME))
        except P.ProtocolError as exc:
            log(f"pid {pid}: {exc}; connection closed")
            with contextlib.suppress(OSError, P.ProtocolError):
                conn.sendall(P.encode({"error": str(exc)}))
            conn.close()
            return
        except OSError:
            conn.close()
            return
        try:
            conn.sendall(P.encode(self.welcome()))
        except OSError:
            conn.close()
            return
        if query == "info" or self.finished is not None:
            conn.close()
            return
        conn.settimeout(None)
        sec = int(STALL_DROP_S)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", sec, 0))
        view = View(self, conn, pid)
        try:
            infos, rules = self.runner.call_method("attach", view.box, history=history).result(
                timeout=10
            )
        except Exception as exc:  # noqa: BLE001 - the engine is stopping
            view.send(["error", f"the engine is not running ({exc})"])
            conn.close()
            return
        if not view.send(["ready", list(infos), rules]):
            return
        with self.views_lock:
            self.views.append(view)
        threading.Thread(target=view.serve_out, daemon=True).start()
        view.serve_in()

    def detach(self, view: View) -> None:
        with self.views_lock:
            if view in self.views:
                self.views.remove(view)
        runner = self.runner
        if runner is not None and not runner.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                runner.loop.call_soon_threadsafe(runner.engine.unsubscribe, view.box)

    def call(self, view: View, cid: int, method: str, args: list, kwargs: dict) -> None:
        def done(fut) -> None:  # noqa: ANN001
            if fut.cancelled():
                view.reply(cid, False, "cancelled")
            elif fut.exception() is not None:
                view.reply(cid, False, str(fut.exception()))
            else:
                view.reply(cid, True, fut.result())

        try:
            self.runner.call_method(method, *args, **kwargs).add_done_callback(done)
        except Exception as exc:  # noqa: BLE001 - the engine has stopped
            view.reply(cid, False, str(exc))

    # ----------------------------------------------------------------- life
    def stop(self, *_: object) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            log("stopping: committing what was received")
            for hook in self.on_stop:
                hook()
            if self.runner is not None:
                self.runner.call_soon("stop")

    def reload(self, *_: object) -> None:
        """SIGHUP: the config's rules, the watchlist's pairs and `[notify]`, applied to the
        engine (`Engine.reload_notify`; a bad URL keeps the destinations as they were)."""
        threading.Thread(target=self._reload, daemon=True).start()

    def _reload(self) -> None:
        from quanttui.config import ConfigError

        try:
            cfg = self.load_config()
        except (ConfigError, OSError) as exc:
            log(f"SIGHUP: config not reloaded ({exc})")
            return
        eng = self.runner.engine
        old = set(self.cfg.alerts.rules)
        new = list(cfg.alerts.rules)
        for text in old - set(new):
            self.runner.call_method("remove_rule", text)
        for text in new:
            if text not in old:
                self.runner.call_method("add_rule", text)
        added = 0
        if self.watchlist:
            want = cfg.watchlist(self.watchlist) or ()
            have = {i.key for i in eng.pair_infos()}
            for legs in want:
                if len(legs) > 2:
                    if "+".join(legs) not in have:
                        self.runner.call_method("add_basket", list(legs))
                        added += 1
                elif f"{legs[0]}/{legs[1]}" not in have:
                    self.runner.call_method("add_pair", *legs)
                    added += 1
        notify = ""
        if cfg.notify != self.cfg.notify:
            try:
                n = self.runner.call_method("reload_notify", cfg.notify).result(timeout=30)
                notify = f", {n} notification destination{'' if n == 1 else 's'}"
            except Exception as exc:  # noqa: BLE001 - a bad URL or a stopping engine
                notify = f"; {exc}"
                cfg = dataclasses.replace(cfg, notify=self.cfg.notify)
        self.cfg = cfg
        log(f"SIGHUP: config reloaded ({len(new)} rules, {added} pairs added{notify})")

    def run(self) -> int:
        from quanttui.engine import Engine, EngineThread
        from quanttui.engine.runner import HARD_EXIT_S
        from quanttui.textsafe import guard_logging

        guard_logging()
        self.bind()
        engine = Engine(
            self.cfg, self.pairs, rules=self.rules, replay=self.replay, baskets=self.baskets
        )
        self.runner = EngineThread(engine).start()
        write_info(
            self.cfg.db_path,
            {
                "pid": os.getpid(),
                "db": str(Path(self.cfg.db_path).resolve()),
                "started": self.started,
            },
        )
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.reload)
        acceptor = threading.Thread(target=self._accept, name="quanttui-accept", daemon=True)
        acceptor.start()
        log(
            f"serving {', '.join(i.key for i in engine.pair_infos())} on {self.sock_path} "
            f"(pid {os.getpid()}, db {self.cfg.db_path})"
        )
        from quanttui.server import heap

        heap.tune()
        next_trim = time.monotonic() + heap.TRIM_S
        try:
            for hook in self.on_start:
                hook()
            while not self.runner.done.wait(0.5):
                if time.monotonic() >= next_trim:
                    heap.trim()
                    next_trim = time.monotonic() + heap.TRIM_S
        finally:
            deadline = time.monotonic() + HARD_EXIT_S / 2
            self.finished = self.runner.result or Finished(1, "the engine ended without a result")
            with self.views_lock:
                views = list(self.views)
            for v in views:
                v.box.poke()
            while time.monotonic() < deadline:
                with self.views_lock:
                    if not self.views:
                        break
                time.sleep(0.05)
            self._stopping.set()
            if self._listener is not None:
                self._listener.close()
            with contextlib.suppress(OSError):
                self.sock_path.unlink()
            with contextlib.suppress(OSError):
                info_path(self.cfg.db_path).unlink()
        res = self.finished
        log(f"stopped: {res.stats}" if not res.error else f"stopped: {res.error}")
        return res.code
