"""The Textual app: a view of the engine.

The engine (`quanttui.engine`) runs apart from the UI: feed, writer, bars, analytics,
recomputes and alerts. As the CLI runs it (`engine_process=True`) it is in a process of
its own (`EngineProcess`), so neither the GIL nor the cyclic GC's collections of the
engine's objects ever hold up a frame; otherwise (tests, embedding) on a thread of this
process (`EngineThread`). The app talks to either the same way: it composes screens,
turns keys into engine commands (`command`: an engine method's name and arguments) and
renders the events it drains from its `Mailbox` when woken (`EngineWoke`). A terminal
that stops draining blocks only the UI; the engine goes on storing and alerting, and
`ShutdownGuard` (installed by the CLI, or by the app with `guard=True`) ends the process
within 5 s of a hang-up or SIGTERM whatever the terminal does.

One pair opens its monitor; several (or any basket) open the watchlist, from which each
pair's monitor, or a basket's screen (`ListedBasketScreen`), opens on the same engine
(one screen per opened row, kept while it is watched); events are routed by key
(``X/Y`` for a pair, ``A+B+C`` for a basket). The engine, numpy and the charts are imported
where first used, not here: with `defer_engine=True` (as the CLI runs it) the first
frame is on the terminal before the engine is even imported (`_start_deferred`).
"""

from __future__ import annotations

import concurrent.futures
import importlib
import threading
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen

from quanttui.app.heap import GcPacer, freeze_heap
from quanttui.app.messages import CommandFailed, EngineWoke, stop_engine
from quanttui.app.screens.watchlist import (
    PlannedPair,
    WatchlistScreen,
    is_basket,
    listed_monitor,
)
from quanttui.config import Config, parse_watchlist_entry
from quanttui.sched import request_slice
from quanttui.textsafe import printable

if TYPE_CHECKING:
    from pathlib import Path

    from quanttui.analytics.live import PairParams
    from quanttui.app.screens.backtest import BacktestScreen
    from quanttui.app.screens.basket import ListedBasketScreen
    from quanttui.app.screens.monitor import MonitorScreen
    from quanttui.engine import Engine, EngineThread, Mailbox, ShutdownGuard
    from quanttui.engine.events import (
        AlertEvent,
        AlertsDelivered,
        AlertWithdrawn,
        BasketInfo,
        Finished,
        PairInfo,
        PairsChanged,
        Status,
    )
    from quanttui.engine.process import EngineProcess
    from quanttui.feed.replay import ReplaySpec
    from quanttui.model import Snapshot


def _events() -> ModuleType:
    """`quanttui.engine.events`, imported on first use (see the module docstring)."""
    return importlib.import_module("quanttui.engine.events")


def pair_key(x: str, y: str) -> str:
    return f"{x}/{y}"


class QuantApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "quanttui"
    BINDINGS = [
        Binding("q", "quit", "Quit", tooltip="Commit what was received and quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding(
            "question_mark", "help", "Keys", key_display="?", tooltip="This list (? or Esc closes)"
        ),
    ]

    def __init__(
        self,
        config: Config,
        symbol_x: str | None = None,
        symbol_y: str | None = None,
        *,
        pairs: Sequence[tuple[str, str]] = (),
        baskets: Sequence[Sequence[str]] = (),
        extra_rules: Iterable[str] = (),
        replay: ReplaySpec | None = None,
        watchlist: bool | None = None,
        watchlist_name: str | None = None,
        defer_engine: bool = False,
        engine_process: bool = False,
        guard: bool = False,
        cleanup: Callable[[], object] | None = None,
        attach: Path | None = None,
        label: str | None = None,
    ) -> None:
        """One pair (`symbol_x`, `symbol_y`, or one in `pairs`) opens its monitor; two or
        more, or any of `baskets` (3+ legs each, rows ``A+B+C``), or `watchlist=True` open
        the watchlist. With no pair at all the engine starts with the first pair opened
        (`open_pair`), as from the scanner.

        `defer_engine`: the engine is imported and made after the first frame.
        `engine_process`: the engine runs in a child process (`EngineProcess`); `engine`
        is then None, and the engine is reached through `runner` only.
        `guard`: install `guard(cleanup)` as soon as the engine exists (the CLI does it
        itself otherwise).
        `attach`: the socket of a running server (`quanttui serve`): this app is one of its
        views (`RemoteEngine`); the pairs given that the server lacks are added to it.
        `label`: the header's mode (an attached view gets the server's: LIVE, DEMO)."""
        super().__init__()
        self.config = config
        self.replay = replay
        self.mode_label = label or (replay.label if replay else "LIVE")
        self.extra_rules = list(extra_rules)
        legs = list(pairs) or ([(symbol_x, symbol_y)] if symbol_x and symbol_y else [])
        baskets = [tuple(b) for b in baskets]
        self.engine: Engine | None = None
        """The engine itself when it runs on a thread of this process, else None."""
        self.runner: EngineThread | EngineProcess | None = None
        self.engine_process = engine_process or attach is not None
        self.attach_path = attach
        self._attach_legs: list[tuple[str, str]] = []
        self._attach_baskets: list[tuple[str, ...]] = []
        self.box: Mailbox | None = None
        self.monitors: dict[str, MonitorScreen] = {}
        self.basket_screens: dict[str, ListedBasketScreen] = {}
        """A basket's screen, made when its row is first opened and kept while watched."""
        self.pair_infos: dict[str, PairInfo | BasketInfo] = {}
        self.pair_rules: dict[str, list[str]] = {}
        self.status: Status | None = None
        self._snapshot_seen: set[str] = set()
        """Pairs with a snapshot shown: the first of each asks for `freeze_heap`, since an
        attached view gets no `Recomputed` for pairs the server loaded before it came."""
        self.watchlist_name = watchlist_name
        self.watchlist_screen: WatchlistScreen | None = None
        self.persist_watchlist = replay is None
        """Save the watchlist's pairs in the database when they change (not in a replay,
        whose database is a scratch copy)."""
        self.key: str | None = None
        self.monitor: MonitorScreen | None = None
        self.backtest_screen: BacktestScreen | None = None
        self.finished: Finished | None = None
        self.feed_state = "connecting"
        self.alerts: list[AlertEvent | AlertWithdrawn | AlertsDelivered] = []
        self.gc_pacer = GcPacer()
        self._quitting = False
        self._want_guard, self._cleanup = guard, cleanup
        self.shutdown_guard: ShutdownGuard | None = None
        listed = watchlist if watchlist is not None else len(legs) > 1 or bool(baskets)
        self._deferred: list[tuple[str, str]] = []
        self._deferred_baskets: list[tuple[str, ...]] = []
        if (legs or baskets) and defer_engine:
            self._deferred, self._deferred_baskets = legs, baskets
            self._plan(legs, baskets)
        elif legs or baskets:
            self._make_engine(legs, baskets)
        if listed:
            self.watchlist_screen = WatchlistScreen(
                list(self.pair_infos.values()),
                self.mode_label,
                config.analytics.entry_z,
                watchlist_name,
            )
        elif legs:
            from quanttui.app.screens.monitor import MonitorScreen

            self.key = pair_key(*legs[0])
            self.monitor = self._monitor_for(self.key, MonitorScreen)

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot on screen (of the last monitor opened)."""
        return self.monitor.snapshot if self.monitor is not None else None

    @property
    def params(self) -> PairParams:
        """The shown pair's parameters as the screen has asked for them."""
        from quanttui.analytics.live import PairParams

        assert self.monitor is not None
        i, a = self.monitor.info, self.config.analytics
        return PairParams(
            i.symbol_x, i.symbol_y, i.timeframe, i.window, i.hedge, a.kalman_delta, a.kalman_obs_var
        )

    @property
    def paused(self) -> bool:
        return self.monitor is not None and self.monitor.paused

    # ----------------------------------------------------------------- engine link
    def _wake(self) -> None:
        """Called from the engine's thread; `post_message` is thread-safe."""
        self.post_message(EngineWoke())

    def get_default_screen(self) -> Screen:
        if self.watchlist_screen is not None:
            return self.watchlist_screen
        if self.monitor is not None:
            return self.monitor
        return Screen()

    def on_mount(self) -> None:
        if self.runner is not None:
            self.runner.start()
        elif self._deferred:
            self.call_after_refresh(self._start_deferred)
        self.set_interval(0.5, self._drain_anyway)
        self.gc_pacer.start(self)
        self.call_after_refresh(request_slice)

    def _start_deferred(self) -> None:
        """After the first frame: import, make and start the engine."""
        legs, self._deferred = self._deferred, []
        baskets, self._deferred_baskets = self._deferred_baskets, []
        if (legs or baskets) and not self._quitting:
            self._make_engine(legs, baskets)

    def _plan(self, legs: Sequence[tuple[str, str]], baskets: Sequence[Sequence[str]]) -> None:
        """Rows for what the engine will report (its `PairInfo` and `BasketInfo`)."""
        from quanttui.engine.events import BasketInfo

        a = self.config.analytics
        for x, y in legs:
            key = pair_key(x, y)
            if key not in self.pair_infos:
                self.pair_infos[key] = PlannedPair(key, x, y, a.timeframe, a.window, a.hedge)
        for b in baskets:
            key = "+".join(b)
            if key not in self.pair_infos:
                self.pair_infos[key] = BasketInfo(key, tuple(b), a.timeframe, a.window)

    def _engine_ready(self, infos: Iterable[PairInfo], rules: dict[str, list[str]]) -> None:
        """The engine's pairs and rules replace what the screens were made with."""
        infos = list(infos)
        served = {i.key for i in infos}
        for x, y in self._attach_legs:
            if pair_key(x, y) not in served:
                self.command("add_pair", x, y)
        for b in self._attach_baskets:
            if "+".join(b) not in served:
                self.command("add_basket", list(b))
        self._attach_legs, self._attach_baskets = [], []
        for info in infos:
            self.pair_infos[info.key] = info
            self.pair_rules[info.key] = list(rules.get(info.key, []))
        if self.watchlist_screen is not None:
            self.watchlist_screen.set_pairs(self.watched_infos())
        for key, mon in self.monitors.items():
            if key in self.pair_infos:
                mon.rules = list(self.pair_rules.get(key, []))
                mon.set_info(self.pair_infos[key])
                mon.refresh_bindings()

    @property
    def started(self) -> bool:
        """The engine has been made (it may still be starting in its process)."""
        return self.runner is not None

    def _drain_anyway(self) -> None:
        """A wake-up lost in a closing queue must not leave events behind."""
        if self.box is not None and len(self.box):
            self.on_engine_woke(EngineWoke())

    def on_engine_woke(self, _msg: EngineWoke) -> None:
        if self.box is None:
            return
        events, latest = self.box.drain()
        for ev in events:
            self._dispatch(ev)
        for ev in latest:
            self._dispatch(ev)

    def _dispatch(self, ev: object) -> None:
        wl = self.watchlist_screen
        E = _events()
        if isinstance(ev, E.SnapshotEvent):
            if ev.pair not in self._snapshot_seen:
                self._snapshot_seen.add(ev.pair)
                freeze_heap()
            mon = self.monitors.get(ev.pair)
            if mon is not None:
                mon.show_snapshot(ev.snapshot)
            if wl is not None:
                wl.show_snapshot(ev.pair, ev.snapshot)
        elif isinstance(ev, E.BasketSnapshotEvent):
            bs = self.basket_screens.get(ev.pair)
            if bs is not None and bs.is_mounted:
                bs.show_snapshot(ev.snapshot)
            if wl is not None:
                wl.show_snapshot(ev.pair, ev.snapshot)
        elif isinstance(ev, E.Status):
            self.status = ev
            shown = self.screen_stack[-1] if self.screen_stack else None
            if any(shown is b for b in self.basket_screens.values()):
                from quanttui.app.screens.basket import basket_status

                shown.set_status(basket_status(self.feed_state, ev))
            elif any(shown is m for m in self.monitors.values()):
                shown.show_status(ev)
            elif self.monitor is not None and self.monitor.is_mounted:
                self.monitor.show_status(ev)
            if wl is not None:
                wl.show_status(ev)
        elif isinstance(ev, E.AlertEvent | E.AlertWithdrawn):
            self.alerts.append(ev)
            del self.alerts[:-1000]
            key = self.alert_pair(ev.alert)
            mon = self.monitors.get(key) if key is not None else None
            if mon is not None and mon.is_mounted:
                mon.show_alert(ev)
            bs = self.basket_screens.get(key) if key is not None else None
            if bs is not None and bs.is_mounted:
                _basket_alert(bs, ev)
            if wl is not None:
                wl.show_alert(key, ev)
            if isinstance(ev, E.AlertEvent):
                a = ev.alert
                if not self.watchlist_visible():
                    self.notify(
                        f"{a.rule}: {a.value:+.4g}",
                        title=f"Alert {a.pair}",
                        severity="warning",
                        markup=False,
                    )
                if self.config.alerts.bell:
                    self.bell()
        elif isinstance(ev, E.AlertsDelivered):
            self.alerts.append(ev)
            del self.alerts[:-1000]
            for a in ev.alerts:
                self._show_delivered(a, wl)
        elif isinstance(ev, E.FeedState):
            self.feed_state = ev.state
        elif isinstance(ev, E.Recomputed):
            freeze_heap()
            self.pair_infos[ev.pair] = ev.info
            mon = self.monitors.get(ev.pair)
            if mon is not None and ev.info == mon.info:
                mon.set_info(ev.info, ev.bars)
            if wl is not None:
                wl.set_info(ev.pair, ev.info, ev.bars)
        elif isinstance(ev, E.RulesChanged):
            self.pair_rules[ev.pair] = list(ev.rules)
            mon = self.monitors.get(ev.pair)
            if mon is not None:
                mon.rules = list(ev.rules)
        elif isinstance(ev, E.Notice):
            self.notify(
                printable(ev.text, 500),
                title=ev.title,
                severity=ev.severity if ev.severity != "information" else "information",
                markup=False,
            )
        elif isinstance(ev, E.ExportDone):
            if ev.error:
                self.notify(
                    printable(ev.error), title="Export failed", severity="error", markup=False
                )
            else:
                self.notify(
                    printable("\n".join(ev.paths), 1000), title="Exported", timeout=8, markup=False
                )
        elif isinstance(ev, E.BacktestDone):
            screen = self.backtest_screen
            if screen is not None and screen.is_mounted:
                if ev.report is None:
                    screen.show_error(ev.error or "backtest failed")
                else:
                    screen.show(ev.report)
        elif isinstance(ev, E.PairsChanged):
            self._pairs_changed(ev)
        elif isinstance(ev, E.EngineReady):
            self._engine_ready(ev.pairs, ev.rules)
        elif isinstance(ev, E.Finished):
            self.finished = ev
            if ev.error and not self._quitting:
                self.exit(
                    return_code=ev.code or 1,
                    message=Text(f"quanttui: error: {printable(ev.error, 1000, one_line=True)}"),
                )

    def command(self, name: str, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Call the engine method `name` (`Engine.add_pair`, `set_params`, ...) wherever
        the engine runs; a failure is shown as a notification."""
        assert self.runner is not None
        fut = self.runner.call_method(name, *args, **kwargs)
        fut.add_done_callback(self._command_done)
        if name == "export" and self.is_web:
            from quanttui.app.web import offer_export

            fut.add_done_callback(lambda done: offer_export(self, done))
        return fut

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
        from quanttui.engine import ShutdownGuard

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
        from quanttui.app.screens.backtest import BacktestScreen

        p = self.pair_infos[key]
        self.backtest_screen = BacktestScreen(
            f" BACKTEST  {p.symbol_x} -> {p.symbol_y}  {p.timeframe}  W={p.window}  {p.hedge}"
        )
        self.push_screen(self.backtest_screen)
        self.action_run_backtest()

    def action_run_backtest(self) -> None:
        from quanttui.analytics.backtest import BacktestParams

        a, b = self.config.analytics, self.config.backtest
        hedge = self.pair_infos[self.key].hedge
        params = BacktestParams(a.entry_z, a.exit_z, b.stop_z or None, b.fee_bps, hedge == "log")
        self.command("backtest", self.key, params)

    def action_export_backtest(self) -> None:
        screen = self.backtest_screen
        if screen is None or screen.report is None:
            self.notify("no backtest to export", severity="warning")
            return
        from quanttui.engine.events import ExportDone
        from quanttui.export import ExportError, export_backtest

        report = screen.report
        out = self.config.export.dir
        box = self.box
        assert box is not None

        def write() -> None:
            try:
                done = export_backtest(report, out)
            except ExportError as exc:
                box.put(ExportDone((), str(exc)))
                return
            box.put(ExportDone(tuple(f"{p} ({n:,} rows)" for p, n in done.values())))

        self.run_worker(write, thread=True, group="export", exit_on_error=False)

    # ----------------------------------------------------------------- quit
    async def action_quit(self) -> None:
        """Stop the engine (the writer's queue is committed), then leave."""
        if self._quitting:
            return
        self._quitting = True
        if self.runner is None:
            self.exit(return_code=0)
            return
        self.exit(return_code=await stop_engine(self.runner))

    async def on_unmount(self) -> None:
        """Any other way out (an exception, a test's teardown) still flushes the writer."""
        self.gc_pacer.stop()
        if self.runner is not None:
            await stop_engine(self.runner)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from quanttui.app.screens.monitor import MonitorScreen

        yield from super().get_system_commands(screen)
        if not isinstance(screen, MonitorScreen | WatchlistScreen):
            return
        for b in type(screen).BINDINGS:
            if isinstance(b, Binding) and b.action in screen.ACTION_HELP:
                yield SystemCommand(
                    f"{b.description} ({b.key_display or b.key})",
                    screen.ACTION_HELP[b.action],
                    lambda action=b.action: screen.run_action(action),
                )

    # ----------------------------------------------------------------- pairs and navigation
    def _make_engine(
        self, legs: Sequence[tuple[str, str]], baskets: Sequence[Sequence[str]] = ()
    ) -> None:
        """The engine (with `legs` and `baskets`), its thread or process (started on
        mount, or now if already mounted), this view's mailbox, and the signal guard when
        asked for."""
        from quanttui.engine.mailbox import Mailbox

        self.box = Mailbox(self._wake)
        baskets = [tuple(b) for b in baskets]
        if self.engine_process:
            from quanttui.engine.process import EngineProcess

            self._plan(legs, baskets)
            if self.attach_path is not None:
                from quanttui.server.client import RemoteEngine

                self._attach_legs = list(legs)
                self._attach_baskets = baskets
                self.runner = RemoteEngine(self.attach_path, self.box)
            else:
                self.runner = EngineProcess(
                    self.config,
                    legs,
                    self.box,
                    rules=self.extra_rules,
                    replay=self.replay,
                    baskets=baskets,
                )
        else:
            from quanttui.engine import Engine, EngineThread

            self.engine = Engine(
                self.config, legs, rules=self.extra_rules, replay=self.replay, baskets=baskets
            )
            self.runner = EngineThread(self.engine)
            self.engine.subscribe(self.box)
            infos = self.engine.pair_infos()
            self._engine_ready(infos, {i.key: self.engine.rules(i.key) for i in infos})
        if self._want_guard and self.shutdown_guard is None:
            self.shutdown_guard = self.guard(self._cleanup)
            self.shutdown_guard.install()
        if self.is_running:
            self.runner.start()

    def hangup(self) -> None:
        """The terminal is gone (`quanttui.terminal.watch_hangup`): as on a SIGHUP; before
        the engine exists there is nothing to flush."""
        if self.shutdown_guard is not None:
            self.shutdown_guard.hangup()
        else:
            self.request_exit(129)

    def _monitor_for(self, key: str, kind: type[MonitorScreen] | None = None) -> MonitorScreen:
        """The pair's monitor, made on first use and kept (installed) while the pair is
        watched, so its alert log and charts survive leaving it."""
        mon = self.monitors.get(key)
        if mon is None:
            kind = kind or listed_monitor()
            info = self.pair_infos[key]
            mon = kind(key, info, self.mode_label, self.config.analytics.entry_z)
            mon.rules = list(self.pair_rules.get(key, []))
            self.monitors[key] = mon
        return mon

    def open_pair(self, key: str) -> None:
        """Show the pair's full monitor, or the basket's screen, over the current screen
        (Esc comes back)."""
        if not self.started:
            self.notify("starting…", timeout=2)
            return
        if key not in self.pair_infos:
            self.notify(f"{key} is not watched", severity="warning", markup=False)
            return
        if is_basket(self.pair_infos[key]):
            self.open_basket(key)
            return
        mon = self._monitor_for(key)
        self.key, self.monitor = key, mon
        name = f"monitor:{key}"
        if not self.is_screen_installed(name):
            self.install_screen(mon, name)
        first = not mon.is_mounted

        def shown(_result: object = None) -> None:
            if first:
                for ev in self.alerts:
                    if isinstance(ev, _events().AlertsDelivered):
                        for a in ev.alerts:
                            if self.alert_pair(a) == key:
                                mon.show_delivered(a)
                    elif self.alert_pair(ev.alert) == key:
                        mon.show_alert(ev)
            mon.show_status(self.status)

        self.push_screen(name)
        self.call_after_refresh(shown)

    def open_basket(self, key: str) -> None:
        """The basket's screen (`ListedBasketScreen`), made on first use and kept while
        the basket is watched; its first frame shows the latest snapshot the watchlist
        holds and the basket's alerts of this session."""
        from quanttui.app.screens.basket import ListedBasketScreen, basket_status, basket_title

        screen = self.basket_screens.get(key)
        if screen is None:
            title = basket_title(key, self.config.analytics, self.config.basket, self.mode_label)
            screen = ListedBasketScreen(key, title, self.config.analytics.entry_z)
            self.basket_screens[key] = screen
        name = f"basket:{key}"
        if not self.is_screen_installed(name):
            self.install_screen(screen, name)
        first = not screen.is_mounted

        def shown(_result: object = None) -> None:
            wl = self.watchlist_screen
            row = wl.rows.get(key) if wl is not None else None
            snap = row.snapshot if row is not None else None
            if snap is not None and snap is not screen.snapshot:
                screen.show_snapshot(snap)
            if first:
                for ev in self.alerts:
                    if not isinstance(ev, _events().AlertsDelivered) and ev.alert.pair == key:
                        _basket_alert(screen, ev)
            if self.status is not None:
                screen.set_status(basket_status(self.feed_state, self.status))

        self.push_screen(name)
        self.call_after_refresh(shown)

    def export_basket(self, key: str) -> None:
        """`e` on a basket's screen: its CSVs (`Engine.export`)."""
        if self.started:
            self.command("export", [key])

    def action_back(self) -> None:
        """Esc on a monitor opened from the watchlist or the scanner."""
        if len(self.screen_stack) > 1:
            self.pop_screen()
            if self.watchlist_screen is not None and self.screen is self.watchlist_screen:
                self.watchlist_screen.show_status(self.status)

    def watchlist_visible(self) -> bool:
        """The watchlist is on screen (maybe under a dialog): its log shows every alert,
        so no notification is needed."""
        stack = [s for s in self.screen_stack if not isinstance(s, ModalScreen)]
        return (
            self.watchlist_screen is not None and bool(stack) and stack[-1] is self.watchlist_screen
        )

    def _show_delivered(self, a, wl) -> None:
        key = self.alert_pair(a)
        mon = self.monitors.get(key) if key is not None else None
        if mon is not None and mon.is_mounted:
            mon.show_delivered(a)
        if wl is not None:
            wl.show_delivered(a)

    def alert_pair(self, alert) -> str | None:
        """The engine pair an alert belongs to: the one whose legs it names (a swapped
        pair names its legs the other way round)."""
        hit = None
        for key, info in self.pair_infos.items():
            if is_basket(info):
                if key == alert.pair:
                    return key
                continue
            if f"{info.symbol_x}/{info.symbol_y}" == alert.pair:
                return key
            if key == alert.pair:
                hit = key
        return hit

    def request_add(self, legs: Sequence[str]) -> concurrent.futures.Future:
        """Ask the engine to watch a pair (two legs) or a basket (three or more); the
        future fails with its one-line reason."""
        if len(legs) == 2:
            return self.request_add_pair(legs[0], legs[1])
        if self.runner is None:
            fut: concurrent.futures.Future = concurrent.futures.Future()
            if self._deferred or self._deferred_baskets:
                fut.set_exception(RuntimeError("still starting: try again in a moment"))
                return fut
            self._make_engine([], [tuple(legs)])
            fut.set_result("+".join(legs))
            return fut
        return self.runner.call_method("add_basket", list(legs))

    def request_add_pair(self, x: str, y: str) -> concurrent.futures.Future:
        """Ask the engine to watch X/Y; the future fails with its one-line reason."""
        if self.runner is None:
            fut: concurrent.futures.Future = concurrent.futures.Future()
            if self._deferred or self._deferred_baskets:
                fut.set_exception(RuntimeError("still starting: try again in a moment"))
                return fut
            self._make_engine([(x, y)])
            fut.set_result(pair_key(x, y))
            return fut
        return self.runner.call_method("add_pair", x, y)

    def remove_pair(self, key: str) -> None:
        if self.started:
            self.command("remove_pair", key)

    def export_pairs(self, keys: Sequence[str]) -> None:
        """Every pair's CSVs and the summary, in one timestamped folder."""
        if self.started:
            self.command("export", list(keys), watchlist=True)

    def _rule_names(self, key: str) -> tuple[str, ...]:
        """The metrics a rule of the row `key` may name (a pair's or a basket's)."""
        from quanttui.model import BASKET_METRIC_NAMES, METRIC_NAMES

        return BASKET_METRIC_NAMES if is_basket(self.pair_infos[key]) else METRIC_NAMES

    def _rule_metric(self, text: str) -> str | None:
        from quanttui.alerts import RuleError, parse_rule
        from quanttui.model import BASKET_METRIC_NAMES, METRIC_NAMES

        a = self.config.analytics
        names = tuple(dict.fromkeys(METRIC_NAMES + BASKET_METRIC_NAMES))
        try:
            return parse_rule(text, entry_z=a.entry_z, exit_z=a.exit_z, names=names).metric
        except RuleError:
            return None

    def common_rules(self) -> list[str]:
        """The rules every watched row that can take them has: a rule on a pair metric
        is common when every pair has it, one on a basket metric when every basket has
        it (a metric of both, such as `zscore`, when every row has it)."""
        keys = list(self.pair_infos)
        if not keys:
            return []
        seen = list(dict.fromkeys(r for k in keys for r in self.pair_rules.get(k, [])))
        out = []
        for r in seen:
            metric = self._rule_metric(r)
            takers = [k for k in keys if metric is None or metric in self._rule_names(k)]
            if takers and all(r in self.pair_rules.get(k, []) for k in takers):
                out.append(r)
        return out

    def add_rule_all(self, text: str) -> bool:
        from quanttui.alerts import RuleError, parse_rule

        a = self.config.analytics
        names = tuple(dict.fromkeys(n for k in self.pair_infos for n in self._rule_names(k)))
        try:
            rule = parse_rule(
                text, entry_z=a.entry_z, exit_z=a.exit_z, **({"names": names} if names else {})
            )
        except RuleError as exc:
            self.notify(str(exc), title="Rule not added", severity="error", markup=False)
            return False
        if rule.text in self.common_rules():
            self.notify(f"already there: {rule.text}", severity="warning", markup=False)
            return False
        for key in self.pair_infos:
            if rule.metric not in self._rule_names(key):
                continue
            rules = self.pair_rules.setdefault(key, [])
            if rule.text not in rules:
                rules.append(rule.text)
        if self.started:
            self.command("add_rule", rule.text, None)
        self.notify(f"rule added to every pair: {rule.text}", markup=False)
        return True

    def remove_rule_all(self, text: str) -> bool:
        if text not in self.common_rules():
            return False
        for rules in self.pair_rules.values():
            if text in rules:
                rules.remove(text)
        if self.started:
            self.command("remove_rule", text, None)
        self.notify(f"rule removed from every pair: {text}", markup=False)
        return True

    def _pairs_changed(self, ev: PairsChanged) -> None:
        keys = {i.key for i in ev.pairs}
        for info in ev.pairs:
            self.pair_infos.setdefault(info.key, info)
        for key in [k for k in self.pair_infos if k not in keys]:
            del self.pair_infos[key]
            self.pair_rules.pop(key, None)
            mon = self.monitors.pop(key, None)
            if self.key == key:
                self.key, self.monitor = None, None
            name = f"monitor:{key}"
            if mon is not None and self.is_screen_installed(name) and mon not in self.screen_stack:
                self.uninstall_screen(name)
            bs = self.basket_screens.pop(key, None)
            name = f"basket:{key}"
            if bs is not None and self.is_screen_installed(name) and bs not in self.screen_stack:
                self.uninstall_screen(name)
        if self.watchlist_screen is not None:
            self.watchlist_screen.set_pairs(self.watched_infos())
            self.save_watchlist()

    def watched_infos(self) -> list[PairInfo | BasketInfo]:
        """The rows the watchlist shows: here every pair and basket of the engine."""
        return list(self.pair_infos.values())

    def watched_keys(self) -> list[str]:
        return list(self.pair_infos)

    def save_watchlist(self) -> None:
        """The watchlist's pairs and baskets as the last one used (`quanttui.store.state`)."""
        from quanttui.store.state import META_KEY, encode

        if not self.persist_watchlist or not self.started:
            return
        entries = [parse_watchlist_entry(k) for k in self.watched_keys()]
        self.command("set_meta", META_KEY, encode(self.watchlist_name, entries))


def _basket_alert(screen: ListedBasketScreen, ev: AlertEvent | AlertWithdrawn) -> None:
    """An alert event on a basket's screen (a withdrawal strikes its line through)."""
    if hasattr(ev, "withdrawn_ms"):
        screen.show_alert(ev.alert, withdrawn=True)
    else:
        screen.show_alert(ev.alert, revised=ev.revised)
