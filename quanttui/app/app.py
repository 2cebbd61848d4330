"""The Textual app: a view of the engine.

The engine (`quanttui.engine`) runs on its own thread and event loop: feed, writer,
bars, analytics, recomputes and alerts. This app composes screens, turns keys into
engine commands (`command`) and renders the events it drains from its `Mailbox` when
woken (`EngineWoke`). A terminal that stops draining blocks only this thread; the
engine goes on storing and alerting, and `ShutdownGuard` (installed by the CLI) ends the
process within 5 s of a hang-up or SIGTERM whatever the terminal does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from rich.text import Text
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from quanttui.analytics.backtest import BacktestParams
from quanttui.analytics.live import PairParams
from quanttui.app.messages import CommandFailed, EngineWoke
from quanttui.app.screens.backtest import BacktestScreen
from quanttui.app.screens.monitor import MonitorScreen
from quanttui.config import Config
from quanttui.engine import Engine, EngineThread, Mailbox, ShutdownGuard, pair_key
from quanttui.engine.events import (
    AlertEvent,
    AlertWithdrawn,
    BacktestDone,
    ExportDone,
    FeedState,
    Finished,
    Notice,
    PairsChanged,
    Recomputed,
    RulesChanged,
    SnapshotEvent,
    Status,
)
from quanttui.export import ExportError, export_backtest
from quanttui.feed.replay import ReplaySpec
from quanttui.model import Snapshot
from quanttui.textsafe import printable


class QuantApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "quanttui"
    BINDINGS = [
        Binding("q", "quit", "Quit", tooltip="Commit what was received and quit"),
        Binding(
            "question_mark", "help", "Keys", key_display="?", tooltip="This list (? or Esc closes)"
        ),
    ]

    def __init__(
        self,
        config: Config,
        symbol_x: str,
        symbol_y: str,
        *,
        extra_rules: Iterable[str] = (),
        replay: ReplaySpec | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.replay = replay
        self.mode_label = replay.label if replay else "LIVE"
        self.engine = Engine(config, [(symbol_x, symbol_y)], rules=list(extra_rules), replay=replay)
        self.key = pair_key(symbol_x, symbol_y)
        self.runner = EngineThread(self.engine)
        self.box = self.engine.subscribe(Mailbox(self._wake))
        mon = self.engine.pairs[self.key]
        self.monitor = MonitorScreen(self.key, mon.info, self.mode_label, config.analytics.entry_z)
        self.monitor.rules = list(mon.rule_texts)
        self.backtest_screen: BacktestScreen | None = None
        self.finished: Finished | None = None
        self.feed_state = "connecting"
        self.alerts: list[AlertEvent | AlertWithdrawn] = []
        self._quitting = False

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot on screen."""
        return self.monitor.snapshot

    @property
    def params(self) -> PairParams:
        """The shown pair's parameters as the screen has asked for them."""
        i, a = self.monitor.info, self.config.analytics
        return PairParams(
            i.symbol_x, i.symbol_y, i.timeframe, i.window, i.hedge, a.kalman_delta, a.kalman_obs_var
        )

    @property
    def paused(self) -> bool:
        return self.monitor.paused

    # ----------------------------------------------------------------- engine link
    def _wake(self) -> None:
        """Called from the engine's thread; `post_message` is thread-safe."""
        self.post_message(EngineWoke())

    def get_default_screen(self) -> Screen:
        return self.monitor

    def on_mount(self) -> None:
        self.runner.start()
        self.set_interval(0.5, self._drain_anyway)

    def _drain_anyway(self) -> None:
        """A wake-up lost in a closing queue must not leave events behind."""
        if len(self.box):
            self.on_engine_woke(EngineWoke())

    def on_engine_woke(self, _msg: EngineWoke) -> None:
        events, latest = self.box.drain()
        for ev in events:
            self._dispatch(ev)
        for ev in latest:
            self._dispatch(ev)

    def _dispatch(self, ev: object) -> None:
        mon = self.monitor
        if isinstance(ev, SnapshotEvent):
            if ev.pair == mon.key:
                mon.show_snapshot(ev.snapshot)
        elif isinstance(ev, Status):
            mon.show_status(ev)
        elif isinstance(ev, AlertEvent | AlertWithdrawn):
            self.alerts.append(ev)
            del self.alerts[:-1000]
            if ev.alert.pair == self.engine.pairs[mon.key].params.pair:
                mon.show_alert(ev)
            if isinstance(ev, AlertEvent):
                a = ev.alert
                self.notify(
                    f"{a.rule}: {a.value:+.4g}",
                    title=f"Alert {a.pair}",
                    severity="warning",
                    markup=False,
                )
                if self.config.alerts.bell:
                    self.bell()
        elif isinstance(ev, FeedState):
            self.feed_state = ev.state
        elif isinstance(ev, Recomputed):
            if ev.pair == mon.key and ev.info == mon.info:
                mon.set_info(ev.info, ev.bars)
        elif isinstance(ev, RulesChanged):
            if ev.pair == mon.key:
                mon.rules = list(ev.rules)
        elif isinstance(ev, Notice):
            self.notify(
                printable(ev.text, 500),
                title=ev.title,
                severity=ev.severity if ev.severity != "information" else "information",
                markup=False,
            )
        elif isinstance(ev, ExportDone):
            if ev.error:
                self.notify(
                    printable(ev.error), title="Export failed", severity="error", markup=False
                )
            else:
                self.notify(
                    printable("\n".join(ev.paths), 1000), title="Exported", timeout=8, markup=False
                )
        elif isinstance(ev, BacktestDone):
            screen = self.backtest_screen
            if screen is not None and screen.is_mounted:
                if ev.report is None:
                    screen.show_error(ev.error or "backtest failed")
                else:
                    screen.show(ev.report)
        elif isinstance(ev, PairsChanged):
            pass
        elif isinstance(ev, Finished):
            self.finished = ev
            if ev.error and not self._quitting:
                self.exit(
                    return_code=ev.code or 1,
                    message=Text(f"quanttui: error: {printable(ev.error, 1000, one_line=True)}"),
                )

    def command(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        """Send a command to the engine; a failure is shown as a notification."""
        fut = self.runner.call(coro)
        fut.add_done_callback(self._command_done)
        return fut

    def command_call(self, fn: Callable[..., Any], *args: Any) -> None:
        async def call() -> Any:
            return fn(*args)

        self.command(call())

    def _command_done(self, fut: concurrent.futures.Future) -> None:
        if fut.cancelled() or fut.exception() is None:
            return
        self.post_message(CommandFailed(str(fut.exception())))

    def on_command_failed(self, msg: CommandFailed) -> None:
        self.notify(printable(msg.error), title="Not done", severity="error", markup=False)

    def request_exit(self, code: int = 0) -> None:
        """Thread-safe: ask the app to quit (from a signal handler)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: self.call_later(self.action_quit))

    def guard(self, cleanup: Callable[[], object] | None = None) -> ShutdownGuard:
        """SIGTERM/SIGINT/SIGHUP handling and the hard-exit watchdog, for a real run; and a
        watch on Textual's output thread: if it died (EIO/EPIPE on the terminal), the
        terminal is gone, so the process ends as on a hang-up."""
        guard = ShutdownGuard(self.runner, self.request_exit, cleanup=cleanup)

        def watch_terminal() -> None:
            while not self.runner.done.is_set():
                driver = self._driver
                writer = getattr(driver, "_writer_thread", None)
                if writer is not None and writer.ident is not None and not writer.is_alive():
                    if not self._quitting:
                        guard.arm(0.0)
                    return
                self.runner.done.wait(0.5)

        threading.Thread(target=watch_terminal, name="quanttui-tty-watch", daemon=True).start()
        return guard

    def action_help(self) -> None:
        """`?`: the keys of the screen on top (`HelpScreen`), or close that list."""
        from quanttui.app.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
        else:
            self.push_screen(HelpScreen(self.screen))

    # ----------------------------------------------------------------- backtest
    def open_backtest(self, key: str) -> None:
        p = self.engine.pairs[key].params
        self.backtest_screen = BacktestScreen(
            f" BACKTEST  {p.symbol_x} -> {p.symbol_y}  {p.timeframe}  W={p.window}  {p.hedge}"
        )
        self.push_screen(self.backtest_screen)
        self.action_run_backtest()

    def action_run_backtest(self) -> None:
        a, b = self.config.analytics, self.config.backtest
        hedge = self.engine.pairs[self.key].params.hedge
        params = BacktestParams(a.entry_z, a.exit_z, b.stop_z or None, b.fee_bps, hedge == "log")
        self.command(self.engine.backtest(self.key, params))

    def action_export_backtest(self) -> None:
        screen = self.backtest_screen
        if screen is None or screen.report is None:
            self.notify("no backtest to export", severity="warning")
            return
        report = screen.report
        out = self.config.export.dir

        def write() -> None:
            try:
                done = export_backtest(report, out)
            except ExportError as exc:
                self.engine.publish(ExportDone((), str(exc)))
                return
            self.engine.publish(ExportDone(tuple(f"{p} ({n:,} rows)" for p, n in done.values())))

        self.run_worker(write, thread=True, group="export", exit_on_error=False)

    # ----------------------------------------------------------------- quit
    async def action_quit(self) -> None:
        """Stop the engine (the writer's queue is committed), then leave."""
        if self._quitting:
            return
        self._quitting = True
        self.runner.call_soon(self.engine.stop)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self.runner.wait()
        result = self.runner.result
        self.exit(return_code=result.code if result is not None else 0)

    async def on_unmount(self) -> None:
        """Any other way out (an exception, a test's teardown) still flushes the writer."""
        if not self.runner.done.is_set() and self.runner._thread.is_alive():
            self.runner.call_soon(self.engine.stop)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self.runner.wait()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for b in MonitorScreen.BINDINGS:
            if isinstance(b, Binding) and b.action in MonitorScreen.ACTION_HELP:
                yield SystemCommand(
                    f"{b.description} ({b.key_display or b.key})",
                    MonitorScreen.ACTION_HELP[b.action],
                    lambda action=b.action: self.monitor.run_action(action),
                )
