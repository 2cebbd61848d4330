"""`quanttui scan` without ``--json``: the scanner screen, and the monitor behind it.

The data is already fetched when this starts (the CLI shows that progress on stderr);
the screen computes in a thread worker, and `r` fetches the minutes closed since and
recomputes. Meanwhile ``<symbol>@kline_1m`` streams (one connection) store each minute
as it closes and rescan when a bar of the timeframe closes; after a reconnect the
minutes missed are fetched over REST.

From the ranking, Enter opens the pair's full monitor in this process, on the same
database: the first pair opened starts the engine (`QuantApp`, which this app is), later
ones join it on its one connection; Esc comes back to the scanner. `w` adds the pair to
the watchlist saved in the database (the one a bare `quanttui` reopens) and `l` shows
that watchlist live, on the same engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time

from textual.binding import Binding
from textual.screen import Screen

from quanttui.app.app import QuantApp
from quanttui.app.screens.monitor import WINDOWS
from quanttui.app.screens.scanner import ScannerScreen
from quanttui.app.screens.watchlist import WatchlistScreen
from quanttui.config import TIMEFRAMES, Config, entry_key, load_config, parse_watchlist_entry
from quanttui.engine import pair_key
from quanttui.engine.events import PairsChanged
from quanttui.feed.klines import SyncProgress, Universe
from quanttui.scanner import ScanOutcome, ScanRequest, compute, live, refresh
from quanttui.store.state import load_last, save_last


class WatchScannerScreen(ScannerScreen):
    """The scanner with a key that adds the pair under the cursor to the watchlist."""

    BINDINGS = [
        Binding("w", "watch", "Watch"),
        Binding("l", "app.show_watchlist", "Watchlist"),
    ]

    def selected_pair(self) -> tuple[str, str] | None:
        """(x, y) of the ranking row under the cursor (y regressed on x)."""
        if self.ranked is None:
            return None
        from textual.widgets import DataTable

        row = self.query_one("#scan-table", DataTable).cursor_row
        if not 0 <= row < len(self.ranked.rows):
            return None
        p = self.ranked.rows[row]
        return p.x, p.y

    def action_watch(self) -> None:
        pair = self.selected_pair()
        if pair is None:
            self.notify("no pair under the cursor", severity="warning")
            return
        self.app.watch_pair(*pair)


class ScanWatchlistScreen(WatchlistScreen):
    """The watchlist over the scanner: Esc goes back to it."""

    BINDINGS = [Binding("escape", "app.back", "Scanner")]


class ScanApp(QuantApp):
    TITLE = "quanttui scan"

    def __init__(
        self,
        req: ScanRequest,
        universe: Universe,
        now_ms: int,
        *,
        export_dir: str,
        live: bool = True,
        config: Config | None = None,
        guard: bool = False,
        engine_process: bool = False,
    ) -> None:
        """`config` runs the monitor (feed URLs, analytics, database); without it, the
        defaults with the request's database and URLs. `guard`: install the signal
        handling of `QuantApp.guard` once an engine runs (the CLI does).
        `engine_process`: as `QuantApp`'s."""
        cfg = config or load_config(
            use_user_file=False,
            overrides={
                ("storage", "db"): str(req.db_path),
                ("feed", "rest_url"): req.rest_url,
                ("feed", "ws_url"): req.ws_url,
                ("export", "dir"): export_dir,
            },
        )
        super().__init__(cfg, guard=guard, engine_process=engine_process)
        self.req = req
        self.universe = universe
        self.now_ms = now_ms
        self.export_dir = export_dir
        self.live = live
        self.opened: list[tuple[str, str]] = []
        self.minutes_closed = 0
        self._connects = 0
        saved = load_last(req.db_path) if req.db_path.exists() else None
        self.watch_keys: list[str] = [entry_key(p) for p in saved.pairs] if saved else []
        self.watchlist_name = saved.name if saved else None
        what = ", ".join(req.symbols) if req.symbols else f"top {req.top}"
        self.scanner = WatchScannerScreen(
            self._compute,
            export_dir=export_dir,
            refresh=self._refresh,
            on_open_pair=self._open_pair,
            title=what,
        )

    def get_default_screen(self) -> Screen:
        return self.scanner

    def on_mount(self) -> None:
        super().on_mount()
        if self.live and self.universe.symbols:
            self.run_worker(
                live(self.req, self.universe, self._minute_closed, self._stream_state),
                name="live",
                group="scan-live",
                exit_on_error=False,
            )

    def _minute_closed(self, close_ms: int) -> None:
        """A minute's klines are stored: rescan when that closes a bar of the timeframe."""
        self.minutes_closed += 1
        before = self.req.span(self.now_ms)[1]
        self.now_ms = max(self.now_ms, close_ms)
        if self.req.span(self.now_ms)[1] != before and self.scanner.is_mounted:
            self.scanner.run_scan(refresh=False)

    def _stream_state(self, state: str, detail: str) -> None:
        if state == "live":
            self._connects += 1
        if self.scanner.is_mounted:
            self.scanner.set_live(state.upper() + (f" ({detail})" if detail else ""))
            if state == "live" and self._connects > 1:
                self.scanner.run_scan(refresh=True)  # fetch the minutes missed meanwhile

    def _compute(self) -> ScanOutcome:
        return compute(self.req, self.universe, self.now_ms)

    async def _refresh(self) -> None:
        now = int(time.time() * 1000)
        screen = self.scanner

        def progress(p: SyncProgress) -> None:
            screen.show_status(
                f"klines {p.symbols_done}/{p.symbols_total} symbols, {p.rows:,} rows"
                + (f" ({p.detail})" if p.detail else "")
            )

        def warning(text: str) -> None:
            self.notify(text, severity="warning")

        self.universe = await refresh(
            self.req, now, universe=self.universe, on_progress=progress, on_warning=warning
        )
        self.now_ms = now

    # ----------------------------------------------------------------- the engine
    def _ensure(self, pairs: list[tuple[str, ...]]) -> None:
        """The engine runs these pairs (and baskets, 3+ legs): started with them, or they
        join it."""
        legs = [(p[0], p[1]) for p in pairs if len(p) == 2]
        baskets = [p for p in pairs if len(p) > 2]
        if not self.started:
            self._make_engine(legs, baskets)
            return
        for x, y in legs:
            if pair_key(x, y) not in self.pair_infos:
                self.command("add_pair", x, y)
        for b in baskets:
            if entry_key(b) not in self.pair_infos:
                self.command("add_basket", list(b))

    def _open_pair(self, symbol_x: str, symbol_y: str) -> None:
        """Enter on a ranking row: the pair's monitor (the engine starts with it)."""
        self.opened.append((symbol_x, symbol_y))
        key = pair_key(symbol_x, symbol_y)
        if not self.started or key in self.pair_infos:
            self._ensure([(symbol_x, symbol_y)])
            self.open_pair(key)
            self.call_after_refresh(self._as_scanned, key)
            return
        fut = self.request_add_pair(symbol_x, symbol_y)
        self.notify(f"starting {symbol_x} -> {symbol_y}…", timeout=2, markup=False)
        self.run_worker(self._added(key, fut), group="open-pair", exit_on_error=False)

    async def _added(self, key: str, fut: concurrent.futures.Future) -> None:
        try:
            await asyncio.wrap_future(fut)
        except Exception as exc:  # noqa: BLE001 - the engine's one-line reason
            self.notify(str(exc), title="Not opened", severity="error", markup=False)
            return
        if key not in self.pair_infos:
            self._drain_anyway()
        self.open_pair(key)
        self.call_after_refresh(self._as_scanned, key)

    def scan_params(self) -> dict[str, object]:
        """The monitor's parameters closest to the scan's: its bar size (15m, which the
        monitor lacks, becomes 5m), the log hedge, and a window of the lookback's bars
        (at most the monitor's largest, 5000), so the monitor's hedge is the row's."""
        tf = self.req.timeframe if self.req.timeframe in TIMEFRAMES else "5m"
        bars = self.req.lookback_ms // TIMEFRAMES[tf]
        return {"timeframe": tf, "hedge": "log", "window": max(WINDOWS[0], min(bars, WINDOWS[-1]))}

    def _as_scanned(self, key: str) -> None:
        """Enter on a row shows the pair as the scan measured it, not the defaults."""
        mon = self.monitor
        if mon is None or mon.key != key:
            return
        want = self.scan_params()
        changes = {k: v for k, v in want.items() if getattr(mon.info, k) != v}
        if changes:
            mon.set_params(**changes)
            self.notify(
                f"{want['timeframe']} bars, log hedge, W={want['window']}, as scanned "
                "(t, h, [ and ] change them)",
                timeout=4,
            )

    def watch_pair(self, symbol_x: str, symbol_y: str) -> None:
        """`w`: the pair joins the saved watchlist (and the engine, if it runs)."""
        key = pair_key(symbol_x, symbol_y)
        if key in self.watch_keys:
            self.notify(f"{symbol_x} -> {symbol_y} is already on the watchlist", markup=False)
            return
        self.watch_keys.append(key)
        if self.started:
            self._ensure([(symbol_x, symbol_y)])
            self.save_watchlist()
        else:
            pairs = [parse_watchlist_entry(k) for k in self.watch_keys]
            try:
                save_last(self.req.db_path, self.watchlist_name, pairs)
            except (OSError, sqlite3.Error, ValueError) as exc:
                self.notify(str(exc), title="Watchlist not saved", severity="error")
        self.notify(
            f"{symbol_x} -> {symbol_y} added to the watchlist ({len(self.watch_keys)} pairs; "
            "l shows it)",
            markup=False,
        )

    def action_show_watchlist(self) -> None:
        if not self.watch_keys:
            self.notify("the watchlist is empty: w adds the pair under the cursor")
            return
        self._ensure([parse_watchlist_entry(k) for k in self.watch_keys])
        if self.watchlist_screen is None:
            self.watchlist_screen = ScanWatchlistScreen(
                self.watched_infos(),
                self.mode_label,
                self.config.analytics.entry_z,
                self.watchlist_name,
            )
            self.install_screen(self.watchlist_screen, "watchlist")
        self.push_screen("watchlist")
        self.watchlist_screen.show_status(self.status)

    def watched_infos(self):
        return [i for k, i in self.pair_infos.items() if k in self.watch_keys]

    def watched_keys(self) -> list[str]:
        return list(self.watch_keys)

    def _pairs_changed(self, ev: PairsChanged) -> None:
        keys = {i.key for i in ev.pairs}
        removed = [k for k in self.watch_keys if k in self.pair_infos and k not in keys]
        self.watch_keys = [k for k in self.watch_keys if k not in removed]
        super()._pairs_changed(ev)
