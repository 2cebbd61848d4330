"""`?`: the keys of the screen below, the app's own first, each with what it does.

Textual's built-in key panel listed the focused table's cursor keys first and the
app's last, with one-word labels, and neither `?` nor Esc closed it. This dialog lists
exactly what the screen's key bar offers (`key_entries`), with each binding's tooltip
as the description, then the command palette; `?` and Esc close it.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from quanttui.app.widgets.keys import KEY_STYLE, KeyEntry, key_entries


def help_table(entries: list[KeyEntry]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column()
    for e in entries:
        key = Text(e.keys, style=KEY_STYLE if e.enabled else "dim")
        text = Text(e.help)
        if not e.enabled:
            text.append(" (not now)", style="dim")
        table.add_row(key, text)
    table.add_row(Text("^p", style=KEY_STYLE), Text("Command palette: every action by name"))
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark", "dismiss", "Close", key_display="Esc/?"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    HelpScreen .help-title { text-style: bold; }
    """

    def __init__(self, below: Screen) -> None:
        super().__init__()
        self.entries = key_entries(below)
        self.below_title = getattr(below, "HELP_TITLE", "Keys")

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(f"{self.below_title} (Esc or ? closes)", classes="help-title")
            yield Static(help_table(self.entries), id="help-keys")
