"""The basket monitor: the Johansen test, weights, spread and z of a basket of 3+ legs.

It renders `BasketSnapshot`s and alert events that `quanttui.app.basket_app.BasketApp`
(a basket alone) or `QuantApp` (a basket row of the watchlist: `ListedBasketScreen`, Esc
goes back) hands it; it never reaches into the engine. The table's rows are `quanttui.report.
basket_rows`, the same text `quanttui snapshot A B C` prints, set cell by cell only where
the text changed; the z-score history is a sparkline (one column per bar, the newest at
the right) with the entry threshold in its title.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Sparkline, Static

from quanttui.app.widgets.loglines import LogLines
from quanttui.config import AnalyticsConfig, BasketConfig
from quanttui.model import Alert, BasketSnapshot, iso_utc
from quanttui.report import basket_rows, metric_value_text
from quanttui.textsafe import printable

if TYPE_CHECKING:
    from quanttui.engine.events import Status

ALERT_LOG_ROWS = 500
COLUMNS = ("metric", "value", "90%", "95%", "99%")


def _alert_key(a: Alert) -> str:
    return f"{a.ts_ms} {a.rule} {a.value:.17g}"


def basket_title(key: str, a: AnalyticsConfig, b: BasketConfig, mode: str = "") -> str:
    """The screen's first line: the basket, bar size, window and the test's keys."""
    return (
        (f"{mode}  " if mode else "")
        + f"BASKET {key}  {a.timeframe}  W={a.window}  Johansen det_order={b.det_order} "
        f"k_ar_diff={b.k_ar_diff}  {'log prices' if b.log_prices else 'prices'}"
    )


def basket_status(feed_state: str, st: Status) -> str:
    """The status line from the engine's `Status`: feed state, ticks/s, stored, alerts."""
    return f"{feed_state.upper()}  {st.rate:,.0f} ticks/s  {st.stored:,} stored  {st.alerts} alerts"


class BasketScreen(Screen):
    BINDINGS = [
        Binding("e", "app.export", "Export", tooltip="Write the basket's CSVs"),
        Binding("c", "clear_alerts", "Clear log", tooltip="Clear the alert log"),
        Binding("q", "app.quit", "Quit", tooltip="Commit what was received and quit"),
    ]

    def __init__(self, key: str, title: str, entry_z: float) -> None:
        super().__init__()
        self.key = key
        self.title_text = title
        self.entry_z = entry_z
        self.snapshot: BasketSnapshot | None = None
        self._cells: dict[tuple[int, int], str] = {}

    def compose(self) -> ComposeResult:
        yield Static(printable(self.title_text, one_line=True), id="basket-title")
        yield Static("CONNECTING", id="basket-status")
        with Horizontal(id="basket-body"):
            with Vertical(id="basket-left"):
                yield Sparkline([], id="basket-z")
                yield LogLines([9, None], limit=ALERT_LOG_ROWS, id="basket-alerts")
            yield DataTable(id="basket-metrics", show_cursor=False, zebra_stripes=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#basket-metrics", DataTable)
        for c in COLUMNS:
            table.add_column(c, key=c)
        self.query_one("#basket-alerts", LogLines).border_title = "alerts (UTC)"
        self.query_one("#basket-z", Sparkline).border_title = f"z-score (entry ±{self.entry_z:g})"

    def set_status(self, text: str) -> None:
        self.query_one("#basket-status", Static).update(printable(text, 300, one_line=True))

    def show_snapshot(self, snap: BasketSnapshot) -> None:
        """The table and the z history of the basket's latest closed bar."""
        if snap.key != self.key:
            return
        self.snapshot = snap
        rows = basket_rows(snap.as_json())
        table = self.query_one("#basket-metrics", DataTable)
        with self.app.batch_update():
            while table.row_count < len(rows):
                table.add_row(*([""] * len(COLUMNS)), key=str(table.row_count))
            for r, row in enumerate(rows):
                for c, text in enumerate(row):
                    if self._cells.get((r, c)) != text:
                        self._cells[(r, c)] = text
                        table.update_cell(str(r), COLUMNS[c], text)
            z = [v for v in snap.series_zscore if math.isfinite(v)]
            spark = self.query_one("#basket-z", Sparkline)
            spark.data = z[-400:]
            last = "—" if snap.zscore is None else f"{snap.zscore:+.3f}"
            spark.border_subtitle = f"z {last}, {len(z)} bars"

    def metric_text(self, label: str) -> str | None:
        """The value shown in the row labelled `label` (tests and screen readers)."""
        table = self.query_one("#basket-metrics", DataTable)
        for r in range(table.row_count):
            if self._cells.get((r, 0)) == label:
                return self._cells.get((r, 1))
        return None

    def show_alert(self, a: Alert, *, revised: bool = False, withdrawn: bool = False) -> None:
        log = self.query_one("#basket-alerts", LogLines)
        when = (iso_utc(a.ts_ms)[11:19], "")
        text = f"{a.rule} ({metric_value_text(a.metric, a.value)})"
        if withdrawn:
            cell = (printable(f"WITHDRAWN {text}"), "strike dim")
            if not log.replace(_alert_key(a), (when, cell)):
                log.add((when, cell))
            return
        label = text + (" (revised)" if revised else "")
        log.add((when, (printable(label), "")), key=_alert_key(a))

    def action_clear_alerts(self) -> None:
        self.query_one("#basket-alerts", LogLines).clear()


class ListedBasketScreen(BasketScreen):
    """The basket screen opened from a watchlist row (`QuantApp.open_pair`): Esc goes back
    to the watchlist, `e` writes this basket's CSVs (`Engine.export`)."""

    BINDINGS = [
        Binding("escape", "app.back", "Back"),
        Binding("e", "export_basket", "Export", tooltip="Write the basket's CSVs"),
    ]

    def action_export_basket(self) -> None:
        self.app.export_basket(self.key)
