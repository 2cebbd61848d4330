"""The UI-free core: N pairs over one feed, one writer, alerts; views subscribe.

Layering: views (`quanttui.app`, `quanttui.modes`) -> engine -> feed/store/analytics ->
model/config. Nothing here imports textual (a test enforces it).

The names below are loaded on first use, so that a view can import
`quanttui.engine.events` for its first frame without importing the engine (numpy, the
feed, the store) with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quanttui.engine.core import Engine, EngineError, pair_key, split_rule
    from quanttui.engine.mailbox import Mailbox
    from quanttui.engine.runner import EngineThread, ShutdownGuard

_WHERE = {
    "Engine": "core",
    "EngineError": "core",
    "pair_key": "core",
    "split_rule": "core",
    "Mailbox": "mailbox",
    "EngineThread": "runner",
    "ShutdownGuard": "runner",
}

__all__ = [
    "Engine",
    "EngineError",
    "EngineThread",
    "Mailbox",
    "ShutdownGuard",
    "pair_key",
    "split_rule",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'quanttui.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"quanttui.engine.{where}"), name)
    globals()[name] = value
    return value
