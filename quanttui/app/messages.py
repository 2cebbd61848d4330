"""App-wide messages, named in the past tense."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from quanttui.analytics.backtest import BacktestReport
from quanttui.analytics.live import LivePair
from quanttui.analytics.stationarity import Stationarity
from quanttui.model import Alert, Snapshot


@dataclass
class SnapshotReady(Message):
    """A new snapshot; a backlog collapses to the latest one."""

    snapshot: Snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady)


@dataclass
class StationarityComputed(Message):
    """ADF and coint for the window ending at bar `ts_ms` (from a thread worker)."""

    ts_ms: int
    generation: int
    result: Stationarity


@dataclass
class PairRebuilt(Message):
    """A pipeline recomputed from stored data (start-up or a parameter change)."""

    pair: LivePair
    generation: int
    end_ms: int
    stored_ticks: int
    seen: set[tuple[str, int]]


@dataclass
class AlertsFired(Message):
    alerts: list[Alert]


@dataclass
class ExportFinished(Message):
    paths: list[str]
    error: str | None = None


@dataclass
class BacktestFinished(Message):
    """A backtest over the stored history (from a thread worker)."""

    report: BacktestReport | None
    error: str | None = None


@dataclass
class BackfillFinished(Message):
    """The warm start ended: done (with `rows` fetched), skipped or off."""

    state: str
    rows: int
    detail: str
