"""What the engine tells its views: one stream of frozen events.

A view subscribes (`Engine.subscribe`) with a `Mailbox` and renders what it drains. The
engine never waits for a view: snapshots coalesce to the latest one per pair (a slow
view skips intermediate ones, the `can_replace` idea), alerts and everything else stay in
order in a bounded queue (see `quanttui.engine.mailbox`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from quanttui.model import Alert, BasketSnapshot, Snapshot


class PairLegs(Protocol):
    """What a view knows of a pair before and after the engine reports it."""

    symbol_x: str
    symbol_y: str
    timeframe: str
    window: int
    hedge: str


@dataclass(frozen=True, slots=True)
class PairInfo:
    """A pair the engine runs. `key` is fixed for the pair's life (its legs as given at
    `add_pair`); the legs, timeframe, window and hedge can change by command."""

    key: str
    symbol_x: str
    symbol_y: str
    timeframe: str
    window: int
    hedge: str


def describes(info: PairLegs, snap: Snapshot) -> bool:
    """Whether `snap` was computed with `info`'s legs and parameters (a snapshot still in
    a mailbox when the parameters changed is not)."""
    return (snap.symbol_x, snap.symbol_y, snap.timeframe, snap.window, snap.hedge) == (
        info.symbol_x,
        info.symbol_y,
        info.timeframe,
        info.window,
        info.hedge,
    )


@dataclass(frozen=True, slots=True)
class SnapshotEvent:
    """The pair's metrics at its last closed bar (or after a recompute)."""

    pair: str
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class BasketInfo:
    """A basket the engine runs (`Engine(baskets=...)`): `key` is ``A+B+C``."""

    key: str
    symbols: tuple[str, ...]
    timeframe: str
    window: int


@dataclass(frozen=True, slots=True)
class BasketSnapshotEvent:
    """A basket's metrics at its last closed bar (or after a recompute); coalesced per
    basket in a mailbox like `SnapshotEvent`."""

    pair: str
    snapshot: BasketSnapshot


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A rule fired on a settled bar. `revised` marks an alert that a recompute from the
    database added after the live bars had missed it (late trades)."""

    alert: Alert
    revised: bool = False


@dataclass(frozen=True, slots=True)
class AlertWithdrawn:
    """An alert emitted earlier that a recompute from the database contradicts: its bar
    changed and the rule's value there is different or no longer holds."""

    alert: Alert
    withdrawn_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class AlertsDelivered:
    """These alerts reached every notification destination they were routed to
    (`quanttui.notify`): an alert log marks them."""

    alerts: tuple[Alert, ...]


@dataclass(frozen=True, slots=True)
class FeedState:
    """connecting, live, reconnecting, stale, offline, replay, finished or stopped."""

    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Status:
    """The engine's counters, published every `STATUS_S` (0.25 s) and on a feed state or
    database change; a view keeps only the latest. `rate` is ticks/s over the last few seconds."""

    state: str
    detail: str
    rate: float
    ticks: int
    stored: int
    inserted: int
    leg_age: dict[str, float]
    symbols: tuple[str, ...]
    gaps_open: int
    gaps_filled: int
    malformed: int
    db_bytes: int
    replay_ms: int = 0
    speed: float | None = None
    backfill: str = ""
    backfill_done: int = 0
    backfill_total: int = 0
    db_error: str | None = None
    unsaved: int = 0
    dropped: int = 0
    per_symbol: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    alerts: int = 0
    dropped_events: int = 0
    notify: bool = False
    """Whether push notifications are on; then the outbox's counts follow."""
    notify_pending: int = 0
    notify_failed: int = 0


@dataclass(frozen=True, slots=True)
class BackfillEvent:
    """Warm-start progress: state running, done, skipped or off."""

    state: str
    done: int
    total: int
    rows: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Recomputed:
    """A pair was rebuilt from the database (start-up, a parameter change, a resync)."""

    pair: str
    info: PairInfo | BasketInfo
    bars: int
    stored_ticks: int
    resync: bool
    live_from: int = 0
    """The load's end (epoch ms, on the bar grid): the bars from this time on close live,
    and only they can fire a new alert (a resync may revise or withdraw older ones)."""


@dataclass(frozen=True, slots=True)
class PairsChanged:
    """The set of pairs changed (added or removed at run time)."""

    pairs: tuple[PairInfo, ...]
    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RulesChanged:
    pair: str
    rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a view should show the user once (severity info, warning or error)."""

    text: str
    title: str = ""
    severity: str = "information"


@dataclass(frozen=True, slots=True)
class ExportDone:
    paths: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BacktestDone:
    pair: str
    report: object | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class EngineReady:
    """The engine exists: its pairs and each pair's rules. Published by the runner in a
    process of its own (`quanttui.engine.process`), whose engine is made after the
    view's first frame; a view with the engine in-process reads them directly."""

    pairs: tuple[PairInfo, ...]
    rules: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Finished:
    """The engine stopped. `code` is the exit code a view should end with; `error` a
    one-line reason when it stopped because of one."""

    code: int = 0
    error: str | None = None
    stats: dict[str, int] = field(default_factory=dict)
    loss: str | None = None
    """When trades could not be stored: how many and their ids (one line)."""


Event = (
    SnapshotEvent
    | BasketSnapshotEvent
    | AlertEvent
    | AlertWithdrawn
    | AlertsDelivered
    | FeedState
    | Status
    | BackfillEvent
    | Recomputed
    | PairsChanged
    | RulesChanged
    | Notice
    | ExportDone
    | BacktestDone
    | EngineReady
    | Finished
)
