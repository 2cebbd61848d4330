"""Running the engine apart from the views, and ending the process when told.

`EngineThread` runs an `Engine` on its own thread and event loop. The UI loop (Textual)
and the engine then share nothing but the GIL: when the terminal stops draining,
Textual's writer thread fills its bounded queue and the UI loop blocks inside
`queue.Queue.put`; ingestion, storage, bars and alerts go on, on the engine's loop. A
view talks to it only through `call` (commands, thread-safe) and a `Mailbox` (events).

`ShutdownGuard` is the promise that nothing survives its terminal: SIGTERM, SIGINT and
SIGHUP first ask the view to end as usual, and a watchdog thread makes sure the process
is gone within `deadline` seconds in any state (a blocked terminal, a shutdown stuck in
Textual's writer): it stops the engine (the writer's queue is committed) and then calls
`os._exit`, `EXIT_MARGIN_S` before the deadline; its last steps (the cleanup, a line on
stderr) are each given a bounded time, since stderr may be a pipe nobody reads. A
hang-up means the terminal is gone, so it does not wait for the view. A second signal
during a shutdown changes nothing, the exit code included.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from quanttui.engine.events import Finished

if TYPE_CHECKING:
    from quanttui.engine.core import Engine

HARD_EXIT_S = 5.0
COMMANDS_DRAIN_S = 3.0
"""After the engine has stopped, commands still at work (an export writing its files, a
backtest) get this long to end before `done` is set, within the watchdog's deadline: a
hang-up right after `e` then leaves complete CSVs, not a `.part` file cut short by the
hard exit."""
EXIT_MARGIN_S = 1.0
"""Of the deadline, kept for the cleanup, the last stderr line and the exit itself (each
bounded, 0.45 s together), with slack for a loaded machine: the watchdog exits hard at
`deadline - EXIT_MARGIN_S`, so the process is gone by `deadline`."""


class EngineThread:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="quanttui-engine", daemon=True)
        self._started = threading.Event()
        self.done = threading.Event()
        self.result: Finished | None = None
        self._commands: set[asyncio.Task[Any]] = set()

    def start(self) -> EngineThread:
        self._thread.start()
        self._started.wait()
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.result = self.loop.run_until_complete(self.engine.run())
        except BaseException as exc:  # noqa: BLE001 - reported as Finished
            self.result = Finished(1, f"{exc.__class__.__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self._settle_commands())
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.done.set()

    async def _settle_commands(self) -> None:
        if self._commands:
            await asyncio.wait(set(self._commands), timeout=COMMANDS_DRAIN_S)

    def call(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        """Run a command coroutine on the engine's loop; thread-safe. Commands still
        running when the engine stops get `COMMANDS_DRAIN_S` to end."""

        async def command() -> Any:
            task = asyncio.current_task()
            if task is not None:
                self._commands.add(task)
            try:
                return await coro
            finally:
                self._commands.discard(task)  # type: ignore[arg-type]

        return asyncio.run_coroutine_threadsafe(command(), self.loop)

    def call_method(self, name: str, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Run `Engine.<name>(*args, **kwargs)` on the engine's loop (a coroutine is
        awaited there); thread-safe. The same call as `EngineProcess.call_method`."""

        async def run() -> Any:
            result = getattr(self.engine, name)(*args, **kwargs)
            return await result if asyncio.iscoroutine(result) else result

        return self.call(run())

    def call_soon(self, name: str) -> None:
        """Run the plain engine method `name` on its loop; thread-safe, fire and forget."""
        if not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(getattr(self.engine, name))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.done.is_set()

    def stop(self, timeout: float | None = HARD_EXIT_S) -> bool:
        """Ask the engine to stop (feed closed, writer flushed); wait up to `timeout`.
        Returns whether it finished."""
        self.call_soon("stop")
        return self.done.wait(timeout)

    async def wait(self) -> Finished | None:
        """Await the engine's end from another event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.done.wait)
        return self.result


class ShutdownGuard:
    """See the module docstring. `request_exit(code)` is called from the signal handler
    (in the main thread): it must only schedule the view's exit, never block."""

    def __init__(
        self,
        runner: EngineThread,
        request_exit: Callable[[int], None],
        *,
        deadline: float = HARD_EXIT_S,
        signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP),
        cleanup: Callable[[], object] | None = None,
    ) -> None:
        self.runner = runner
        self.cleanup = cleanup
        self.request_exit = request_exit
        self.deadline = deadline
        self.signals = signals
        self.signalled: int | None = None
        self._watchdog: threading.Thread | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> ShutdownGuard:
        for sig in self.signals:
            with contextlib.suppress(ValueError, OSError):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def uninstall(self) -> None:
        """Restore the previous handlers; once a signal has started the shutdown, the
        signals stay ignored instead, so a second Ctrl-C while the process winds down
        (joining threads at exit) cannot turn a clean exit into a traceback."""
        for sig, prev in self._previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, signal.SIG_IGN if self.signalled is not None else prev)

    def hangup(self) -> None:
        """The terminal is gone (seen without a SIGHUP): as on a SIGHUP."""
        self._handler(signal.SIGHUP, None)

    def _handler(self, signum: int, frame: object) -> None:
        if self.signalled is not None:
            return
        self.signalled = signum
        hangup = signum == signal.SIGHUP
        self.arm(grace=0.0 if hangup else self.deadline)
        if not hangup:
            with contextlib.suppress(Exception):
                self.request_exit(0)

    def arm(self, grace: float | None = None) -> None:
        """Start the watchdog: the engine is stopped and the process exits hard after
        `grace` seconds at most (default, and at most: `deadline - EXIT_MARGIN_S`),
        unless it has ended by then."""
        if self._watchdog is not None:
            return
        started = time.monotonic()
        last = started + max(self.deadline - EXIT_MARGIN_S, 0.1)
        until = min(started + (self.deadline if grace is None else grace), last)

        def watch() -> None:
            self.runner.stop(timeout=max(last - time.monotonic(), 0.1))
            remaining = until - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
            result = self.runner.result
            code = result.code if result is not None else 1
            if self.cleanup is not None:
                _bounded(self.cleanup, 0.25)

            def last_words() -> None:
                sys.stderr.flush()
                drain = getattr(sys.stderr, "drain", None)  # `quanttui.terminal` relay
                if drain is not None:
                    drain(0.1)
                if result is not None and result.stats.get("unsaved"):
                    os.write(
                        2, f"quanttui: {result.stats['unsaved']:,} trades not saved\n".encode()
                    )

            _bounded(last_words, 0.2)
            os._exit(code)

        self._watchdog = threading.Thread(target=watch, name="quanttui-exit", daemon=True)
        self._watchdog.start()


def _bounded(fn: Callable[[], object], seconds: float) -> None:
    """Run `fn` on a daemon thread and wait for it `seconds` at most. On the way out a
    write to stderr can block for ever (a pipe nobody reads, a stalled terminal), and so
    can a flush waiting for the lock of a thread stuck in such a write."""

    def call() -> None:
        with contextlib.suppress(Exception):
            fn()

    t = threading.Thread(target=call, name="quanttui-exit-step", daemon=True)
    t.start()
    t.join(seconds)
