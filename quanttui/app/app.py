"""The Textual monitor: wires feed, storage and analytics together with workers and messages."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Static

from quanttui.config import Config


class QuantApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "quanttui"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, config: Config, symbol_x: str, symbol_y: str) -> None:
        super().__init__()
        self.config = config
        self.symbol_x = symbol_x
        self.symbol_y = symbol_y

    def compose(self) -> ComposeResult:
        a = self.config.analytics
        yield Static(
            f"{self.symbol_x} -> {self.symbol_y}  ({self.symbol_y} = a + b*{self.symbol_x})  "
            f"{a.timeframe}  W={a.window}  {a.hedge}",
            id="title",
        )
        yield Footer()
