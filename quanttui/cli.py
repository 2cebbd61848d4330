"""Command line: parse arguments and config, pick a mode, map failures to exit codes.

The plain form `quanttui SYMBOL_X SYMBOL_Y [options]` starts the live app on one pair,
`quanttui A B C ...` (3 to 12 bare symbols) the basket monitor; `quanttui X/Y X/Y ...`
(two or more pairs, or any basket written `A+B+C`), `--watchlist NAME` (a `[watchlists]`
entry of the config) and `quanttui` alone (the last watchlist used, kept in the database)
open the watchlist. A first word that names a subcommand (`record`, `snapshot`, ...) selects
that mode instead. Usage
errors exit 2 with one line on stderr; runtime failures the user can fix (bad database,
unknown symbol, too little data) exit 1 or 2 with one line, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from quanttui import __version__
from quanttui.config import (
    HEDGES,
    MAX_BASKET_LEGS,
    TIMEFRAMES,
    Config,
    ConfigError,
    basket_legs_problem,
    entry_key,
    load_config,
    parse_basket,
)
from quanttui.errors import UsageError, UserError
from quanttui.textsafe import guard_logging, printable

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def symbol(text: str) -> str:
    """Upper-case and validate one symbol such as `BTCUSDT`."""
    sym = text.strip().upper()
    if not SYMBOL_RE.match(sym):
        raise UsageError(f"invalid symbol {text!r}: expected 2-20 letters or digits, e.g. BTCUSDT")
    return sym


def pair(x: str, y: str) -> tuple[str, str]:
    sx, sy = symbol(x), symbol(y)
    if sx == sy:
        raise UsageError(f"the two symbols must differ (got {sx} twice)")
    return sx, sy


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help="user config file (TOML)")


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH", help="SQLite database file")


def _add_net(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ws-url", metavar="URL", help="websocket base (routed), e.g. ws://host/market")
    p.add_argument("--rest-url", metavar="URL", help="REST base, e.g. https://fapi.binance.com")
    p.add_argument(
        "--backfill",
        metavar="SPAN",
        help="history to fetch at launch: auto (2W bars + margin), off, or e.g. 12h",
    )


def _add_notify(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="URL",
        help="also push alerts to this apprise URL, e.g. ntfys://topic (repeatable)",
    )


def _add_web(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument(
        "--web",
        default=default,
        metavar="[HOST:]PORT",
        help="serve the app to browsers here; HOST defaults to 127.0.0.1 (this machine only); "
        "PORT 0 = any free port" + (f" (default {default})" if default else ""),
    )
    p.add_argument(
        "--web-token",
        metavar="TOKEN",
        help="token a browser must present (?token=TOKEN once; then a cookie); needed for a "
        "HOST other than 127.0.0.1/localhost/::1, generated and printed when not given "
        "(or set QUANTTUI_WEB_TOKEN)",
    )


def _web_spec(args: argparse.Namespace) -> Any:
    """The `WebSpec` of `--web` and `--web-token` (and $QUANTTUI_WEB_TOKEN), or None."""
    import os

    from quanttui.web import TOKEN_ENV, web_spec

    if args.web is None:
        if args.web_token is not None:
            raise UsageError("--web-token needs --web [HOST:]PORT")
        return None
    return web_spec(args.web, args.web_token, os.environ.get(TOKEN_ENV))


def _add_analytics(p: argparse.ArgumentParser, *, z: bool = True) -> None:
    p.add_argument("--timeframe", choices=list(TIMEFRAMES), help="bar size")
    p.add_argument("--window", type=int, metavar="W", help="rolling window in bars")
    p.add_argument("--hedge", choices=list(HEDGES), help="hedge-ratio estimator")
    if z:
        p.add_argument("--entry-z", type=float, metavar="Z", help="entry |z| threshold")
        p.add_argument("--exit-z", type=float, metavar="Z", help="exit |z| threshold")


def _add_legs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "symbols",
        nargs="+",
        metavar="SYMBOL",
        help="SYMBOL_X SYMBOL_Y (a pair, y regressed on x), or 3 to 12 symbols (a basket)",
    )


def legs(words: Sequence[str]) -> tuple[str, ...]:
    """Two symbols (a pair `X Y`) or 3 to 12 distinct ones (a basket), validated."""
    syms = tuple(symbol(w) for w in words)
    if len(syms) < 2:
        raise UsageError(
            f"expected SYMBOL_X SYMBOL_Y (a pair) or 3 to {MAX_BASKET_LEGS} symbols (a basket), "
            f"got {len(syms)}"
        )
    if len(syms) == 2:
        if syms[0] == syms[1]:
            raise UsageError(f"the two symbols must differ (got {syms[0]} twice)")
        return syms
    problem = basket_legs_problem(syms)
    if problem:
        raise UsageError(problem)
    return syms


def parse_pairs(words: Sequence[str]) -> list[tuple[str, str]]:
    """`X Y` (one pair) or `X/Y [X/Y ...]` (one or more pairs; Y regressed on X)."""
    if not words:
        raise UsageError("expected SYMBOL_X SYMBOL_Y, or one or more pairs X/Y")
    if not any("/" in w for w in words):
        if len(words) != 2:
            raise UsageError(
                f"expected SYMBOL_X SYMBOL_Y (got {len(words)} symbols); "
                "several pairs are written X/Y X/Y ..."
            )
        return [pair(words[0], words[1])]
    out: list[tuple[str, str]] = []
    for w in words:
        x, sep, y = w.partition("/")
        if not sep or "/" in y:
            raise UsageError(f"invalid pair {w!r}: expected X/Y, e.g. BTCUSDT/ETHUSDT")
        p = pair(x, y)
        if p in out:
            raise UsageError(f"pair {x}/{y} given twice")
        out.append(p)
    return out


Entry = tuple[str, ...]
"""A watched thing by its legs: a pair (x, y), or a basket of 3 to 12 legs."""


def parse_entries(words: Sequence[str]) -> list[Entry]:
    """`X Y` (one pair), or pairs `X/Y` and baskets `A+B+C[+...]` in any mix (each
    given once)."""
    if not any("+" in w for w in words):
        return list(parse_pairs(words))
    out: list[Entry] = []
    for w in words:
        if "+" in w and "/" not in w:
            try:
                e: Entry = parse_basket(w)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        else:
            x, sep, y = w.partition("/")
            if not sep or "/" in y:
                raise UsageError(
                    f"invalid pair {w!r}: expected X/Y, e.g. BTCUSDT/ETHUSDT, or a basket "
                    "A+B+C, e.g. BTCUSDT+ETHUSDT+SOLUSDT"
                )
            e = pair(x, y)
        if e in out:
            raise UsageError(f"{'pair' if len(e) == 2 else 'basket'} {entry_key(e)} given twice")
        out.append(e)
    return out


def split_entries(entries: Sequence[Entry]) -> tuple[list[tuple[str, str]], list[Entry]]:
    """The pairs (x, y) and the baskets among `entries`, each in order."""
    pairs = [(e[0], e[1]) for e in entries if len(e) == 2]
    return pairs, [tuple(e) for e in entries if len(e) > 2]


def _live_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui",
        description=(
            "Live pairs-trading monitor for Binance USD-M futures. "
            "SYMBOL_Y is regressed on SYMBOL_X: y = a + b*x."
        ),
        epilog="subcommands: quanttui {demo,record,snapshot,export,backtest,import,scan,doctor,serve,attach,sessions,web,notify} --help",
    )
    p.add_argument("--version", action="version", version=f"quanttui {__version__}")
    p.add_argument(
        "pairs",
        nargs="*",
        metavar="PAIR",
        help="SYMBOL_X SYMBOL_Y (y regressed on x), or 3 to 12 symbols (a basket, Johansen); "
        "pairs X/Y and baskets A+B+C in any mix open the watchlist (one pair X/Y alone its "
        "monitor); none: the last watchlist used",
    )
    p.add_argument(
        "--watchlist",
        metavar="NAME",
        help="open the watchlist NAME of the config's [watchlists] (plus any pairs given)",
    )
    _add_config(p)
    _add_db(p)
    _add_net(p)
    _add_analytics(p)
    p.add_argument("--export-dir", metavar="DIR", help="directory for CSV exports")
    p.add_argument("--headless", action="store_true", help="no UI: print alerts as JSON lines")
    p.add_argument(
        "--alert",
        action="append",
        default=[],
        metavar="RULE",
        help="extra alert rule, e.g. 'corr < 0.6' (repeatable)",
    )
    _add_notify(p)
    p.add_argument(
        "--replay",
        action="append",
        default=[],
        metavar="SOURCE",
        help="replay a quanttui database, an .ndjson recording or Binance aggTrades/trades "
        "files (one per symbol; repeat --replay) instead of the exchange",
    )
    p.add_argument(
        "--speed",
        type=_speed,
        default=None,
        metavar="N",
        help="replay speed multiple, 0 = as fast as possible (default 1)",
    )
    return p


def _speed(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid speed {text!r}: expected a number") from None
    if not (v >= 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"invalid speed {text!r}: must be >= 0")
    return v


def _demo_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui demo",
        description=(
            "Loop a real 7-minute BTCUSDT/ETHUSDT futures recording shipped with quanttui "
            "through the full app. Needs no network."
        ),
    )
    _add_config(p)
    _add_analytics(p)
    p.add_argument("--speed", type=_speed, default=5.0, metavar="N", help="speed (default 5)")
    p.add_argument("--headless", action="store_true", help="no UI: print alerts as JSON lines")
    p.add_argument("--export-dir", metavar="DIR", help="directory for CSV exports")
    return p


def _run_demo(args: argparse.Namespace) -> int:
    from importlib import resources

    if args.window is None:
        args.window = 60
    if args.timeframe is None:
        args.timeframe = "1s"
    cfg = _build_config(args)
    demo = resources.files("quanttui").joinpath("data", DEMO_FILE)
    with resources.as_file(demo) as path:
        prefill = 2 * cfg.analytics.window * cfg.analytics.timeframe_ms
        return _run_pair(
            cfg,
            [("BTCUSDT", "ETHUSDT")],
            [],
            args.headless,
            [path],
            args.speed,
            True,
            "DEMO",
            prefill,
        )


DEMO_FILE = "demo_BTCUSDT_ETHUSDT.ndjson.gz"


def _record_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="quanttui record", description="Record aggTrades into the database, no UI.")
    p.add_argument("symbols", nargs="+", metavar="SYMBOL")
    _add_config(p)
    _add_db(p)
    _add_net(p)
    p.add_argument("--status-every", type=float, default=5.0, metavar="S", help=argparse.SUPPRESS)
    return p


def _snapshot_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui snapshot", description="Compute the pair's metrics from stored data."
    )
    _add_legs(p)
    _add_config(p)
    _add_db(p)
    _add_analytics(p, z=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="quanttui export", description="Write the pair's CSVs from stored data.")
    _add_legs(p)
    _add_config(p)
    _add_db(p)
    _add_analytics(p, z=False)
    p.add_argument("--out", metavar="DIR", help="output directory (default: [export] dir)")
    return p


def _run_export(args: argparse.Namespace) -> int:
    syms = legs(args.symbols)
    cfg = _build_config(args)
    from quanttui.modes import offline

    if len(syms) > 2:
        return offline.basket_export(cfg, list(syms), args.out or cfg.export.dir)
    return offline.export(cfg, *syms, args.out or cfg.export.dir)


def _backtest_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui backtest", description="Backtest the z-score strategy on stored data."
    )
    _add_legs(p)
    _add_config(p)
    _add_db(p)
    _add_analytics(p)
    p.add_argument("--stop-z", type=float, metavar="Z", help="stop-out |z|, 0 = none ([backtest])")
    p.add_argument("--fee-bps", type=float, metavar="BPS", help="fee per leg, bps ([backtest])")
    p.add_argument(
        "--min-rank",
        type=int,
        metavar="R",
        help="a basket enters only when its Johansen rank is >= R, 0 = off ([basket])",
    )
    p.add_argument("--from", dest="from_", metavar="ISO", help="first bar time (UTC)")
    p.add_argument("--to", metavar="ISO", help="last bar time (UTC)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="DIR", help="also write the trades and equity CSVs here")
    return p


def _build_config(args: argparse.Namespace) -> Config:
    get = lambda name: getattr(args, name, None)  # noqa: E731
    overrides: dict[tuple[str, str], Any] = {
        ("analytics", "timeframe"): get("timeframe"),
        ("analytics", "window"): get("window"),
        ("analytics", "hedge"): get("hedge"),
        ("analytics", "entry_z"): get("entry_z"),
        ("analytics", "exit_z"): get("exit_z"),
        ("storage", "db"): get("db"),
        ("backtest", "fee_bps"): get("fee_bps"),
        ("backtest", "stop_z"): get("stop_z"),
        ("basket", "min_rank"): get("min_rank"),
        ("export", "dir"): get("export_dir"),
        ("feed", "ws_url"): get("ws_url"),
        ("feed", "rest_url"): get("rest_url"),
        ("feed", "backfill"): get("backfill"),
        ("notify", "urls"): get("notify"),
    }
    cfg = load_config(get("config"), overrides)
    if cfg.notify.enabled:
        from quanttui.notify.urls import NotifyUrlError, routing

        try:
            routing(cfg)
        except NotifyUrlError as exc:
            raise ConfigError(f"[notify]: {exc}") from None
    return cfg


def _run_live(args: argparse.Namespace) -> int:
    if len(args.pairs) >= 3 and not any("/" in w or "+" in w for w in args.pairs):
        return _run_basket(args)
    if args.pairs:
        parse_entries(args.pairs)  # a usage error before the config is read
    cfg = _build_config(args)
    entries, listed, name = live_pairs(cfg, args.pairs, args.watchlist)
    pairs, baskets = split_entries(entries)
    _check_baskets(cfg, baskets)
    _check_rules(cfg, args.alert, mixed=bool(baskets))
    if args.speed is not None and not args.replay:
        raise UsageError("--speed needs --replay SOURCE")
    sources = [Path(p).expanduser() for p in args.replay]
    speed = 1.0 if args.speed is None else args.speed
    return _run_pair(
        cfg,
        pairs,
        args.alert,
        args.headless,
        sources,
        speed,
        False,
        "REPLAY",
        watchlist=listed,
        watchlist_name=name,
        baskets=baskets,
    )


def _check_baskets(cfg: Config, baskets: Sequence[Entry]) -> None:
    """Each basket's window must hold enough bars for its legs (`BasketParams`)."""
    if not baskets:
        return
    from quanttui.modes.offline import basket_params

    for b in baskets:
        basket_params(cfg, list(b))


def _run_basket(args: argparse.Namespace) -> int:
    """`quanttui A B C ...`: a basket of 3 to 12 legs (`quanttui.analytics.basket`), live
    or replayed, on the screen or `--headless`."""
    syms = legs(args.pairs)
    if args.watchlist:
        raise UsageError("--watchlist takes pairs X/Y, not a basket")
    cfg = _build_config(args)
    from quanttui.modes.offline import basket_params

    basket_params(cfg, list(syms))
    _check_rules(cfg, args.alert, basket=True)
    if args.speed is not None and not args.replay:
        raise UsageError("--speed needs --replay SOURCE")
    sources = [Path(p).expanduser() for p in args.replay]
    speed = 1.0 if args.speed is None else args.speed
    return _run_pair(
        cfg, [], args.alert, args.headless, sources, speed, False, "REPLAY", baskets=[syms]
    )


def live_pairs(
    cfg: Config, words: Sequence[str], name: str | None
) -> tuple[list[Entry], bool, str | None]:
    """The pairs (x, y) and baskets (3+ legs) to run, whether they open the watchlist,
    and its name.

    * `--watchlist NAME`: the config's list NAME, then the entries given that it lacks;
    * entries given: those; the watchlist when there are two or more, or a basket;
    * nothing: the last watchlist used, as saved in the database
      (`quanttui.store.state`); a usage error when there is none."""
    given = parse_entries(words) if words else []
    if name is not None:
        listed = cfg.watchlist(name)
        if listed is None:
            known = ", ".join(n for n, _ in cfg.watchlists)
            raise UsageError(
                f"no watchlist {name!r} in the config's [watchlists]"
                + (f" (known: {known})" if known else " (it has none)")
            )
        return [*listed, *(p for p in given if p not in listed)], True, name
    if given:
        return given, len(given) > 1 or any(len(e) > 2 for e in given), None
    from quanttui.store.db import StoreError
    from quanttui.store.state import load_last

    try:
        saved = load_last(cfg.db_path)
    except StoreError as exc:
        raise UserError(str(exc), 2) from None
    if saved is None or not saved.pairs:
        raise UsageError(
            f"no pairs given and no watchlist saved in {cfg.db_path}: give SYMBOL_X SYMBOL_Y, "
            "pairs X/Y and baskets A+B+C ..., or --watchlist NAME"
        )
    return list(saved.pairs), True, saved.name


def _run_pair(
    cfg: Config,
    pairs: list[tuple[str, str]],
    rules: list[str],
    headless_mode: bool,
    sources: list[Path],
    speed: float,
    loop: bool,
    label: str,
    prefill_ms: int = 0,
    *,
    watchlist: bool = False,
    watchlist_name: str | None = None,
    baskets: Sequence[Sequence[str]] = (),
) -> int:
    """Live from the exchange, or (with `sources`) a replay into a temporary session
    database that is deleted afterwards (see `quanttui.feed.replay.scratch_dir`); the
    sources are never written. A looping replay (the demo) first checks that one pass of
    the recording can fill the window. `baskets` run on the same engine as the pairs: in
    the watchlist (`watchlist`; a running `quanttui serve` for the database is attached to,
    and what it lacks added), else one basket alone on its own screen (`BasketApp`), which
    runs embedded whether or not a server runs."""
    import contextlib
    import dataclasses
    import shutil

    spec = None
    tmp: Path | None = None
    with contextlib.ExitStack() as stack:
        if sources:
            from quanttui.feed import replay

            try:
                tmp = stack.enter_context(replay.scratch_dir())
                src = replay.prepare_source(sources, tmp / "source.db")
            except replay.ReplayError as exc:
                raise UserError(str(exc), 2) from None
            if loop:
                a = cfg.analytics
                try:
                    for legs in pairs:
                        replay.check_fill(src, legs, a.timeframe, a.window, a.hedge)
                except replay.ReplayError as exc:
                    raise UserError(f"{label.lower()}: {exc}", 2) from None
            name = ", ".join(str(s) for s in sources)
            spec = replay.ReplaySpec(src, speed, loop, label, prefill_ms, name)
            storage = dataclasses.replace(cfg.storage, db=str(tmp / "session.db"))
            cfg = dataclasses.replace(cfg, storage=storage)
        basket_screen = bool(baskets) and not pairs and not watchlist
        if spec is None and not basket_screen:
            from quanttui.modes import serve

            served = serve.server_for(cfg)
            if served is not None:
                if headless_mode:
                    from quanttui.modes import headless

                    return headless.attach(served, [*pairs, *(tuple(b) for b in baskets)])
                return _attach_app(cfg, served, [*pairs, *(tuple(b) for b in baskets)])
        _prepare_db(cfg)
        if headless_mode:
            from quanttui.modes import headless

            return headless.run(
                cfg,
                pairs,
                extra_rules=rules,
                replay=spec,
                cleanup=lambda: tmp and shutil.rmtree(tmp, ignore_errors=True),
                baskets=baskets,
            )
        if basket_screen:
            from quanttui.app.basket_app import BasketApp
            from quanttui.terminal import watch_hangup

            (legs_,) = baskets
            basket_app = BasketApp(
                cfg,
                legs_,
                extra_rules=rules,
                replay=spec,
                engine_process=True,
                cleanup=lambda: tmp and shutil.rmtree(tmp, ignore_errors=True),
            )
            with watch_hangup(lambda: basket_app.call_from_thread(basket_app.exit, 0)):
                basket_app.run()
            return basket_app.return_code or 0
        from quanttui.app.app import QuantApp
        from quanttui.terminal import watch_hangup

        if watchlist and spec is None:
            _remember_watchlist(cfg, watchlist_name, [*pairs, *baskets])
        # the engine is imported and started after the first frame; the app installs the
        # signal guard then
        app = QuantApp(
            cfg,
            pairs=pairs,
            baskets=baskets,
            extra_rules=rules,
            replay=spec,
            watchlist=bool(watchlist),
            watchlist_name=watchlist_name if watchlist else None,
            defer_engine=True,
            engine_process=True,
            guard=True,
            cleanup=lambda: tmp and shutil.rmtree(tmp, ignore_errors=True),
        )
        try:
            with watch_hangup(app.hangup):
                app.run()
        finally:
            if app.shutdown_guard is not None:
                app.shutdown_guard.uninstall()
        return app.return_code or 0


def _remember_watchlist(cfg: Config, name: str | None, pairs: Sequence[Sequence[str]]) -> None:
    """The watchlist opened becomes the last one used (restored by a bare `quanttui`)."""
    import sqlite3

    from quanttui.store.db import StoreError
    from quanttui.store.state import save_last

    try:
        save_last(cfg.db_path, name, pairs)
    except (StoreError, sqlite3.Error) as exc:
        raise UserError(f"{cfg.db_path}: cannot save the watchlist ({exc})", 2) from None


def _check_rules(
    cfg: Config, extra: list[str], *, basket: bool = False, mixed: bool = False
) -> None:
    """Every rule must parse: a rule written `A+B+C: rule` against the basket metrics
    (`BASKET_METRIC_NAMES`), `X/Y: rule` against the pair metrics; a plain one against
    the metrics of what runs: a basket's for the command line of a basket (`basket`),
    either's for pairs and baskets together (`mixed`: each takes the rules that name its
    metrics), a pair's otherwise, where a basket leaves out the config's pair rules."""
    if not cfg.alerts.rules and not extra:
        return  # (the engine is not imported for nothing: see QuantApp's defer_engine)
    from quanttui.alerts import RuleError, parse_rule
    from quanttui.engine.core import split_rule
    from quanttui.model import BASKET_METRIC_NAMES, METRIC_NAMES

    for text in [*cfg.alerts.rules, *extra]:
        target, rule = split_rule(text)
        if target is not None:
            names = BASKET_METRIC_NAMES if "+" in target else METRIC_NAMES
        elif basket:
            names = BASKET_METRIC_NAMES if text in extra else METRIC_NAMES + BASKET_METRIC_NAMES
        elif mixed:
            names = tuple(dict.fromkeys(METRIC_NAMES + BASKET_METRIC_NAMES))
        else:
            names = METRIC_NAMES
        try:
            parse_rule(
                rule, entry_z=cfg.analytics.entry_z, exit_z=cfg.analytics.exit_z, names=names
            )
        except RuleError as exc:
            raise UsageError(str(exc)) from None


def _prepare_db(cfg: Config, *, integrity: bool = False) -> None:
    """Validate, create or migrate the database; with `integrity`, first refuse a damaged
    one untouched. Then the start-up check of `quanttui.store.health`."""
    from quanttui.store.db import StoreError, prepare
    from quanttui.store.health import check_integrity, startup_quarantine

    try:
        if integrity:
            check_integrity(cfg.db_path)
        prepare(cfg.db_path)
        for line in startup_quarantine(cfg.db_path):
            print(f"quanttui: warning: {line}", file=sys.stderr)
    except StoreError as exc:
        raise UserError(str(exc), 2) from None


def _run_record(args: argparse.Namespace) -> int:
    syms = [symbol(s) for s in args.symbols]
    if len(set(syms)) != len(syms):
        raise UsageError("each symbol may be given once")
    cfg = _build_config(args)
    _prepare_db(cfg)
    from quanttui.modes import record

    return record.run(cfg, syms, status_every=args.status_every)


def _run_snapshot(args: argparse.Namespace) -> int:
    syms = legs(args.symbols)
    cfg = _build_config(args)
    from quanttui.modes import offline

    if len(syms) > 2:
        return offline.basket_snapshot(cfg, list(syms), as_json=args.json)
    return offline.snapshot(cfg, *syms, as_json=args.json)


def _run_backtest(args: argparse.Namespace) -> int:
    syms = legs(args.symbols)
    cfg = _build_config(args)
    from quanttui.modes import offline

    if len(syms) > 2:
        return offline.basket_backtest(cfg, list(syms), args)
    return offline.backtest(cfg, *syms, args)


def _import_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui import",
        description=(
            "Load Binance archive files (aggTrades, trades, klines or fundingRate; .csv or "
            ".zip) into the "
            "database. Re-importing a file adds nothing; a file with a bad row adds nothing."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="archive files")
    _add_config(p)
    _add_db(p)
    p.add_argument("--symbol", type=symbol, help="symbol, when the file names do not say")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _run_import(args: argparse.Namespace) -> int:
    cfg = _build_config(args)
    _prepare_db(cfg, integrity=True)
    from quanttui.modes import offline

    return offline.import_files(cfg, args.files, args.symbol, progress=not args.quiet)


def _scan_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui scan",
        description=(
            "Rank every ordered pair of a universe of USD-M futures for cointegration and "
            "mean reversion, from 1m klines (fetched over REST when missing). Opens the "
            "scanner screen unless --json or --out is given."
        ),
    )
    p.add_argument("symbols", nargs="*", metavar="SYMBOL", help="symbols (default: --top)")
    p.add_argument(
        "--top",
        type=int,
        metavar="N",
        help="the N USDT perpetuals with the largest 24 h quote volume (default 50)",
    )
    p.add_argument(
        "--timeframe",
        dest="scan_timeframe",
        choices=("1m", "5m", "15m"),
        default="1m",
        help="bar size (resampled from 1m)",
    )
    p.add_argument("--lookback", default="1d", metavar="SPAN", help="e.g. 12h, 1d (default)")
    p.add_argument("--adf-lags", type=int, default=1, metavar="L", help="ADF lags (default 1)")
    p.add_argument(
        "--basket",
        type=int,
        default=0,
        metavar="K",
        help="rank baskets of K legs (3-12) with Johansen, built from the top pairs",
    )
    p.add_argument(
        "--basket-pairs",
        type=int,
        default=30,
        metavar="N",
        help="build the baskets from the N most cointegrated pairs (default 30)",
    )
    p.add_argument("--json", action="store_true", help="print the ranking as JSON")
    p.add_argument("--out", metavar="DIR", help="write the ranking CSV here")
    _add_config(p)
    _add_db(p)
    p.add_argument("--rest-url", metavar="URL", help="REST base, e.g. https://fapi.binance.com")
    p.add_argument("--ws-url", metavar="URL", help="websocket base (routed)")
    p.add_argument("--export-dir", metavar="DIR", help="where 'e' writes the CSV")
    return p


def _run_scan(args: argparse.Namespace) -> int:
    from quanttui.modes import scan
    from quanttui.scanner import ScanRequest, parse_lookback

    syms = tuple(symbol(s) for s in args.symbols)
    if len(set(syms)) != len(syms):
        raise UsageError("each symbol may be given once")
    if syms and args.top is not None:
        raise UsageError("give symbols or --top N, not both")
    if len(syms) == 1:
        raise UsageError("give at least 2 symbols (or none, for the --top N)")
    if args.top is not None and not 2 <= args.top <= 1000:
        raise UsageError(f"--top must be between 2 and 1000, got {args.top}")
    if not 0 <= args.adf_lags <= 20:
        raise UsageError(f"--adf-lags must be between 0 and 20, got {args.adf_lags}")
    if args.basket and not 3 <= args.basket <= MAX_BASKET_LEGS:
        raise UsageError(f"--basket must be between 3 and {MAX_BASKET_LEGS}, got {args.basket}")
    if not 1 <= args.basket_pairs <= 10_000:
        raise UsageError(f"--basket-pairs must be between 1 and 10000, got {args.basket_pairs}")
    try:
        lookback = parse_lookback(args.lookback)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cfg = _build_config(args)
    req = ScanRequest(
        db_path=cfg.db_path,
        rest_url=cfg.feed.rest_url,
        ws_url=cfg.feed.ws_url,
        symbols=syms,
        top=args.top or 50,
        timeframe=args.scan_timeframe,
        lookback_ms=lookback,
        adf_lags=args.adf_lags,
    )
    return scan.run(
        cfg,
        req,
        as_json=args.json,
        out_dir=args.out,
        basket=args.basket,
        basket_pairs=args.basket_pairs,
    )


def _doctor_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui doctor",
        description=(
            "Check the database: PRAGMA quick_check, and rows with impossible trade times "
            "(after now + 60 s, or before 2019-09-01). Exit 1 if a problem is left."
        ),
    )
    _add_config(p)
    _add_db(p)
    p.add_argument(
        "--quarantine", action="store_true", help="move such rows to the quarantine table"
    )
    return p


def _run_doctor(args: argparse.Namespace) -> int:
    cfg = _build_config(args)
    from quanttui.store.db import StoreError
    from quanttui.store.health import doctor

    try:
        code, lines = doctor(cfg.db_path, fix=args.quarantine)
    except StoreError as exc:
        raise UserError(str(exc), 1) from None
    print("\n".join(lines))
    return code


def _serve_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui serve",
        description=(
            "Run the engine as a server that views attach to ('quanttui attach'): it records "
            "the pairs, evaluates the alert rules and writes the database with no terminal. "
            "SIGTERM/SIGINT stop it; SIGHUP reloads the config's rules and watchlist."
        ),
    )
    p.add_argument(
        "pairs",
        nargs="*",
        metavar="PAIR",
        help="SYMBOL_X SYMBOL_Y, or pairs X/Y and baskets A+B+C ...; none: the last watchlist used",
    )
    p.add_argument("--watchlist", metavar="NAME", help="the config's watchlist NAME")
    _add_config(p)
    _add_db(p)
    _add_net(p)
    _add_analytics(p)
    p.add_argument("--export-dir", metavar="DIR", help="directory for CSV exports")
    p.add_argument("--alert", action="append", default=[], metavar="RULE", help="extra alert rule")
    _add_notify(p)
    _add_web(p)
    p.add_argument(
        "--print-systemd-unit",
        action="store_true",
        help="print a systemd user unit that runs this server, and exit",
    )
    return p


def _run_serve(args: argparse.Namespace) -> int:
    if args.pairs:
        parse_entries(args.pairs)
    web = _web_spec(args)
    cfg = _build_config(args)
    entries, _listed, name = live_pairs(cfg, args.pairs, args.watchlist)
    pairs, baskets = split_entries(entries)
    _check_baskets(cfg, baskets)
    _check_rules(cfg, args.alert, mixed=bool(baskets))
    from quanttui.modes import serve

    if args.print_systemd_unit:
        unit, note = serve.systemd_unit(
            args.argv, entries, web=args.web is not None, token=args.web_token
        )
        print(unit, end="")
        if note:
            print(f"quanttui: note: {note}", file=sys.stderr)
        return 0
    _prepare_db(cfg)
    return serve.serve(
        lambda: _build_config(args),
        pairs,
        args.alert,
        name,
        web=web,
        config_path=args.config,
        baskets=baskets,
    )


def _attach_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui attach",
        description="Attach a view to the running server ('quanttui serve') for the database.",
    )
    p.add_argument(
        "pairs",
        nargs="*",
        metavar="PAIR",
        help="pairs X/Y and baskets A+B+C to open (added if missing)",
    )
    _add_config(p)
    _add_db(p)
    p.add_argument("--headless", action="store_true", help="print the alerts as JSON lines")
    return p


def _run_attach(args: argparse.Namespace) -> int:
    given = parse_entries(args.pairs) if args.pairs else []
    cfg = _build_config(args)
    from quanttui.modes import serve

    path = serve.attach_path(cfg) if args.db is None else serve.server_for(cfg)
    if path is None:
        raise UserError(f"no quanttui server is running for {cfg.db_path}")
    if args.headless:
        from quanttui.modes import headless

        return headless.attach(path, given)
    return _attach_app(cfg, path, given)


def _attach_app(cfg: Config, path: Path, pairs: Sequence[Entry]) -> int:
    """The app as a view of the server at `path`: on `pairs` (pairs and baskets; those
    the server lacks are added to it), else on everything the server watches."""
    from quanttui.app.app import QuantApp
    from quanttui.server.client import probe
    from quanttui.terminal import watch_hangup

    welcome = probe(path)
    if welcome is None:
        raise UserError(f"the server at {path} does not answer")
    served: list[Entry] = []
    for k in welcome.get("pairs", []):
        if isinstance(k, str) and ("/" in k or "+" in k):
            served.append(tuple(k.split("/", 1)) if "/" in k else tuple(k.split("+")))
    legs = list(pairs) or served
    if not legs:
        raise UserError("the server watches no pair; give one: quanttui attach X/Y")
    only_pair = len(pairs) == 1 and len(pairs[0]) == 2
    watch = (len(set(legs) | set(served)) > 1 or any(len(e) > 2 for e in legs)) and not only_pair
    legs_pairs, legs_baskets = split_entries(legs)
    app = QuantApp(
        cfg,
        pairs=legs_pairs,
        baskets=legs_baskets,
        watchlist=watch,
        engine_process=True,
        guard=True,
        attach=path,
        label=printable(str(welcome.get("label") or "LIVE"), 12, one_line=True),
    )
    try:
        with watch_hangup(app.hangup):
            app.run()
    finally:
        if app.shutdown_guard is not None:
            app.shutdown_guard.uninstall()
    return app.return_code or 0


def _web_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui web",
        description=(
            "The app in a browser: every tab is one more view of the engine, with the same "
            "screens and keys. Serves the running server for the database ('quanttui "
            "serve'), or becomes that server (with PAIRS, --watchlist, or the saved "
            "watchlist); --demo serves the demo recording."
        ),
    )
    p.add_argument(
        "pairs",
        nargs="*",
        metavar="PAIR",
        help="SYMBOL_X SYMBOL_Y, or pairs X/Y and baskets A+B+C ...; none: the server's, or "
        "the last watchlist used",
    )
    p.add_argument("--watchlist", metavar="NAME", help="the config's watchlist NAME")
    p.add_argument(
        "--demo", action="store_true", help="serve the bundled demo recording ('quanttui demo')"
    )
    p.add_argument("--speed", type=_speed, metavar="N", help="--demo speed (default 5)")
    _add_web(p, default=f"127.0.0.1:{WEB_PORT}")
    _add_config(p)
    _add_db(p)
    _add_net(p)
    _add_analytics(p)
    p.add_argument("--export-dir", metavar="DIR", help="directory for CSV exports")
    p.add_argument("--alert", action="append", default=[], metavar="RULE", help="extra alert rule")
    _add_notify(p)
    return p


WEB_PORT = 8000


def _run_web(args: argparse.Namespace) -> int:
    from quanttui.modes import serve, web

    spec = _web_spec(args)
    if args.demo:
        if args.pairs or args.watchlist:
            raise UsageError("--demo serves the demo pair: give no pairs and no --watchlist")
        from importlib import resources

        args.window = 60 if args.window is None else args.window
        args.timeframe = args.timeframe or "1s"
        cfg = _build_config(args)
        _check_rules(cfg, args.alert)

        def run(session: Config, pairs: list[tuple[str, str]], replay: Any) -> int:
            _prepare_db(session)
            return serve.serve(
                lambda: session,
                pairs,
                args.alert,
                None,
                web=spec,
                config_path=args.config,
                replay=replay,
            )

        speed = 5.0 if args.speed is None else args.speed
        demo = resources.files("quanttui").joinpath("data", DEMO_FILE)
        with resources.as_file(demo) as path:
            return web.demo(cfg, speed, spec, args.config, path, run)
    if args.speed is not None:
        raise UsageError("--speed needs --demo")
    given = parse_entries(args.pairs) if args.pairs else []
    cfg = _build_config(args)
    served = serve.server_for(cfg)
    if served is not None:
        if args.watchlist:
            raise UsageError(
                f"a server is running for {cfg.db_path}: --watchlist is for a new one "
                "(give pairs to open instead)"
            )
        return web.front_only(spec, served, cfg, args.config, given)
    entries, _listed, name = live_pairs(cfg, args.pairs, args.watchlist)
    pairs, baskets = split_entries(entries)
    _check_baskets(cfg, baskets)
    _check_rules(cfg, args.alert, mixed=bool(baskets))
    _prepare_db(cfg)
    return serve.serve(
        lambda: _build_config(args),
        pairs,
        args.alert,
        name,
        web=spec,
        config_path=args.config,
        baskets=baskets,
    )


def _sessions_parser() -> argparse.ArgumentParser:
    return _Parser(prog="quanttui sessions", description="List the running quanttui servers.")


def _run_sessions(_args: argparse.Namespace) -> int:
    from quanttui.modes import serve

    return serve.sessions()


def _notify_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui notify",
        description="Push notifications: send a test message, or list the outbox's "
        "pending and failed deliveries.",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="{test,status}")
    t = sub.add_parser("test", help="send one test message and print the outcome")
    t.add_argument(
        "url", nargs="?", metavar="URL", help="apprise URL (default: every configured one)"
    )
    _add_config(t)
    _add_notify(t)
    s = sub.add_parser("status", help="list pending and failed deliveries")
    _add_config(s)
    _add_db(s)
    _add_notify(s)
    return p


def _run_notify(args: argparse.Namespace) -> int:
    from quanttui.notify.urls import Scrubber, routing

    cfg = _build_config(args)
    scrub = Scrubber(routing(cfg).all) if cfg.notify.enabled else Scrubber()
    if args.action == "test":
        from quanttui.notify.worker import send_test

        urls = (
            [args.url]
            if args.url
            else list(
                dict.fromkeys([*cfg.notify.urls, *(u for _, us in cfg.notify.routes for u in us)])
            )
        )
        if not urls:
            raise UsageError(
                "no notification URL: give one (quanttui notify test URL), set [notify] urls "
                "or QUANTTUI_NOTIFY_URLS"
            )
        if args.url:
            from quanttui.notify.urls import NotifyUrlError, destination

            try:
                destination(args.url)
            except NotifyUrlError as exc:
                raise UsageError(str(exc)) from None
        failed = 0
        for u in urls:
            ok, line = send_test(u, cfg.notify.timeout_s)
            failed += not ok
            print(("ok: " if ok else "FAILED: ") + scrub(line, 500))
        return 1 if failed else 0
    from quanttui.model import iso_utc
    from quanttui.notify.outbox import read_status
    from quanttui.store.db import StoreError

    if not cfg.db_path.exists():
        print(f"no database at {cfg.db_path}: nothing to deliver")
        return 0
    try:
        c, pending = read_status(cfg.db_path)
    except StoreError as exc:
        raise UserError(str(exc), 2) from None
    known = {d.key for d in routing(cfg).all} if cfg.notify.enabled else set()
    print(f"outbox: {c.pending} pending, {c.failed} failed, {c.delivered} delivered")
    for r in pending:
        where = "" if r.destination in known else " (destination not configured now)"
        err = f"; last error: {scrub(r.last_error, 200)}" if r.last_error else ""
        print(
            scrub(
                f"{r.state:9} alert {r.alert_id} {r.kind} to {r.dest_name}{where}: "
                f"{r.title}; {r.attempts} attempts, next {iso_utc(r.next_try_ms)}{err}",
                1000,
            )
        )
    return 0


_SUBCOMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[..., int]]] = {
    "scan": (_scan_parser, _run_scan),
    "record": (_record_parser, _run_record),
    "snapshot": (_snapshot_parser, _run_snapshot),
    "backtest": (_backtest_parser, _run_backtest),
    "export": (_export_parser, _run_export),
    "import": (_import_parser, _run_import),
    "demo": (_demo_parser, _run_demo),
    "doctor": (_doctor_parser, _run_doctor),
    "serve": (_serve_parser, _run_serve),
    "attach": (_attach_parser, _run_attach),
    "sessions": (_sessions_parser, _run_sessions),
    "web": (_web_parser, _run_web),
    "notify": (_notify_parser, _run_notify),
}


_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@", re.I)


def _error(prefix: str, exc: Exception) -> None:
    """One line on stderr; the message may quote the exchange, a file or the user (a
    URL's password, such as a notification URL's, is masked)."""
    text = _URL_PASSWORD.sub(r"\1****@", printable(exc, 1000, one_line=True))
    print(f"quanttui: {prefix}: {text}", file=sys.stderr)


def _check_command(word: str) -> None:
    """Refuse a lowercase word close to a subcommand's name as a mistyped command.

    Symbols are also accepted in lower case (`quanttui btcusdt ethusdt`), so a word is
    taken as a command only when it is all lowercase letters and `difflib` finds a
    command name within a ratio of 0.75 (one swap or one missing letter in a name of four
    or more). A symbol ends in its quote asset (`...usdt`), which keeps it far from them.
    """
    if word.isalpha() and word.islower() and not word.endswith(("usdt", "usdc", "busd")):
        near = difflib.get_close_matches(word, list(_SUBCOMMANDS), n=1, cutoff=0.75)
        if near:
            raise UsageError(f"unknown command {word!r}; did you mean {near[0]!r}?")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    guard_logging()
    try:
        if argv and argv[0] in _SUBCOMMANDS:
            make, run = _SUBCOMMANDS[argv[0]]
            args = make().parse_args(argv[1:])
            args.argv = argv[1:]
        else:
            if argv:
                _check_command(argv[0])
            args = _live_parser().parse_args(argv)
            run = _run_live
        return run(args)
    except UsageError as exc:
        _error("error", exc)
        return 2
    except ConfigError as exc:
        _error("config error", exc)
        return 2
    except UserError as exc:
        _error("error", exc)
        return exc.code
    except KeyboardInterrupt:
        return 130
