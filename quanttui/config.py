"""Layered settings: built-in defaults, then the user's TOML file, then CLI flags.

The built-in `config.toml` is both the defaults and the schema: a key that is not in it
is unknown, and a value must have the type of its default (an int is accepted where a
float is expected). Range checks live in `_CHECKS`: every number has a stated range and
must be finite, and no string may hold control characters. Every failure raises `ConfigError`
naming the file, the key and the reason, which the CLI turns into exit code 2.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TIMEFRAMES: dict[str, int] = {"1s": 1_000, "1m": 60_000, "5m": 300_000}
HEDGES: tuple[str, ...] = ("ols", "log", "kalman")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ConfigError(ValueError):
    """A setting is unknown, mistyped or out of range."""


@dataclass(frozen=True, slots=True)
class FeedConfig:
    ws_url: str
    rest_url: str
    stream: str
    stale_after_s: float
    reconnect_base_s: float
    reconnect_max_s: float
    max_connection_age_s: float
    backfill: str


@dataclass(frozen=True, slots=True)
class StorageConfig:
    db: str
    flush_interval_ms: int


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    timeframe: str
    window: int
    hedge: str
    entry_z: float
    exit_z: float
    kalman_delta: float
    kalman_obs_var: float

    @property
    def timeframe_ms(self) -> int:
        return TIMEFRAMES[self.timeframe]


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    rules: tuple[str, ...]
    cooldown_s: float
    hysteresis: float
    bell: bool


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    fee_bps: float
    stop_z: float


@dataclass(frozen=True, slots=True)
class ExportConfig:
    dir: str


@dataclass(frozen=True, slots=True)
class BasketConfig:
    """`[basket]`: the Johansen test of a basket of three or more legs
    (`quanttui.analytics.basket`): statsmodels' `det_order` (-1 none, 0 constant, 1
    linear trend) and `k_ar_diff` (lagged differences), on log prices or prices; the
    backtest enters only on bars whose rank is at least `min_rank` (0: no filter)."""

    det_order: int = 0
    k_ar_diff: int = 1
    log_prices: bool = True
    min_rank: int = 1


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """`[notify]`: push-notification destinations (apprise URLs) and delivery policy.
    `urls` are the file's, then `QUANTTUI_NOTIFY_URLS`'s, then `--notify`'s; `routes`
    maps a rule's text to the URLs that rule goes to instead (`quanttui.notify`)."""

    urls: tuple[str, ...] = ()
    timeout_s: float = 10.0
    max_attempts: int = 10
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    rate_per_min: float = 12.0
    burst: int = 5
    drain_s: float = 5.0
    routes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.urls) or any(urls for _, urls in self.routes)


NOTIFY_ENV = "QUANTTUI_NOTIFY_URLS"
_TOKEN_SCHEMES = frozenset(
    "tgram discord slack pover pushover gotify gotifys msteams matrix matrixs pbul join "
    "ifttt mailgun sendgrid twilio pushed pjet pjets opsgenie pagerduty signal signals "
    "lametric rocket rockets mattermost mmost mmosts zulip spush".split()
)
_SECRET_QUERY = re.compile(
    r"(?:^|[?&])(?:token|key|apikey|api_key|pass|password|secret|auth)=", re.I
)


def url_has_credentials(url: str) -> bool:
    """Whether an apprise URL holds a secret: a user or password, a token-like query
    argument, or a scheme whose URL embeds a token (Telegram, Discord, Slack, ...)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return False
    if scheme.lower() in _TOKEN_SCHEMES:
        return True
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    return "@" in netloc or bool(_SECRET_QUERY.search(url))


def split_urls(text: str) -> list[str]:
    """URLs separated by whitespace or commas (`QUANTTUI_NOTIFY_URLS`)."""
    return [u for u in re.split(r"[\s,]+", text) if u]


def _notify_url(where: str, url: str) -> str:
    if not isinstance(url, str) or "://" not in url or any(c.isspace() for c in url):
        raise ConfigError(f"{where}: expected an apprise URL such as ntfys://topic")
    if _CONTROL.search(url):
        raise ConfigError(f"{where}: a URL contains control characters")
    return url


def _notify_routes(source: str, table: Any) -> dict[str, tuple[str, ...]]:
    """`[notify.routes]`: rule text -> array of URLs."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [notify.routes] must be a table")
    out: dict[str, tuple[str, ...]] = {}
    for rule, urls in table.items():
        where = f"{source}: [notify.routes] {rule!r}"
        if not isinstance(urls, list):
            raise ConfigError(f"{where}: expected an array of URLs")
        out[rule.strip()] = tuple(_notify_url(where, u) for u in urls)
    return out


def _check_secret_file(path: Path, urls: list[str]) -> None:
    """Refuse a config file readable by group or others that holds a URL with
    credentials (POSIX permissions only)."""
    if os.name != "posix" or not any(url_has_credentials(u) for u in urls):
        return
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o044:
        raise ConfigError(
            f"{path}: holds a notification URL with credentials but is readable by group or "
            f"others (mode {mode & 0o777:o}); run 'chmod 600 {path}' or move the URL to "
            f"the environment variable {NOTIFY_ENV}"
        )


@dataclass(frozen=True, slots=True)
class Config:
    feed: FeedConfig
    storage: StorageConfig
    analytics: AnalyticsConfig
    alerts: AlertsConfig
    backtest: BacktestConfig
    export: ExportConfig
    notify: NotifyConfig = field(default=NotifyConfig())
    basket: BasketConfig = field(default=BasketConfig())
    sources: tuple[str, ...] = field(default=())
    watchlists: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = field(default=())
    """`[watchlists]`: (name, entries) in file order; an entry is a pair (x, y) or a
    basket's legs (three or more)."""

    def watchlist(self, name: str) -> tuple[tuple[str, ...], ...] | None:
        """The entries of the watchlist `name` (pairs (x, y), baskets (a, b, c, ...)), or
        None when there is none by that name."""
        return dict(self.watchlists).get(name)

    @property
    def db_path(self) -> Path:
        return Path(self.storage.db).expanduser() if self.storage.db else default_db_path()


_SECTIONS = {
    "feed": FeedConfig,
    "storage": StorageConfig,
    "analytics": AnalyticsConfig,
    "alerts": AlertsConfig,
    "backtest": BacktestConfig,
    "export": ExportConfig,
    "notify": NotifyConfig,
    "basket": BasketConfig,
}


class _Range:
    """`lo <= v <= hi` (`<` on a side marked open), with the range as text for messages."""

    def __init__(
        self, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
    ) -> None:
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        if lo_open and hi_open:
            self.text = f"strictly between {lo:g} and {hi:g}"
        elif lo_open:
            self.text = f"above {lo:g} and at most {hi:g}"
        elif hi_open:
            self.text = f"at least {lo:g} and below {hi:g}"
        else:
            self.text = f"between {lo:g} and {hi:g}"

    def __call__(self, v: float) -> str | None:
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return None if above and below else f"must be {self.text}"


def _choice(*options: str):
    def check(v: str) -> str | None:
        return None if v in options else f"must be one of {', '.join(options)}"

    return check


def _url(*schemes: str):
    def check(v: str) -> str | None:
        try:
            parts = urlsplit(v)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:  # an unclosed IPv6 bracket, a port out of range
            host = None
        if not v.startswith(schemes) or not host or any(c.isspace() for c in v):
            return (
                f"must start with {' or '.join(schemes)} and name a host, with a valid port if any"
            )
        return None

    return check


BACKFILL_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
"""A `[feed] backfill` span such as 90m, 12h or 2d (also parsed by `feed.backfill`)."""


def parse_backfill(value: str) -> str | None:
    """Validation for `[feed] backfill`: None when fine, else the problem."""
    v = value.strip().lower()
    if v in ("auto", "off") or BACKFILL_DURATION.match(v):
        return None
    return "must be auto, off or a duration such as 90m, 12h or 2d"


def _backfill(v: str) -> str | None:
    return parse_backfill(v)


_CHECKS = {
    ("feed", "ws_url"): _url("ws://", "wss://"),
    ("feed", "rest_url"): _url("http://", "https://"),
    ("feed", "stream"): _choice("aggTrade"),
    ("feed", "stale_after_s"): _Range(0.5, 3600),
    ("feed", "reconnect_base_s"): _Range(0.01, 600),
    ("feed", "reconnect_max_s"): _Range(0.01, 3600),
    ("feed", "max_connection_age_s"): _Range(60, 86400),
    ("feed", "backfill"): _backfill,
    ("storage", "flush_interval_ms"): _Range(1, 250),
    ("analytics", "timeframe"): _choice(*TIMEFRAMES),
    ("analytics", "window"): _Range(10, 100_000),
    ("analytics", "hedge"): _choice(*HEDGES),
    ("analytics", "entry_z"): _Range(0, 100, lo_open=True),
    ("analytics", "exit_z"): _Range(0, 100, hi_open=True),
    ("analytics", "kalman_delta"): _Range(0, 1, lo_open=True, hi_open=True),
    ("analytics", "kalman_obs_var"): _Range(1e-12, 1e12),
    ("alerts", "cooldown_s"): _Range(0, 604_800),
    ("alerts", "hysteresis"): _Range(0, 1e9),
    ("backtest", "fee_bps"): _Range(0, 1000),
    ("backtest", "stop_z"): _Range(0, 100),
    ("notify", "timeout_s"): _Range(0.1, 600),
    ("notify", "max_attempts"): _Range(1, 1000),
    ("notify", "backoff_base_s"): _Range(0.01, 3600),
    ("notify", "backoff_max_s"): _Range(0.01, 86400),
    ("notify", "rate_per_min"): _Range(0, 60_000, lo_open=True),
    ("notify", "burst"): _Range(1, 1000),
    ("notify", "drain_s"): _Range(0, 600),
    ("basket", "det_order"): _Range(-1, 1),
    ("basket", "k_ar_diff"): _Range(0, 10),
    ("basket", "min_rank"): _Range(0, 12),
}
"""Every numeric key has a stated range (README, Configuration); floats must also be
finite, so ``inf`` and ``nan`` (which TOML and ``float()`` both accept) never pass."""


_WATCHLIST_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")


def parse_watchlist_pair(text: str) -> tuple[str, str]:
    """``"BTCUSDT/ETHUSDT"`` -> ``("BTCUSDT", "ETHUSDT")`` (upper-cased); `ValueError`
    naming the problem otherwise."""
    x, sep, y = text.strip().partition("/")
    x, y = x.strip().upper(), y.strip().upper()
    if not sep or "/" in y:
        raise ValueError(f"invalid pair {text!r}: expected X/Y, e.g. BTCUSDT/ETHUSDT")
    for sym in (x, y):
        if not _SYMBOL.match(sym):
            raise ValueError(f"invalid symbol {sym!r} in {text!r}: expected 2-20 letters or digits")
    if x == y:
        raise ValueError(f"invalid pair {text!r}: the two symbols must differ")
    return x, y


MIN_BASKET_LEGS, MAX_BASKET_LEGS = 3, 12
"""A basket's legs: three or more (two are a pair), at most 12 (the Johansen critical-value
tables stop there)."""


def parse_basket(text: str) -> tuple[str, ...]:
    """``"BTCUSDT+ETHUSDT+SOLUSDT"`` -> the legs in order (upper-cased): 3 to 12 distinct
    symbols; `ValueError` naming the problem otherwise."""
    legs = tuple(s.strip().upper() for s in text.strip().split("+"))
    for sym in legs:
        if not _SYMBOL.match(sym):
            raise ValueError(
                f"invalid symbol {sym!r} in basket {text!r}: expected 2-20 letters or digits"
            )
    if len(legs) < MIN_BASKET_LEGS:
        raise ValueError(
            f"invalid basket {text!r}: a basket has {MIN_BASKET_LEGS} to {MAX_BASKET_LEGS} "
            f"legs A+B+C (a pair is written X/Y), got {len(legs)}"
        )
    problem = basket_legs_problem(legs)
    if problem:
        raise ValueError(f"invalid basket {text!r}: {problem}")
    return legs


def basket_legs_problem(legs: Sequence[str]) -> str | None:
    """Why `legs` cannot be a basket's (3 to 12 distinct symbols), in one line, or None:
    the one rule for the command line, the config and `BasketParams`."""
    if len(legs) < MIN_BASKET_LEGS:
        return f"a basket needs {MIN_BASKET_LEGS} or more legs, got {len(legs)}"
    if len(legs) > MAX_BASKET_LEGS:
        return (
            f"a basket has at most {MAX_BASKET_LEGS} legs (the Johansen critical-value tables "
            f"stop there), got {len(legs)}"
        )
    dup = sorted({s for s in legs if legs.count(s) > 1})
    if dup:
        return f"each leg may be given once (got {', '.join(dup)} twice)"
    return None


def parse_watchlist_entry(text: str) -> tuple[str, ...]:
    """A watchlist entry: a pair ``"X/Y"`` -> ``(X, Y)`` or a basket ``"A+B+C"`` -> its
    legs (`parse_basket`). The length tells them apart: two legs are a pair."""
    if "+" in text and "/" not in text:
        return parse_basket(text)
    if "/" not in text:
        raise ValueError(
            f"invalid pair {text!r}: expected X/Y, e.g. BTCUSDT/ETHUSDT, or a basket A+B+C, "
            "e.g. BTCUSDT+ETHUSDT+SOLUSDT"
        )
    return parse_watchlist_pair(text)


def entry_key(legs: Sequence[str]) -> str:
    """``X/Y`` for a pair, ``A+B+C`` for a basket (the engine's keys)."""
    return "/".join(legs) if len(legs) == 2 else "+".join(legs)


def _watchlists(source: str, table: Any) -> dict[str, tuple[tuple[str, ...], ...]]:
    """`[watchlists]`: each key a name (letters, digits, ``_``, ``-``), each value a
    non-empty array of distinct pairs ``"X/Y"`` and baskets ``"A+B+C"``."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [watchlists] must be a table")
    out: dict[str, tuple[tuple[str, ...], ...]] = {}
    for name, value in table.items():
        where = f"{source}: [watchlists] {name}"
        if not _WATCHLIST_NAME.match(name):
            raise ConfigError(f"{where}: a name is 1-40 letters, digits, '_' or '-'")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f'{where}: expected an array of pairs and baskets such as ["BTCUSDT/ETHUSDT", '
                '"BTCUSDT+ETHUSDT+SOLUSDT"]'
            )
        if not value:
            raise ConfigError(f"{where}: empty (give at least one pair X/Y or basket A+B+C)")
        entries: list[tuple[str, ...]] = []
        for text in value:
            try:
                e = parse_watchlist_entry(text)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            if e in entries:
                kind = "pair" if len(e) == 2 else "basket"
                raise ConfigError(f"{where}: {kind} {entry_key(e)} given twice")
            entries.append(e)
        out[name] = tuple(entries)
    return out


def builtin_defaults_text() -> str:
    return resources.files("quanttui").joinpath("config.toml").read_text(encoding="utf-8")


def _platform_dir(kind: str) -> Path:
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "quanttui"
    if sys.platform == "win32":
        base = os.environ.get("APPDATA" if kind == "config" else "LOCALAPPDATA")
        return Path(base or home) / "quanttui"
    env = "XDG_CONFIG_HOME" if kind == "config" else "XDG_DATA_HOME"
    fallback = home / (".config" if kind == "config" else ".local/share")
    return Path(os.environ.get(env) or fallback) / "quanttui"


def default_config_path() -> Path:
    return _platform_dir("config") / "config.toml"


def default_db_path() -> Path:
    return _platform_dir("data") / "quanttui.db"


def _type_name(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}.get(
        type(v), type(v).__name__
    )


def _coerce(source: str, section: str, key: str, value: Any, default: Any) -> Any:
    where = f"{source}: [{section}] {key}"
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{where}: expected {_type_name(default)}, got {_type_name(value)}")
    check = _CHECKS.get((section, key))
    if isinstance(value, float) and not math.isfinite(value):
        allowed = f" (must be {check.text})" if isinstance(check, _Range) else ""
        raise ConfigError(f"{where}: {value!r} is not a finite number{allowed}")
    if isinstance(value, str) and _CONTROL.search(value):
        raise ConfigError(f"{where}: {value!r} contains control characters")
    problem = check(value) if check else None
    if problem:
        raise ConfigError(f"{where}: {value!r} {problem}")
    return value


def _merge(source: str, base: dict[str, dict[str, Any]], layer: dict[str, Any]) -> None:
    for section, values in layer.items():
        if section not in base:
            raise ConfigError(f"{source}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, value in values.items():
            if key not in base[section]:
                known = ", ".join(sorted(base[section]))
                raise ConfigError(f"{source}: unknown key [{section}] {key} (known: {known})")
            base[section][key] = _coerce(source, section, key, value, base[section][key])


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_config(
    path: str | Path | None = None,
    overrides: dict[tuple[str, str], Any] | None = None,
    *,
    use_user_file: bool = True,
) -> Config:
    """Build the effective `Config`.

    `path` is an explicit user file (which must exist); otherwise the platform config file
    is read if present. `overrides` maps `(section, key)` to CLI values, applied last and
    validated like file values.
    """
    values: dict[str, dict[str, Any]] = tomllib.loads(builtin_defaults_text())
    lists = _watchlists("built-in defaults", values.pop("watchlists", {}))
    routes: dict[str, tuple[str, ...]] = {}
    sources = ["built-in defaults"]
    user = Path(path).expanduser() if path else default_config_path()
    if path or (use_user_file and user.is_file()):
        layer = _read_toml(user)
        lists.update(_watchlists(str(user), layer.pop("watchlists", {})))
        notify = layer.get("notify")
        if isinstance(notify, dict) and "routes" in notify:
            routes = _notify_routes(str(user), notify.pop("routes"))
        _merge(str(user), values, layer)
        for u in values["notify"]["urls"]:
            _notify_url(f"{user}: [notify] urls", u)
        _check_secret_file(
            user, [*values["notify"]["urls"], *(u for v in routes.values() for u in v)]
        )
        sources.append(str(user))
    overrides = dict(overrides or {})
    extra_urls = list(overrides.pop(("notify", "urls"), None) or [])
    env_urls = split_urls(os.environ.get(NOTIFY_ENV, ""))
    for u in env_urls:
        _notify_url(f"environment: {NOTIFY_ENV}", u)
    for u in extra_urls:
        _notify_url("command line: --notify", u)
    urls = values["notify"]["urls"]
    for u in [*env_urls, *extra_urls]:
        if u not in urls:
            urls.append(u)
    for (section, key), value in overrides.items():
        if value is not None:
            _merge("command line", values, {section: {key: value}})
    if values["feed"]["reconnect_base_s"] > values["feed"]["reconnect_max_s"]:
        raise ConfigError(f"{sources[-1]}: [feed] reconnect_base_s must not exceed reconnect_max_s")
    if values["analytics"]["exit_z"] >= values["analytics"]["entry_z"]:
        raise ConfigError(f"{sources[-1]}: [analytics] exit_z must be below entry_z")
    stop = values["backtest"]["stop_z"]
    entry = values["analytics"]["entry_z"]
    if stop and stop <= entry:
        raise ConfigError(
            f"[backtest] stop_z = {stop:g} must be 0 (off) or exceed [analytics] entry_z = {entry:g}"
        )
    built = {}
    for name, cls in _SECTIONS.items():
        section = dict(values[name])
        if name == "alerts":
            section["rules"] = tuple(section["rules"])
        if name == "notify":
            section["urls"] = tuple(section["urls"])
            section["routes"] = tuple(routes.items())
        built[name] = cls(**section)
    return Config(**built, sources=tuple(sources), watchlists=tuple(lists.items()))
