"""`quanttui scan` without ``--json``: the scanner screen in a small app of its own.

The data is already fetched when this starts (the CLI shows that progress on stderr);
the screen computes in a thread worker, and `r` fetches the minutes closed since and
recomputes. Meanwhile ``<symbol>@kline_1m`` streams (one connection) store each minute
as it closes and rescan when a bar of the timeframe closes; after a reconnect the
minutes missed are fetched over REST. Enter on a pair shows the command that opens it in the monitor; an app that
embeds `ScannerScreen` instead opens the monitor itself (see its `OpenPairRequested`).
"""

from __future__ import annotations

import time

from textual.app import App
from textual.binding import Binding

from quanttui.app.screens.scanner import ScannerScreen
from quanttui.feed.klines import SyncProgress, Universe
from quanttui.scanner import ScanOutcome, ScanRequest, compute, live, refresh


class ScanApp(App[int]):
    TITLE = "quanttui scan"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(
        self,
        req: ScanRequest,
        universe: Universe,
        now_ms: int,
        *,
        export_dir: str,
        live: bool = True,
    ) -> None:
        super().__init__()
        self.req = req
        self.universe = universe
        self.now_ms = now_ms
        self.export_dir = export_dir
        self.live = live
        self.opened: list[tuple[str, str]] = []
        self.minutes_closed = 0
        self._connects = 0

    def on_mount(self) -> None:
        what = ", ".join(self.req.symbols) if self.req.symbols else f"top {self.req.top}"
        self.push_screen(
            ScannerScreen(
                self._compute,
                export_dir=self.export_dir,
                refresh=self._refresh,
                on_open_pair=self._open_pair,
                title=what,
            )
        )
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
        screen = self.screen
        if self.req.span(self.now_ms)[1] != before and isinstance(screen, ScannerScreen):
            screen.run_scan(refresh=False)

    def _stream_state(self, state: str, detail: str) -> None:
        screen = self.screen
        if state == "live":
            self._connects += 1
        if isinstance(screen, ScannerScreen):
            screen.set_live(state.upper() + (f" ({detail})" if detail else ""))
            if state == "live" and self._connects > 1:
                screen.run_scan(refresh=True)  # fetch the minutes missed meanwhile

    def _compute(self) -> ScanOutcome:
        return compute(self.req, self.universe, self.now_ms)

    async def _refresh(self) -> None:
        now = int(time.time() * 1000)
        screen = self.screen

        def progress(p: SyncProgress) -> None:
            if isinstance(screen, ScannerScreen):
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

    def _open_pair(self, symbol_x: str, symbol_y: str) -> None:
        self.opened.append((symbol_x, symbol_y))
        self.notify(f"quanttui {symbol_x} {symbol_y}", title="Open this pair in the monitor")
