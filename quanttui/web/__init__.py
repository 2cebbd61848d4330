"""The browser view: the same screens in a browser tab, each tab one more attached view.

Why it is shaped this way: `textual-serve` (Textualize's own) serves a Textual app to a
browser by running one process of the app per tab and relaying its terminal output to
xterm.js over a websocket; there is no second UI codebase. Each tab runs
``quanttui attach --db DB``, so a tab is exactly a terminal view of `quanttui serve`: it
has its own mailbox on the server (snapshots coalesce, other events are bounded) and the
engine never waits for it; a closed or stalled tab costs its own process and nothing else.

The HTTP side (`quanttui.web.front`) runs in a process of its own, never in the engine's
interpreter, so a flood of tabs or a slow browser cannot take the engine's GIL. The
parent binds the listening socket itself (a bad or busy address fails at once, with one
line, and port 0 is resolved before anything starts) and hands it over
(`quanttui.web.launch`).

Access: a bind to 127.0.0.1, localhost or ::1 is reachable only from this machine (the
recommended way in from elsewhere is an SSH port forward). Any other bind host, 0.0.0.0
and 127.0.0.2 included (the decision is about the host as written, not about routes),
needs a token: ``/?token=T`` sets an HttpOnly cookie, and every other request, the page,
its static files, the websocket and the downloads, must carry that cookie or the
parameter, else it gets 403.

This module is pure: it parses and checks, and imports neither aiohttp nor textual.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass

from quanttui.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Bind hosts that need no token. Everything else does (see the module docstring)."""
TOKEN_RE = re.compile(r"^[A-Za-z0-9._~-]{16,256}$")
TOKEN_ENV = "QUANTTUI_WEB_TOKEN"
"""The token may come from this variable rather than `--web-token` (which every user of
the machine can read in the process list)."""
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True, slots=True)
class WebAddress:
    """Where the browser view listens: a host as written and a port (0: any free one)."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}/"


def parse_address(text: str) -> WebAddress:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``; the host defaults to 127.0.0.1.

    Raises `UsageError` (one line) for anything else, a port outside 0-65535 included."""
    raw = text.strip()
    host, port_text = DEFAULT_HOST, raw
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0 or raw[end + 1 : end + 2] != ":":
            raise UsageError(f"invalid --web {text!r}: expected [IPv6]:PORT, e.g. [::1]:8000")
        host, port_text = raw[1:end], raw[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"invalid --web {text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in raw:
        host, _, port_text = raw.rpartition(":")
        if ":" in host:
            raise UsageError(f"invalid --web {text!r}: write an IPv6 host in brackets, [::1]:8000")
        if not _HOSTNAME.match(host):
            raise UsageError(f"invalid --web {text!r}: {host!r} is not a host name or address")
    if not port_text.isdigit() or len(port_text) > 5:
        raise UsageError(f"invalid --web {text!r}: expected [HOST:]PORT, e.g. 8000 or 0.0.0.0:8000")
    port = int(port_text)
    if port > 65535:
        raise UsageError(f"invalid --web {text!r}: the port must be 0-65535 (0: any free port)")
    return WebAddress(host, port)


def check_token(text: str, source: str = "--web-token") -> str:
    """A token given by the user: 16-256 URL-safe characters (it travels in a query
    parameter and a cookie unescaped). Raises `UsageError` otherwise."""
    if not TOKEN_RE.match(text):
        raise UsageError(
            f"{source}: expected 16-256 characters from A-Z a-z 0-9 . _ ~ - "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    return text


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class WebSpec:
    """The browser view of one server: where it listens and its token (None: no token)."""

    address: WebAddress
    token: str | None
    generated: bool = False
    """The token was made here, so the URL holding it is printed (once)."""


def web_spec(address: str, token: str | None, env_token: str | None = None) -> WebSpec:
    """The browser view asked for on the command line. A non-loopback bind without a
    token gets a generated one; a loopback bind honours a token given but needs none."""
    addr = parse_address(address)
    if token is not None:
        return WebSpec(addr, check_token(token))
    if env_token:
        return WebSpec(addr, check_token(env_token, TOKEN_ENV))
    if addr.loopback:
        return WebSpec(addr, None)
    return WebSpec(addr, new_token(), generated=True)
