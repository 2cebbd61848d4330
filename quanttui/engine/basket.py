"""One basket inside the engine: its live pipeline, rules and resync state.

`BasketMonitor` has the shape of `PairMonitor` where the engine drives it (trades, the
clock, `closed`, `history_metrics`, recompute through `LiveBasket.resume`), so a basket
goes through the same settled-bar, resync and alert machinery (`AlertBook`) as a pair.
It has no funding state and no stationarity tests: the Johansen test runs on every bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quanttui.alerts import AlertEngine
from quanttui.analytics.basket import (
    BasketParams,
    LiveBasket,
    basket_metrics,
    build_basket_snapshot,
)
from quanttui.engine.alertbook import AlertBook
from quanttui.engine.events import BasketInfo, BasketSnapshotEvent
from quanttui.engine.pair import BarRules, ResyncTimer
from quanttui.model import BASKET_METRIC_NAMES, BasketSnapshot, Tick

SERIES_BARS = 600
"""Bars of z-score and spread a basket snapshot carries for the chart."""


@dataclass
class BasketMonitor(BarRules):
    metric_values = staticmethod(basket_metrics)

    key: str
    params: BasketParams
    book: AlertBook
    rule_texts: list[str]
    live: LiveBasket | None = None
    generation: int = 0
    pending: list[Tick] = field(default_factory=list)
    pending_dropped: int = 0
    resync: ResyncTimer = field(default_factory=ResyncTimer)
    snapshot: BasketSnapshot | None = None
    stored_ticks: int = 0
    funding: None = None
    marks_dirty: bool = False
    stat_running: bool = False
    metric_names: tuple[str, ...] = BASKET_METRIC_NAMES

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.params.symbols

    @property
    def info(self) -> BasketInfo:
        p = self.params
        return BasketInfo(self.key, p.symbols, p.timeframe, p.window)

    def reset_funding(self, intervals: dict[str, int] | None = None) -> None:
        """Baskets keep no funding state (the backtest reads the stored settlements)."""

    def build_snapshot(self, now_ms: int) -> BasketSnapshot | None:
        if self.live is None:
            return None
        self.snapshot = build_basket_snapshot(self.live.engine, SERIES_BARS)
        self.marks_dirty = False
        return self.snapshot

    def snapshot_event(self, snap: BasketSnapshot) -> BasketSnapshotEvent:
        return BasketSnapshotEvent(self.key, snap)

    def settled_end(self) -> int | None:
        """The start of the bucket the live builder has open (`PairMonitor.settled_end`)."""
        live = self.live
        if live is not None and live.builder.current is not None:
            return live.builder.current
        s = self.snapshot
        if s is not None and s.time_ms is not None and s.symbols == self.params.symbols:
            return s.time_ms + self.params.timeframe_ms
        return None

    def wants_stationarity(self) -> bool:
        return False


def make_basket_rules(texts: list[str], key: str, engine_args: dict) -> AlertEngine:
    from quanttui.alerts import build_engine

    return build_engine(key, texts, names=BASKET_METRIC_NAMES, **engine_args)


def basket_book(texts: list[str], key: str, engine_args: dict, horizon: int) -> AlertBook:
    return AlertBook(make_basket_rules(texts, key, engine_args), horizon)
