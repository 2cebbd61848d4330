"""The pair scanner screen: a correlation heatmap of the universe above a ranked, sortable
table of its ordered pairs.

The screen owns no data source. It is given `compute`, a blocking callable that returns
a `ScanOutcome` (load + scan; run in a thread worker, never on the UI loop), and
optionally `refresh`, a coroutine that brings the klines up to date (run in an async
worker before each recompute). Sorting re-ranks the whole universe in a thread worker and
shows the first `TOP_ROWS` rows, so the table stays small however big the universe.

Enter on a row posts `ScannerScreen.OpenPairRequested(symbol_x, symbol_y)` (the row's
``y`` is regressed on ``x``, as in ``quanttui X Y``) and calls `on_open_pair`, if given;
the embedding app decides what opening a pair means.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from quanttui.analytics.scan import PairStats, rank_pairs
from quanttui.app.widgets.heatmap import CorrelationHeatmap, legend, short_name
from quanttui.scan_report import fmt, fmt_half_life, fmt_p
from quanttui.scanner import ScanOutcome

TOP_ROWS = 200
Q_ALPHA = 0.05

# sort key (analytics.scan.SORT_KEYS) -> (column label, descending at first press)
SORTS: dict[str, tuple[str, bool]] = {
    "qvalue": ("q", False),
    "half_life": ("half-life", False),
    "abs_z": ("|z|", True),
    "corr": ("corr", True),
    "beta": ("hedge b", False),
    "carry_bps_day": ("carry bp/d", True),
}
COLUMNS = (
    ("rank", "#"),
    ("y", "Y"),
    ("x", "X"),
    ("qvalue", "q"),
    ("half_life", "half-life"),
    ("abs_z", "|z|"),
    ("corr", "corr"),
    ("beta", "hedge b"),
    ("hurst", "Hurst"),
    ("cross", "x/day"),
    ("carry_bps_day", "carry bp/d"),
)


@dataclass(frozen=True, slots=True)
class Ranked:
    key: str
    descending: bool
    rows: list[PairStats]


class ScannerScreen(Screen[None]):
    BINDINGS = [
        Binding("1", "sort('qvalue')", "Sort q"),
        Binding("2", "sort('half_life')", "half-life"),
        Binding("3", "sort('abs_z')", "|z|"),
        Binding("4", "sort('corr')", "corr"),
        Binding("5", "sort('beta')", "hedge"),
        Binding("6", "sort('carry_bps_day')", "carry"),
        Binding("e", "export", "Export CSV"),
        Binding("r", "rescan", "Rescan"),
        Binding("tab", "app.focus_next", "Heatmap/table", show=False),
    ]
    DEFAULT_CSS = """
    ScannerScreen #scan-title { height: 1; background: $primary; }
    ScannerScreen #scan-status { height: 1; background: $panel; }
    ScannerScreen #scan-heatmap { height: 40%; min-height: 5; }
    ScannerScreen #scan-legend { height: 1; }
    ScannerScreen #scan-table { height: 1fr; min-height: 5; }
    """

    class OpenPairRequested(Message):
        """Enter on a ranking row: open ``symbol_y`` regressed on ``symbol_x``."""

        def __init__(self, symbol_x: str, symbol_y: str) -> None:
            super().__init__()
            self.symbol_x = symbol_x
            self.symbol_y = symbol_y

    def __init__(
        self,
        compute: Callable[[], ScanOutcome],
        *,
        export_dir: str | Path,
        refresh: Callable[[], Awaitable[object]] | None = None,
        on_open_pair: Callable[[str, str], None] | None = None,
        title: str = "",
    ) -> None:
        super().__init__()
        self._compute = compute
        self._refresh = refresh
        self.export_dir = Path(export_dir)
        self.on_open_pair = on_open_pair
        self._title_text = f"SCAN {title}"
        self._live = ""
        self.outcome: ScanOutcome | None = None
        self.ranked: Ranked | None = None
        self.sort_key = "qvalue"
        self.descending = False

    def compose(self) -> ComposeResult:
        yield Static(Text(self._title_text, style="bold"), id="scan-title")
        yield Static("scanning…", id="scan-status")
        yield CorrelationHeatmap(id="scan-heatmap")
        yield Static(legend(self.app.no_color), id="scan-legend")
        yield DataTable(id="scan-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#scan-table", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self.run_scan(refresh=False)

    # ---------------------------------------------------------------- workers
    def run_scan(self, *, refresh: bool = True) -> None:
        """Refresh the klines (when a refresher was given), then recompute."""
        self.show_status("fetching klines…" if refresh and self._refresh else "scanning…")
        if refresh and self._refresh is not None:
            self.run_worker(
                self._refresh(),
                name="refresh",
                group="scan-refresh",
                exclusive=True,
                exit_on_error=False,
            )
        else:
            self._start_compute()

    def _start_compute(self) -> None:
        self.run_worker(
            self._compute,
            name="compute",
            group="scan",
            thread=True,
            exclusive=True,
            exit_on_error=False,
        )

    def _start_rank(self) -> None:
        outcome, key, desc = self.outcome, self.sort_key, self.descending
        if outcome is None:
            return

        def rank() -> Ranked:
            rows = rank_pairs(
                outcome.result,
                bar_ms=outcome.meta.bar_ms,
                key=key,
                descending=desc,
                limit=TOP_ROWS,
            )
            return Ranked(key, desc, rows)

        self.run_worker(
            rank, name="rank", group="scan-rank", thread=True, exclusive=True, exit_on_error=False
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        w = event.worker
        if event.state == WorkerState.ERROR:
            self.show_status(f"{w.name} failed: {w.error}", error=True)
            return
        if event.state != WorkerState.SUCCESS:
            return
        if w.name == "refresh":
            self._start_compute()
        elif w.name == "compute":
            self._show_outcome(w.result)
            self._start_rank()
        elif w.name == "rank":
            self._show_ranked(w.result)
        elif w.name == "export":
            path, n = w.result
            self.notify(f"{path} ({n:,} rows)", title="Ranking exported")

    # ---------------------------------------------------------------- display
    def set_live(self, state: str) -> None:
        """The live feed's state, shown at the end of the title line."""
        self._live = state
        self._show_title()

    def _show_title(self) -> None:
        live = f" · {self._live}" if self._live else ""
        self.query_one("#scan-title", Static).update(Text(self._title_text + live, style="bold"))

    def show_status(self, text: str, *, error: bool = False) -> None:
        style = "bold red" if error else ""
        self.query_one("#scan-status", Static).update(Text(text, style=style))

    def _show_outcome(self, outcome: ScanOutcome) -> None:
        self.outcome = outcome
        m = outcome.meta
        r = outcome.result
        found = int((r.qvalue < Q_ALPHA).sum())
        self._title_text = (
            f"SCAN {len(m.symbols)} symbols · {m.timeframe} × {m.bars:,} bars · "
            f"{m.tests:,} tests · q<{Q_ALPHA:g}: {found}"
        )
        self._show_title()
        notes = [f"skipped {s} ({why})" for s, why in m.skipped]
        self.show_status(
            "; ".join(notes) if notes else f"ADF lags {m.adf_lags}; Enter opens a pair"
        )
        self.query_one(CorrelationHeatmap).set_data(m.symbols, r.corr)

    def _show_ranked(self, ranked: Ranked) -> None:
        self.ranked = ranked
        assert self.outcome is not None
        bar_ms = self.outcome.meta.bar_ms
        table = self.query_one("#scan-table", DataTable)
        with self.app.batch_update():
            table.clear()
            for k, p in enumerate(ranked.rows, 1):
                q = Text(fmt_p(p.qvalue), style="green" if p.qvalue < Q_ALPHA else "")
                table.add_row(
                    str(k),
                    short_name(p.y),
                    short_name(p.x),
                    q,
                    fmt_half_life(p.half_life, bar_ms),
                    fmt(p.abs_z, ".2f"),
                    fmt(p.corr, ".2f"),
                    fmt(p.beta, ".3g"),
                    fmt(p.hurst, ".2f"),
                    fmt(p.crossings_per_day, ".0f"),
                    fmt(p.carry_bps_day, "+.1f"),
                    key=f"{p.y}/{p.x}",
                )
            label, _ = SORTS[ranked.key]
            arrow = "▼" if ranked.descending else "▲"
            for col in table.columns.values():
                base = dict(COLUMNS)[str(col.key.value)]
                col.label = Text(base + (arrow if base == label else ""))
            table.refresh()

    # ---------------------------------------------------------------- actions
    def action_sort(self, key: str) -> None:
        if key not in SORTS:
            return
        if key == self.sort_key:
            self.descending = not self.descending
        else:
            self.sort_key, self.descending = key, SORTS[key][1]
        self._start_rank()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key in SORTS:
            self.action_sort(key)

    def action_rescan(self) -> None:
        self.run_scan(refresh=True)

    def action_export(self) -> None:
        outcome, key, desc = self.outcome, self.sort_key, self.descending
        if outcome is None:
            self.notify("no scan yet", severity="warning")
            return
        out = self.export_dir

        def export() -> tuple[Path, int]:
            from quanttui.scan_report import export_scan

            rows = rank_pairs(outcome.result, bar_ms=outcome.meta.bar_ms, key=key, descending=desc)
            return export_scan(outcome.meta, rows, out)

        self.run_worker(
            export, name="export", group="scan-export", thread=True, exit_on_error=False
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.ranked is None or self.outcome is None:
            return
        if not 0 <= event.cursor_row < len(self.ranked.rows):
            return
        p = self.ranked.rows[event.cursor_row]
        index = {s: k for k, s in enumerate(self.outcome.meta.symbols)}
        # the first row marks without scrolling: a fresh ranking shows the top block
        heat = self.query_one(CorrelationHeatmap)
        heat.mark(index[p.y], index[p.x], scroll=event.cursor_row > 0)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if self.ranked is None or event.cursor_row >= len(self.ranked.rows):
            return
        p = self.ranked.rows[event.cursor_row]
        event.stop()
        self.post_message(self.OpenPairRequested(p.x, p.y))
        if self.on_open_pair is not None:
            self.on_open_pair(p.x, p.y)
