"""A yes/no question over the current screen."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from quanttui.textsafe import printable


class ConfirmScreen(ModalScreen[bool]):
    """Dismissed with True on `y`, False on `n` or Esc. A `str` question is shown as
    plain text (it may name symbols typed by the user); a `Text` as styled."""

    HELP_TITLE = "Confirm"
    BINDINGS = [
        Binding("y", "dismiss(True)", "Yes"),
        Binding("n", "dismiss(False)", "No"),
        Binding("escape", "dismiss(False)", "No", show=False),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 60; max-width: 100%; height: auto;
        border: thick $warning; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, question: str | Text, hint: str = "") -> None:
        super().__init__()
        self.question = question
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical():
            q = self.question
            yield Label(q if isinstance(q, Text) else Text(printable(q, 200)))
            if self.hint:
                yield Label(self.hint)
