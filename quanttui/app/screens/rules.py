"""The alert-rules dialog: add a rule by typing it, remove the highlighted one."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option


class RulesScreen(ModalScreen[None]):
    """Edits the app's rules through two callbacks, so the app stays the only owner."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("delete", "remove", "Remove rule", key_display="del"),
    ]
    DEFAULT_CSS = """
    RulesScreen { align: center middle; }
    RulesScreen > Vertical {
        width: 72; max-width: 100%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    RulesScreen OptionList { height: auto; max-height: 12; }
    RulesScreen Label { color: $text-muted; }
    """

    def __init__(
        self,
        rules: Callable[[], list[str]],
        add: Callable[[str], bool],
        remove: Callable[[str], bool],
    ) -> None:
        super().__init__()
        self._rules, self._add, self._remove = rules, add, remove

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Alert rules (del removes the highlighted rule, esc closes)")
            yield OptionList(id="rule-list")
            yield Input(placeholder="new rule, e.g. abs(zscore) >= 2.5", id="rule-input")

    def on_mount(self) -> None:
        self._refresh()
        self.query_one("#rule-input", Input).focus()

    def _refresh(self) -> None:
        ol = self.query_one("#rule-list", OptionList)
        ol.clear_options()
        ol.add_options([Option(Text(r), id=r) for r in self._rules()])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() and self._add(event.value):
            event.input.value = ""
            self._refresh()

    def action_remove(self) -> None:
        ol = self.query_one("#rule-list", OptionList)
        if ol.highlighted is None:
            ol.focus()
            return
        option = ol.get_option_at_index(ol.highlighted)
        if option.id is not None and self._remove(option.id):
            self._refresh()
