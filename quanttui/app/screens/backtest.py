"""The backtest screen (`b`): the z-score strategy over the loaded history of the pair.

The run itself happens in the engine (it reads the database); this screen only shows a
finished `BacktestReport`: totals first, the equity curve on a UTC time axis, then the
trades. Its key bar offers only its own keys (back, export, re-run) and the app's
(`q`, `?`): the monitor's keys do not act here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static

from quanttui.app.widgets.charts import nice_ticks, time_ticks
from quanttui.app.widgets.keys import KeyBar
from quanttui.report import (
    BACKTEST_COLUMNS,
    backtest_day,
    backtest_rows,
    backtest_summary,
)

if TYPE_CHECKING:
    from quanttui.analytics.backtest import BacktestReport


class BacktestScreen(Screen[None]):
    HELP_TITLE = "Backtest keys"
    BINDINGS = [
        Binding("escape,b", "app.pop_screen", "Back", tooltip="Back to the monitor"),
        Binding(
            "e",
            "app.export_backtest",
            "Export",
            tooltip="Write the trades and equity CSVs into the export folder",
        ),
        Binding(
            "r",
            "app.run_backtest",
            "Re-run",
            tooltip="Run the backtest again on what is stored now",
        ),
    ]
    DEFAULT_CSS = """
    BacktestScreen #bt-title { height: 1; background: $primary; }
    BacktestScreen #bt-summary { height: auto; padding: 0 1; }
    BacktestScreen #bt-equity { height: 1fr; min-height: 6; }
    BacktestScreen #bt-trades { height: 1fr; min-height: 4; }
    """

    def __init__(self, title: str) -> None:
        super().__init__()
        self._title = title
        self.report: BacktestReport | None = None

    def compose(self) -> ComposeResult:
        from textual_plotext import PlotextPlot

        yield Static(Text(self._title, style="bold"), id="bt-title")
        with Vertical():
            yield Static("running…", id="bt-summary")
            yield PlotextPlot(id="bt-equity")
            yield DataTable(id="bt-trades", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#bt-trades", DataTable)
        for label in BACKTEST_COLUMNS:
            table.add_column(label, key=label)

    def show_error(self, message: str) -> None:
        self.report = None
        self.query_one("#bt-summary", Static).update(Text(message, style="bold red"))

    def show(self, report: BacktestReport) -> None:
        self.report = report
        p = report.params
        stop = "off" if p["stop_z"] is None else f"{p['stop_z']:g}"
        day = backtest_day(report)
        head = Text(
            f"{report.bars:,} bars  entry {p['entry_z']:g}  exit {p['exit_z']:g}  "
            f"stop {stop}  fee {p['fee_bps']:g} bps"
            + (f"  trades on {day} (UTC)" if day else "")
            + "\n"
        )
        head.append(backtest_summary(report))
        self.query_one("#bt-summary", Static).update(head)
        table = self.query_one("#bt-trades", DataTable)
        table.clear()
        for row, t in zip(backtest_rows(report), report.result.trades, strict=True):
            table.add_row(*row[:-1], Text(row[-1], style="green" if t.pnl > 0 else "red"))
        res = report.result
        plot = self.query_one("#bt-equity")
        plt = plot.plt
        plt.clear_figure()
        plt.title("equity (quote currency, after fees) · UTC")
        plt.frame(False)
        n = len(res.equity)
        step = max(1, n // 2000)
        xs = list(range(0, n, step))
        ys = res.equity[::step].tolist()
        plt.plot(xs, ys, marker="braille")
        ts = res.ts_ms.tolist()
        pos, labels = time_ticks(
            ts, 0, n, str(p.get("timeframe", "1m")), max(20, plot.size.width - 10)
        )
        plt.xticks(pos, labels)
        if ys:
            lo, hi = min(ys), max(ys)
            if hi > lo:
                plt.yticks(*nice_ticks(lo, hi, max(2, min(5, plot.size.height - 2))))
        plot.refresh()
