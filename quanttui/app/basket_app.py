"""`quanttui A B C ...`: the basket monitor (`BasketScreen`) on its own small app.

A basket has no hedge mode, no leg swap and no cursor, so it does not share the pair
monitor's screen or `QuantApp`'s pair bookkeeping; it shares the rest: the same `Engine`
(with `baskets=`), run in a child process as the CLI runs the pair monitor's
(`EngineProcess`) or on a thread (`EngineThread`, for tests), the same `Mailbox` (the
basket's snapshots coalesce to the latest; alerts stay in order), the alert log widget
and the engine's `export` command. The app only subscribes and renders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from textual.app import App
from textual.binding import Binding

from quanttui.app.messages import EngineWoke, stop_engine
from quanttui.app.screens.basket import BasketScreen, basket_status, basket_title
from quanttui.config import Config
from quanttui.sched import request_slice
from quanttui.textsafe import printable

if TYPE_CHECKING:
    from quanttui.feed.replay import ReplaySpec


class BasketApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "quanttui"
    BINDINGS = [Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

    def __init__(
        self,
        config: Config,
        symbols: Sequence[str],
        *,
        extra_rules: Sequence[str] = (),
        replay: ReplaySpec | None = None,
        engine_process: bool = False,
        cleanup: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.symbols = tuple(symbols)
        self.key = "+".join(self.symbols)
        self.extra_rules = list(extra_rules)
        self.replay = replay
        self.engine_process = engine_process
        self.cleanup = cleanup
        self.engine = None
        """The `Engine` when it runs on a thread of this process (not with
        `engine_process`)."""
        self.runner = None
        self.box = None
        self.feed_state = "connecting"
        self.exports: list[tuple[str, ...]] = []
        """Each `e`'s written files (or its error), for the status line and tests."""
        self._quitting = False
        title = basket_title(self.key, config.analytics, config.basket)
        self.screen_view = BasketScreen(self.key, title, config.analytics.entry_z)

    def get_default_screen(self) -> BasketScreen:
        return self.screen_view

    def on_mount(self) -> None:
        self.call_after_refresh(self._start_engine)
        self.set_interval(0.5, self._drain_anyway)
        self.call_after_refresh(request_slice)

    def _start_engine(self) -> None:
        """After the first frame: import, make and start the engine (numpy, the feed and
        the store are not imported before it, as for the pair monitor)."""
        if self._quitting:
            return
        from quanttui.engine.mailbox import Mailbox

        self.box = Mailbox(lambda: self.post_message(EngineWoke()))
        baskets = [self.symbols]
        if self.engine_process:
            from quanttui.engine.process import EngineProcess

            self.runner = EngineProcess(
                self.config,
                [],
                self.box,
                rules=self.extra_rules,
                replay=self.replay,
                baskets=baskets,
            )
        else:
            from quanttui.engine import Engine, EngineThread

            self.engine = Engine(
                self.config, [], rules=self.extra_rules, replay=self.replay, baskets=baskets
            )
            self.engine.subscribe(self.box)
            self.runner = EngineThread(self.engine)
        self.runner.start()

    def _drain_anyway(self) -> None:
        if self.box is not None and len(self.box):
            self.on_engine_woke(EngineWoke())

    def on_engine_woke(self, _msg: EngineWoke) -> None:
        if self.box is None:
            return
        from quanttui.engine import events as E

        events, latest = self.box.drain()
        view = self.screen_view
        for ev in [*events, *latest]:
            if isinstance(ev, E.BasketSnapshotEvent):
                view.show_snapshot(ev.snapshot)
            elif isinstance(ev, E.AlertEvent):
                view.show_alert(ev.alert, revised=ev.revised)
                if self.config.alerts.bell:
                    self.bell()
            elif isinstance(ev, E.AlertWithdrawn):
                view.show_alert(ev.alert, withdrawn=True)
            elif isinstance(ev, E.FeedState):
                self.feed_state = ev.state
                view.set_status(f"{ev.state.upper()} {ev.detail}".rstrip())
            elif isinstance(ev, E.Status):
                view.set_status(basket_status(self.feed_state, ev))
            elif isinstance(ev, E.ExportDone):
                self.exports.append(ev.paths if not ev.error else (ev.error,))
                if ev.error:
                    self.notify(
                        printable(ev.error), title="Export failed", severity="error", markup=False
                    )
                else:
                    self.notify(printable("\n".join(ev.paths)), title="Exported", markup=False)
            elif isinstance(ev, E.Notice):
                self.notify(printable(ev.text), title=ev.title, severity=ev.severity, markup=False)
            elif isinstance(ev, E.Finished):
                if ev.error:
                    self.notify(
                        printable(ev.error), title="Engine stopped", severity="error", markup=False
                    )
                if not self._quitting:
                    self.exit(return_code=ev.code)

    def action_export(self) -> None:
        """`e`: the basket's CSVs up to the bar it has open (`Engine.export`)."""
        if self.runner is not None:
            self.runner.call_method("export", [self.key])

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
        if self.runner is not None:
            await stop_engine(self.runner)
        if self.cleanup is not None:
            self.cleanup()
