"""Command line: parse arguments and config, pick a mode, map failures to exit codes.

The plain form `quanttui SYMBOL_X SYMBOL_Y [options]` starts the live app on one pair;
`quanttui X/Y X/Y ...` (two or more pairs), `--watchlist NAME` (a `[watchlists]` entry of
the config) and `quanttui` alone (the last watchlist used, kept in the database) open
the watchlist. A first word that names a subcommand (`record`, `snapshot`, ...) selects
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
from quanttui.config import HEDGES, TIMEFRAMES, Config, ConfigError, load_config
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


def _add_analytics(p: argparse.ArgumentParser, *, z: bool = True) -> None:
    p.add_argument("--timeframe", choices=list(TIMEFRAMES), help="bar size")
    p.add_argument("--window", type=int, metavar="W", help="rolling window in bars")
    p.add_argument("--hedge", choices=list(HEDGES), help="hedge-ratio estimator")
    if z:
        p.add_argument("--entry-z", type=float, metavar="Z", help="entry |z| threshold")
        p.add_argument("--exit-z", type=float, metavar="Z", help="exit |z| threshold")


def _add_pair(p: argparse.ArgumentParser) -> None:
    p.add_argument("symbol_x", metavar="SYMBOL_X", help="reference leg X, e.g. BTCUSDT")
    p.add_argument("symbol_y", metavar="SYMBOL_Y", help="traded leg Y, regressed on X")


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


def _live_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui",
        description=(
            "Live pairs-trading monitor for Binance USD-M futures. "
            "SYMBOL_Y is regressed on SYMBOL_X: y = a + b*x."
        ),
        epilog="subcommands: quanttui {demo,record,snapshot,export,backtest,import,scan,doctor,serve,attach,sessions} --help",
    )
    p.add_argument("--version", action="version", version=f"quanttui {__version__}")
    p.add_argument(
        "pairs",
        nargs="*",
        metavar="PAIR",
        help="SYMBOL_X SYMBOL_Y (y regressed on x), or pairs X/Y X/Y ... (two or more open "
        "the watchlist); none: the last watchlist used",
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
    _add_pair(p)
    _add_config(p)
    _add_db(p)
    _add_analytics(p, z=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="quanttui export", description="Write the pair's CSVs from stored data.")
    _add_pair(p)
    _add_config(p)
    _add_db(p)
    _add_analytics(p, z=False)
    p.add_argument("--out", metavar="DIR", help="output directory (default: [export] dir)")
    return p


def _run_export(args: argparse.Namespace) -> int:
    sx, sy = pair(args.symbol_x, args.symbol_y)
    cfg = _build_config(args)
    from quanttui.modes import offline

    return offline.export(cfg, sx, sy, args.out or cfg.export.dir)


def _backtest_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui backtest", description="Backtest the z-score strategy on stored data."
    )
    _add_pair(p)
    _add_config(p)
    _add_db(p)
    _add_analytics(p)
    p.add_argument("--stop-z", type=float, metavar="Z", help="stop-out |z|, 0 = none ([backtest])")
    p.add_argument("--fee-bps", type=float, metavar="BPS", help="fee per leg, bps ([backtest])")
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
        ("export", "dir"): get("export_dir"),
        ("feed", "ws_url"): get("ws_url"),
        ("feed", "rest_url"): get("rest_url"),
        ("feed", "backfill"): get("backfill"),
    }
    return load_config(get("config"), overrides)


def _run_live(args: argparse.Namespace) -> int:
    if args.pairs:
        parse_pairs(args.pairs)  # a usage error before the config is read
    cfg = _build_config(args)
    pairs, listed, name = live_pairs(cfg, args.pairs, args.watchlist)
    _check_rules(cfg, args.alert)
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
    )


def live_pairs(
    cfg: Config, words: Sequence[str], name: str | None
) -> tuple[list[tuple[str, str]], bool, str | None]:
    """The pairs to run, whether they open the watchlist, and its name.

    * `--watchlist NAME`: the config's list NAME, then the pairs given that it lacks;
    * pairs given: those; the watchlist when there are two or more;
    * nothing: the last watchlist used, as saved in the database
      (`quanttui.store.state`); a usage error when there is none."""
    given = parse_pairs(words) if words else []
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
        return given, len(given) > 1, None
    from quanttui.store.db import StoreError
    from quanttui.store.state import load_last

    try:
        saved = load_last(cfg.db_path)
    except StoreError as exc:
        raise UserError(str(exc), 2) from None
    if saved is None or not saved.pairs:
        raise UsageError(
            f"no pairs given and no watchlist saved in {cfg.db_path}: give SYMBOL_X SYMBOL_Y, "
            "pairs X/Y X/Y ..., or --watchlist NAME"
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
) -> int:
    """Live from the exchange, or (with `sources`) a replay into a temporary session
    database that is deleted afterwards (see `quanttui.feed.replay.scratch_dir`); the
    sources are never written. A looping replay (the demo) first checks that one pass of
    the recording can fill the window."""
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
        if spec is None:
            from quanttui.modes import serve

            served = serve.server_for(cfg)
            if served is not None:
                if headless_mode:
                    from quanttui.modes import headless

                    return headless.attach(served)
                return _attach_app(cfg, served, list(pairs))
        _prepare_db(cfg)
        if headless_mode:
            from quanttui.modes import headless

            return headless.run(
                cfg,
                pairs,
                extra_rules=rules,
                replay=spec,
                cleanup=lambda: tmp and shutil.rmtree(tmp, ignore_errors=True),
            )
        from quanttui.app.app import QuantApp
        from quanttui.terminal import watch_hangup

        if watchlist and spec is None:
            _remember_watchlist(cfg, watchlist_name, pairs)
        # the engine is imported and started after the first frame; the app installs the
        # signal guard then
        app = QuantApp(
            cfg,
            pairs=pairs,
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


def _remember_watchlist(cfg: Config, name: str | None, pairs: list[tuple[str, str]]) -> None:
    """The watchlist opened becomes the last one used (restored by a bare `quanttui`)."""
    import sqlite3

    from quanttui.store.db import StoreError
    from quanttui.store.state import save_last

    try:
        save_last(cfg.db_path, name, pairs)
    except (StoreError, sqlite3.Error) as exc:
        raise UserError(f"{cfg.db_path}: cannot save the watchlist ({exc})", 2) from None


def _check_rules(cfg: Config, extra: list[str]) -> None:
    if not cfg.alerts.rules and not extra:
        return  # (the engine is not imported for nothing: see QuantApp's defer_engine)
    from quanttui.alerts import RuleError, parse_rule
    from quanttui.engine.core import split_rule

    for text in [*cfg.alerts.rules, *extra]:
        try:
            parse_rule(
                split_rule(text)[1], entry_z=cfg.analytics.entry_z, exit_z=cfg.analytics.exit_z
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
    sx, sy = pair(args.symbol_x, args.symbol_y)
    cfg = _build_config(args)
    from quanttui.modes import offline

    return offline.snapshot(cfg, sx, sy, as_json=args.json)


def _run_backtest(args: argparse.Namespace) -> int:
    sx, sy = pair(args.symbol_x, args.symbol_y)
    cfg = _build_config(args)
    from quanttui.modes import offline

    return offline.backtest(cfg, sx, sy, args)


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
    return scan.run(cfg, req, as_json=args.json, out_dir=args.out)


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
        help="SYMBOL_X SYMBOL_Y, or pairs X/Y X/Y ...; none: the last watchlist used",
    )
    p.add_argument("--watchlist", metavar="NAME", help="the config's watchlist NAME")
    _add_config(p)
    _add_db(p)
    _add_net(p)
    _add_analytics(p)
    p.add_argument("--export-dir", metavar="DIR", help="directory for CSV exports")
    p.add_argument("--alert", action="append", default=[], metavar="RULE", help="extra alert rule")
    p.add_argument(
        "--print-systemd-unit",
        action="store_true",
        help="print a systemd user unit that runs this server, and exit",
    )
    return p


def _run_serve(args: argparse.Namespace) -> int:
    if args.pairs:
        parse_pairs(args.pairs)
    cfg = _build_config(args)
    pairs, _listed, name = live_pairs(cfg, args.pairs, args.watchlist)
    _check_rules(cfg, args.alert)
    from quanttui.modes import serve

    if args.print_systemd_unit:
        print(serve.systemd_unit(sys.argv[2:] if len(sys.argv) > 2 else [], pairs), end="")
        return 0
    _prepare_db(cfg)
    return serve.serve(lambda: _build_config(args), pairs, args.alert, name)


def _attach_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="quanttui attach",
        description="Attach a view to the running server ('quanttui serve') for the database.",
    )
    p.add_argument("pairs", nargs="*", metavar="PAIR", help="pairs to open (added if missing)")
    _add_config(p)
    _add_db(p)
    p.add_argument("--headless", action="store_true", help="print the alerts as JSON lines")
    return p


def _run_attach(args: argparse.Namespace) -> int:
    given = parse_pairs(args.pairs) if args.pairs else []
    cfg = _build_config(args)
    from quanttui.modes import serve

    path = serve.attach_path(cfg) if args.db is None else serve.server_for(cfg)
    if path is None:
        raise UserError(f"no quanttui server is running for {cfg.db_path}")
    if args.headless:
        from quanttui.modes import headless

        return headless.attach(path)
    return _attach_app(cfg, path, given)


def _attach_app(cfg: Config, path: Path, pairs: list[tuple[str, str]]) -> int:
    from quanttui.app.app import QuantApp
    from quanttui.server.client import probe
    from quanttui.terminal import watch_hangup

    welcome = probe(path)
    if welcome is None:
        raise UserError(f"the server at {path} does not answer")
    served = [tuple(k.split("/", 1)) for k in welcome.get("pairs", []) if "/" in k]
    legs = pairs or served
    if not legs:
        raise UserError("the server watches no pair; give one: quanttui attach X/Y")
    watch = len(set(legs) | set(served)) > 1 and not (len(pairs) == 1)
    app = QuantApp(
        cfg,
        pairs=legs,
        watchlist=watch,
        engine_process=True,
        guard=True,
        attach=path,
    )
    try:
        with watch_hangup(app.hangup):
            app.run()
    finally:
        if app.shutdown_guard is not None:
            app.shutdown_guard.uninstall()
    return app.return_code or 0


def _sessions_parser() -> argparse.ArgumentParser:
    return _Parser(prog="quanttui sessions", description="List the running quanttui servers.")


def _run_sessions(_args: argparse.Namespace) -> int:
    from quanttui.modes import serve

    return serve.sessions()


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
}


def _error(prefix: str, exc: Exception) -> None:
    """One line on stderr; the message may quote the exchange, a file or the user."""
    print(f"quanttui: {prefix}: {printable(exc, 1000, one_line=True)}", file=sys.stderr)


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
