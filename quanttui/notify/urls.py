"""Destinations: an apprise URL, the name it is shown by, and the secrets it holds.

The URL itself is never stored, logged or shown. A destination is named by apprise's
privacy form of the URL (passwords and tokens replaced, e.g. ``json://user:****@host/p``,
``tgram://1...x/12345/``) without its query string, and keyed in the outbox by that name
plus a short hash of the whole URL, so two URLs that mask alike stay apart and a restart
with the same URLs finds its pending rows again. `Scrubber` replaces every secret part of
every known URL in outside text (a service's error message may quote the URL) before it
goes through the sanitiser (`quanttui.textsafe.printable`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from quanttui.config import Config, url_has_credentials
from quanttui.textsafe import printable

MASK = "****"
_PARTS = re.compile(r"[/:@?&=#,+;]+")
_MIN_SECRET = 4


class NotifyUrlError(ValueError):
    """A URL apprise does not recognise; the message shows it masked."""


@dataclass(frozen=True, slots=True)
class Destination:
    url: str
    """The full URL, secrets included: only ever handed to apprise."""
    name: str
    """Masked, for people: logs, the screen, `quanttui notify status`."""
    key: str
    """`name#hash`: the outbox's `destination` column."""
    secrets: tuple[str, ...]

    def __repr__(self) -> str:  # never the URL, even in a traceback
        return f"Destination({self.name!r})"


def _generic_mask(url: str) -> str:
    """Without apprise's help: keep scheme, host and port; mask user info and path."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.split("://", 1)[0] + "://" + MASK
    user = f"{MASK}@" if "@" in parts.netloc else ""
    path = "/" + MASK if parts.path.strip("/") and url_has_credentials(url) else parts.path
    return f"{parts.scheme}://{user}{host}{port}{path}"


def _secrets(url: str, masked: str) -> tuple[str, ...]:
    """Parts of `url` that its masked form does not show: the password, tokens."""
    out: set[str] = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            out.add(parts.password)
        if parts.username and url_has_credentials(url) and parts.username not in masked:
            out.add(parts.username)
    except ValueError:
        pass
    body = url.split("://", 1)[-1]
    for piece in _PARTS.split(body):
        if len(piece) >= _MIN_SECRET and piece not in masked:
            out.add(piece)
    for s in list(out):
        out.add(unquote(s))
    return tuple(sorted((s for s in out if len(s) >= _MIN_SECRET), key=len, reverse=True))


def destination(url: str) -> Destination:
    """The `Destination` of an apprise URL; `NotifyUrlError` when apprise does not
    know it (the message never shows the URL's secrets)."""
    url = url.strip()
    if "://" not in url:
        raise NotifyUrlError("not a URL: expected one such as ntfys://topic or json://host/path")
    plugin = instantiate(url)
    if plugin is None:
        scheme = url.split("://", 1)[0]
        raise NotifyUrlError(
            f"not a notification URL apprise knows: {scheme}://{MASK} (what follows the "
            "scheme is not shown: with no plugin to tell, any of it may be a token)"
        )
    try:
        private = plugin.url(privacy=True)
    except Exception:  # noqa: BLE001 - a plugin's url() is outside code
        private = _generic_mask(url)
    masked = private.split("?", 1)[0]
    secrets = _secrets(url, private)
    for s in secrets:  # belt and braces: apprise's privacy form must not leak either
        masked = masked.replace(s, MASK)
    digest = hashlib.sha256(url.encode()).hexdigest()[:10]
    return Destination(url, masked, f"{masked}#{digest}", secrets)


def load_apprise():
    """The apprise module (imported on first use, without the DeprecationWarnings of
    its optional modules), its logger quietened."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise
    quiet_apprise()
    return apprise


def instantiate(url: str):
    """apprise's plugin object for `url`, or None when apprise does not know it."""
    import warnings

    apprise = load_apprise()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def quiet_apprise() -> None:
    """Apprise logs through the ``apprise`` logger; without a handler Python's last
    resort would print its warnings raw (URLs, service bodies) on stderr. They are kept
    from propagating; `worker.capture` collects them per delivery instead."""
    import logging

    lg = logging.getLogger("apprise")
    if not getattr(lg, "_quanttui_quiet", False):
        lg.propagate = False
        lg.addHandler(logging.NullHandler())
        lg._quanttui_quiet = True  # type: ignore[attr-defined]


class Scrubber:
    """Replaces the secrets of every known destination in a text, then sanitises it."""

    def __init__(self, destinations: Iterable[Destination] = ()) -> None:
        self._secrets: list[str] = []
        for d in destinations:
            self.add(d)

    def add(self, d: Destination) -> None:
        for s in d.secrets:
            if s not in self._secrets:
                self._secrets.append(s)
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: object, limit: int = 300) -> str:
        t = str(text)
        for s in self._secrets:
            t = t.replace(s, MASK)
        return printable(t, limit, one_line=True)


@dataclass(frozen=True, slots=True)
class Routing:
    """Which destinations each alert goes to: `[notify] urls` (file, environment,
    `--notify`) unless `[notify.routes]` names the rule ("rule" or "X/Y: rule")."""

    default: tuple[Destination, ...]
    routes: tuple[tuple[str, tuple[Destination, ...]], ...]

    def for_alert(self, pair: str, rule: str) -> tuple[Destination, ...]:
        table = dict(self.routes)
        for k in (f"{pair}: {rule}", f"{pair}:{rule}", rule):
            if k in table:
                return table[k]
        return self.default

    @property
    def all(self) -> tuple[Destination, ...]:
        seen: dict[str, Destination] = {d.key: d for d in self.default}
        for _, ds in self.routes:
            for d in ds:
                seen.setdefault(d.key, d)
        return tuple(seen.values())


def routing(cfg: Config) -> Routing:
    """The destinations of a config; `NotifyUrlError` for a URL apprise does not know."""
    n = cfg.notify
    cache: dict[str, Destination] = {}

    def get(u: str) -> Destination:
        if u not in cache:
            cache[u] = destination(u)
        return cache[u]

    default = tuple(get(u) for u in dict.fromkeys(n.urls))
    routes = tuple((rule, tuple(get(u) for u in dict.fromkeys(urls))) for rule, urls in n.routes)
    return Routing(default, routes)
