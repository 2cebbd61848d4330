"""The browser view's HTTP process: textual-serve, with quanttui's access rules.

Started by `quanttui.web.launch.WebFront` as ``python -m quanttui.web.front``, never by
hand. What the parent gives it:

* the listening socket, already bound, as an inherited file descriptor;
* on stdin, one JSON line: ``{"fd": int, "token": str | null, "loopback": bool,
  "command": str, "title": str, "max_tabs": int}``. stdin then stays open: its end (the
  parent exited, even on SIGKILL) ends this process as SIGTERM does.

Each browser tab's websocket gets a `textual_serve.app_service.AppService`, which runs
`command` (``python -m quanttui attach --db ...``) under Textual's web driver and relays
its output; the tab's keys go back the same way. Up to `max_tabs` tabs at a time; one
more gets 503.

What this process adds to `textual_serve.server.Server`:

* **Access.** With a token, a request must carry ``?token=T`` (the page's answer then
  sets the HttpOnly, SameSite=Strict cookie `COOKIE`) or that cookie; otherwise 403.
  Tokens are compared with `hmac.compare_digest`. On a loopback bind the ``Host`` header
  must name a loopback host (a DNS-rebinding page cannot reach the view through its own
  name), and a websocket whose ``Origin`` is not the page's own is refused (another site
  open in the same browser cannot drive the engine; browsers apply no same-origin rule to
  websockets).
* **URLs from the request**, not from the bind address: the page works at
  ``http://127.0.0.1:PORT`` through an SSH forward on any local port, and on a 0.0.0.0
  bind under the machine's name.
* **No request leaves the machine**: the page's link to Google Fonts is dropped (the font
  falls back to a local monospace one), and ``Referrer-Policy: no-referrer`` keeps the
  token out of any Referer.
* **Bad frames are ignored**, not logged with a traceback; a tab whose app ends closes
  its websocket; a tab's app that does not quit when told is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.server import Server

COOKIE = "quanttui_web_token"
QUIT_S = 2.0
"""How long a tab's app gets to quit when its tab closes or the front stops."""
MAX_MESSAGE = 1 << 20
REFUSED_LOG_S = 10.0
_FONTS_LINK = re.compile(r"<link[^>]*fonts\.googleapis\.com[^>]*/?>", re.S)

log = logging.getLogger("quanttui.web")


def _equal(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(
        given.encode("utf-8", "replace"), token.encode("utf-8")
    )


def _host_name(host: str) -> str:
    """The name of a ``Host`` header, without its port and brackets."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def loopback_host(host: str) -> bool:
    """A ``Host`` header naming this machine's loopback (localhost, 127/8, ::1)."""
    name = _host_name(host).lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def same_origin(origin: str, host: str) -> bool:
    """An ``Origin`` header naming the page's own scheme-less ``host:port``."""
    try:
        return urlsplit(origin).netloc.lower() == host.lower()
    except ValueError:
        return False


def _clamp(text: str | None, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(text or default)))
    except ValueError:
        return default


def index_template(templates: Path) -> str:
    """textual-serve's page, without its request to Google Fonts."""
    return _FONTS_LINK.sub("", (templates / "app_index.html").read_text("utf-8"))


class Front(Server):
    """`textual_serve.server.Server` with a token, host and origin checks, per-request
    URLs, a cap on tabs and a bounded shutdown (see the module docstring)."""

    def __init__(
        self,
        command: str,
        *,
        token: str | None,
        loopback: bool,
        title: str,
        max_tabs: int,
    ) -> None:
        super().__init__(command, host="127.0.0.1", port=0, title=title)
        self.token = token
        self.loopback = loopback
        self.max_tabs = max_tabs
        self.tabs: set[web.WebSocketResponse] = set()
        self.refused = 0
        self._refused_logged = -REFUSED_LOG_S

    async def _make_app(self) -> web.Application:
        @web.middleware
        async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
            return await self.guard(request, handler)

        app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
        loader = jinja2.DictLoader({"app_index.html": index_template(self.templates_path)})
        aiohttp_jinja2.setup(app, loader=loader, autoescape=True)
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.get("/ws", self.handle_websocket, name="websocket"),
                web.get("/download/{key}", self.handle_download, name="download"),
                web.static("/static", self.statics_path, name="static"),
            ]
        )
        app.on_shutdown.append(self.on_shutdown)
        return app

    def refuse(self, request: web.Request, why: str) -> web.Response:
        """403, logged in one line at most every `REFUSED_LOG_S` (a scanner on a public
        bind would otherwise fill the server's log)."""
        now = time.monotonic()
        self.refused += 1
        if now - self._refused_logged >= REFUSED_LOG_S:
            more = f" ({self.refused - 1} more since the last line)" if self.refused > 1 else ""
            log.warning(
                "refused %s %s from %s: %s%s",
                request.method,
                request.path,
                request.remote,
                why,
                more,
            )
            self._refused_logged, self.refused = now, 0
        return web.Response(status=403, text=f"403 Forbidden: {why}\n")

    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.loopback and not loopback_host(request.host):
            return self.refuse(request, "this view answers only to localhost / 127.0.0.1 / [::1]")
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin is not None and not same_origin(origin, request.host):
            return self.refuse(request, "a page of another origin may not open this view")
        by_query = False
        if self.token is not None:
            by_query = _equal(request.query.get("token"), self.token)
            if not by_query and not _equal(request.cookies.get(COOKIE), self.token):
                return self.refuse(
                    request, "this view needs its token: open the URL with ?token=... once"
                )
        resp = await handler(request)
        if not resp.prepared:
            resp.headers["Referrer-Policy"] = "no-referrer"
            resp.headers["X-Frame-Options"] = "DENY"
            resp.headers["X-Content-Type-Options"] = "nosniff"
            if by_query:
                resp.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return resp

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        scheme = "wss" if request.secure else "ws"
        return {
            "font_size": _clamp(request.query.get("fontsize"), 16, 6, 64),
            "app_websocket_url": f"{scheme}://{request.host}/ws",
            "config": {"static": {"url": "/static/"}},
            "application": {"name": self.title},
            "ping_url": "",
        }

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        if len(self.tabs) >= self.max_tabs:
            log.warning("refused a tab: %d are open (the most at a time)", len(self.tabs))
            return web.Response(status=503, text=f"{self.max_tabs} tabs are open; close one\n")
        ws = web.WebSocketResponse(heartbeat=15, max_msg_size=MAX_MESSAGE)
        width = _clamp(request.query.get("width"), 80, 10, 1000)
        height = _clamp(request.query.get("height"), 24, 5, 500)
        await ws.prepare(request)
        self.tabs.add(ws)
        log.info("tab opened from %s (%d open)", request.remote, len(self.tabs))
        service = AppService(
            self.command,
            write_bytes=ws.send_bytes,
            write_str=ws.send_str,
            close=ws.close,
            download_manager=self.download_manager,
        )
        try:
            await service.start(width, height)
            reader = asyncio.ensure_future(self._process_messages(ws, service))
            app_task = service._task
            await asyncio.wait(
                [reader] + ([app_task] if app_task is not None else []),
                return_when=asyncio.FIRST_COMPLETED,
            )
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            await self._stop_app(service)
            self.tabs.discard(ws)
            with contextlib.suppress(Exception):
                await ws.close()
            log.info("tab closed (%d open)", len(self.tabs))
        return ws

    async def _stop_app(self, service: AppService) -> None:
        """Tell the tab's app to quit; kill it if it has not within `QUIT_S`."""
        try:
            await asyncio.wait_for(service.stop(), QUIT_S)
        except (TimeoutError, Exception):  # noqa: BLE001
            pass
        proc = service._process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), QUIT_S)

    async def _process_messages(self, websocket: web.WebSocketResponse, app: AppService) -> None:
        """The browser's frames: ``["stdin", text]``, ``["resize", {"width", "height"}]``,
        ``["ping", text]``, ``["blur"]``, ``["focus"]`` (textual.js). Anything else is
        ignored."""
        async for message in websocket:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                envelope = json.loads(message.data)
            except ValueError:
                continue
            if not isinstance(envelope, list) or not envelope or not isinstance(envelope[0], str):
                continue
            kind, arg = envelope[0], envelope[1] if len(envelope) > 1 else None
            if kind == "stdin" and isinstance(arg, str):
                await app.send_bytes(arg.encode("utf-8", "replace"))
            elif kind == "resize" and isinstance(arg, dict):
                w = _clamp(str(arg.get("width", "")), 80, 10, 1000)
                h = _clamp(str(arg.get("height", "")), 24, 5, 500)
                await app.set_terminal_size(w, h)
            elif kind == "ping" and isinstance(arg, str):
                await websocket.send_json(["pong", arg[:64]])
            elif kind == "blur":
                await app.blur()
            elif kind == "focus":
                await app.focus()

    async def on_shutdown(self, app: web.Application) -> None:
        await self.close_tabs()

    async def close_tabs(self) -> None:
        for ws in list(self.tabs):
            with contextlib.suppress(Exception):
                await ws.close()
        for _ in range(int(QUIT_S * 20) + 10):
            if not self.tabs:
                return
            await asyncio.sleep(0.05)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    with contextlib.suppress(OSError, ValueError):
        while sys.stdin.buffer.read(4096):
            pass
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(stop.set)


async def serve(spec: dict[str, Any]) -> None:
    front = Front(
        str(spec["command"]),
        token=spec.get("token"),
        loopback=bool(spec.get("loopback")),
        title=str(spec.get("title") or "quanttui"),
        max_tabs=int(spec.get("max_tabs", 16)),
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True).start()
    runner = web.AppRunner(
        await front._make_app(), handle_signals=False, access_log=None, shutdown_timeout=QUIT_S
    )
    await runner.setup()
    sock = socket.socket(fileno=int(spec["fd"]))
    await web.SockSite(runner, sock).start()
    await stop.wait()
    await front.close_tabs()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(runner.cleanup(), QUIT_S + 1)


class OneLine(logging.Formatter):
    """Every record in one line, an exception as its type and message: what a client sends
    (a malformed request, an oversized header) never prints a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" ({type(exc).__name__}: {exc})"
        text = " ".join(text.split())
        return f"quanttui web: {text[:400]}"


def main() -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("aiohttp").setLevel(logging.ERROR)
    try:
        spec = json.loads(sys.stdin.buffer.readline() or b"null")
    except ValueError:
        spec = None
    if not isinstance(spec, dict) or "fd" not in spec or "command" not in spec:
        print("quanttui web: started without its parent's settings; nothing to do", file=sys.stderr)
        return 2
    asyncio.run(serve(spec))
    sys.stdout.flush()
    os._exit(0)  # no waiting at exit for the apps' pipes' transports


if __name__ == "__main__":
    sys.exit(main())
