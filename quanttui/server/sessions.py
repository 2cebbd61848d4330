"""Where servers listen, and how a view finds the one for its database.

One server per database file. Its Unix socket is ``<dir>/<id>.sock`` and its description
``<dir>/<id>.json`` (pid, db, pairs, start time), where ``<dir>`` is
``$XDG_RUNTIME_DIR/quanttui`` (``~/.local/state/quanttui`` without one) and ``<id>`` the
first 16 hex digits of the SHA-256 of the database's resolved path. The folder is mode
0700 and the socket 0600; a folder that another user owns, or that others may enter, is
refused, since whoever can reach the socket can command the engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quanttui.errors import UserError


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "quanttui"
    return Path.home() / ".local" / "state" / "quanttui"


def secure_dir(create: bool = True) -> Path:
    """The sockets' folder, made 0700 if missing; raises `UserError` if it is not this
    user's own or others may enter it."""
    d = runtime_dir()
    if create:
        d.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
    try:
        st = d.stat()
    except FileNotFoundError:
        return d
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise UserError(f"{d}: not a folder of this user's; refusing to use it for sockets")
    if st.st_mode & 0o077:
        raise UserError(f"{d}: others may enter it (mode {st.st_mode & 0o777:o}); chmod 700 it")
    return d


def session_id(db: Path) -> str:
    return hashlib.sha256(str(Path(db).expanduser().resolve()).encode()).hexdigest()[:16]


def socket_path(db: Path) -> Path:
    return runtime_dir() / f"{session_id(db)}.sock"


def info_path(db: Path) -> Path:
    return runtime_dir() / f"{session_id(db)}.json"


@dataclass(frozen=True, slots=True)
class Session:
    pid: int
    db: str
    pairs: tuple[str, ...]
    started: float
    viewers: int
    socket: str
    web: str | None = None
    """The browser view's address (`serve --web`), never its token."""


def _query(path: Path, timeout: float = 2.0) -> dict[str, Any] | None:
    """The server's welcome on `path`, or None when nobody answers there."""
    from quanttui.server.client import probe

    return probe(path, timeout)


def running(db: Path) -> dict[str, Any] | None:
    """The welcome of the server for `db`, if one answers."""
    path = socket_path(db)
    if not path.exists():
        return None
    return _query(path)


def list_sessions() -> list[Session]:
    """Every server of this user's that answers, oldest first; stale files of a server
    that died are removed."""
    d = runtime_dir()
    out: list[Session] = []
    if not d.is_dir():
        return out
    for sock in sorted(d.glob("*.sock")):
        w = _query(sock)
        if w is None:
            with contextlib.suppress(OSError):
                if not _alive(sock):
                    sock.unlink()
                    sock.with_suffix(".json").unlink(missing_ok=True)
            continue
        out.append(
            Session(
                int(w.get("pid", 0)),
                str(w.get("db", "")),
                tuple(str(p) for p in w.get("pairs", ())),
                float(w.get("started", 0.0)),
                int(w.get("viewers", 0)),
                str(sock),
                str(w["web"]) if w.get("web") else None,
            )
        )
    return sorted(out, key=lambda s: s.started)


def _alive(sock: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        s.close()


def write_info(db: Path, info: dict[str, Any]) -> Path:
    path = info_path(db)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, path)
    return path
