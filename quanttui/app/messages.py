"""App-wide messages, named in the past tense, and the apps' way of stopping their engine."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class EngineWoke(Message):
    """The engine's mailbox went from empty to non-empty (posted from its thread); a
    backlog collapses to one."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EngineWoke)


@dataclass
class CommandFailed(Message):
    """An engine command raised; `error` is one line."""

    error: str


STOP_WAIT_S = 10.0


async def stop_engine(runner: Any) -> int:
    """Ask the engine (a thread, a process or a server's view) to stop, which commits the
    writer's queue, and wait up to `STOP_WAIT_S` for it; its exit code, 0 if it gave
    none."""
    if runner.alive:
        runner.call_soon("stop")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_WAIT_S):
                await runner.wait()
    result = runner.result
    return result.code if result is not None else 0
