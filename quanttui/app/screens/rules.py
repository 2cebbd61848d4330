"""The alert-rules dialog: add a rule by typing it, remove the highlighted one.

The list always has a highlighted rule once it has any (the one just added, else the
last), shown in reverse even when the list does not have focus, so Tab and Del never
act on a rule the user cannot see. Del asks first (`ConfirmRemove`: y removes, n or Esc
keeps it).
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from quanttui.app.screens.confirm import ConfirmScreen
from quanttui.app.widgets.keys import KeyBar


class ConfirmRemove(ConfirmScreen):
    """`Remove the rule …? y / n` (Enter removes too)."""

    BINDINGS = [
        Binding("y,enter", "dismiss(True)", "Remove", tooltip="Remove the rule"),
        Binding("n,escape", "dismiss(False)", "Keep", tooltip="Keep the rule"),
    ]
    DEFAULT_CSS = """
    ConfirmRemove > Vertical { border: thick $error; }
    """

    def __init__(self, rule: str) -> None:
        super().__init__(
            Text.assemble("Remove the rule ", (rule, "bold"), "?"),
            "y removes it, n or Esc keeps it",
        )
        self.rule = rule


class RulesScreen(ModalScreen[None]):
    """Edits the app's rules through two callbacks, so the app stays the only owner."""

    HELP_TITLE = "Alert rules keys"
    BINDINGS = [
        Binding("escape", "dismiss", "Close", key_display="Esc", tooltip="Close the dialog"),
        Binding(
            "delete",
            "remove",
            "Remove",
            key_display="Del",
            tooltip="Remove the highlighted rule (asks first)",
        ),
        Binding(
            "tab",
            "app.focus_next",
            "List/input",
            key_display="Tab",
            tooltip="Move between the input and the list",
        ),
    ]
    DEFAULT_CSS = """
    RulesScreen { align: center middle; }
    RulesScreen > Vertical {
        width: 72; max-width: 100%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    RulesScreen OptionList { height: auto; max-height: 12; }
    RulesScreen OptionList > .option-list--option-highlighted { text-style: reverse bold; }
    RulesScreen .rules-help { color: $text-muted; height: auto; }
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
            yield Static(
                "Alert rules. Type one and Enter to add it; Tab to the list, ↑/↓ to pick, "
                "Del to remove (asks first); Esc closes.",
                classes="rules-help",
            )
            yield OptionList(id="rule-list")
            yield Input(placeholder="new rule, e.g. abs(zscore) >= 2.5", id="rule-input")
        yield KeyBar()

    def on_mount(self) -> None:
        self._refresh()
        self.query_one("#rule-input", Input).focus()

    @property
    def highlighted(self) -> str | None:
        """The rule Del would remove."""
        ol = self.query_one("#rule-list", OptionList)
        if ol.highlighted is None:
            return None
        return ol.get_option_at_index(ol.highlighted).id

    def _refresh(self, select: str | None = None) -> None:
        ol = self.query_one("#rule-list", OptionList)
        keep = select or self.highlighted
        rules = self._rules()
        ol.clear_options()
        ol.add_options([Option(Text(r), id=r) for r in rules])
        if rules:
            ol.highlighted = rules.index(keep) if keep in rules else len(rules) - 1

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() and self._add(event.value):
            event.input.value = ""
            added = self._rules()
            self._refresh(select=added[-1] if added else None)

    def action_remove(self) -> None:
        rule = self.highlighted
        if rule is None:
            self.notify("no rule to remove", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes and self._remove(rule):
                self._refresh()

        self.app.push_screen(ConfirmRemove(rule), answered)
