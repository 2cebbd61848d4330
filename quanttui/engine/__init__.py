"""The UI-free core: N pairs over one feed, one writer, alerts; views subscribe.

Layering: views (`quanttui.app`, `quanttui.modes`) -> engine -> feed/store/analytics ->
model/config. Nothing here imports textual (a test enforces it).
"""

from quanttui.engine.core import Engine, EngineError, pair_key, split_rule
from quanttui.engine.mailbox import Mailbox
from quanttui.engine.runner import EngineThread, ShutdownGuard

__all__ = [
    "Engine",
    "EngineError",
    "EngineThread",
    "Mailbox",
    "ShutdownGuard",
    "pair_key",
    "split_rule",
]
