"""App-wide messages, named in the past tense."""

from __future__ import annotations

from dataclasses import dataclass

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
