"""The backtest screen (`b`): the z-score strategy over the loaded history of the pair.

The run itself happens in a thread worker of the app (it reads the database); this screen
only shows a finished `BacktestReport`: totals, the equity curve and the trades.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from quanttui.analytics.backtest import BacktestReport
from quanttui.report import BACKTEST_COLUMNS, backtest_rows, backtest_summary


class BacktestScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,b", "app.pop_screen", "Back"),
        Binding("e", "app.export_backtest", "Export trades+equity"),
        Binding("r", "app.run_backtest", "Re-run"),
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
        yield Static(Text(self._title, style="bold"), id="bt-title")
        with Vertical():
            yield Static("running…", id="bt-summary")
            yield PlotextPlot(id="bt-equity")
            yield DataTable(id="bt-trades", cursor_type="row", zebra_stripes=True)
        yield Footer()

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
        head = Text(
            f"{report.bars:,} bars  entry {p['entry_z']:g}  exit {p['exit_z']:g}  "
            f"stop {stop}  fee {p['fee_bps']:g} bps\n"
        )
        head.append(backtest_summary(report))
        self.query_one("#bt-summary", Static).update(head)
        table = self.query_one("#bt-trades", DataTable)
        table.clear()
        for row, t in zip(backtest_rows(report), report.result.trades, strict=True):
            table.add_row(*row[:-1], Text(row[-1], style="green" if t.pnl > 0 else "red"))
        res = report.result
        plot = self.query_one("#bt-equity", PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        plt.title("equity (quote currency, after fees)")
        plt.frame(False)
        n = len(res.equity)
        step = max(1, n // 2000)
        xs = list(range(0, n, step))
        plt.plot(xs, res.equity[::step].tolist(), marker="braille")
        plt.xticks([])
        plot.refresh()
