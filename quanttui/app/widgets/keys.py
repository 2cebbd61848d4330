"""The key bar at the foot of every quanttui screen, and the key list `?` shows.

Textual's `Footer` lists the focused widget's keys first and the app's last, so at 80
or even 120 columns `q` and `?` fell off the right edge. This bar lists the app's own
keys first (`q`, `?`), then the screen's in the order its `BINDINGS` give them, only
those that act there (a screen hides the others with `check_action`), keys of one
`Binding.Group` under one label. A screen may also leave keys that act but matter less
in its current mode out of the bar (`bar_hides()`: a set of actions); `?` lists them
all. When the line is too narrow, descriptions are dropped from the end before any key
is.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget

KEY_STYLE = "bold"


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One entry of the bar: the keys as shown (`[ ]`, `q`), the short description,
    the long one (the binding's tooltip), whether it acts now, and whether it is the
    app's own (`q`, `?`) rather than the screen's."""

    keys: str
    description: str
    help: str
    enabled: bool
    app_key: bool
    actions: tuple[str, ...] = ()


def key_entries(screen: Screen) -> list[KeyEntry]:
    """The shown bindings active on `screen`: the app's first, then the screen's; one
    entry per action (its keys joined by `/`) or per consecutive `Binding.Group`."""
    app = screen.app
    groups: dict[object, list[tuple[Binding, bool, bool]]] = {}
    for node, binding, enabled, _tooltip in screen.active_bindings.values():
        if not binding.show:
            continue
        group = binding.group if binding.group is not None else binding.action
        groups.setdefault((isinstance(node, App), group), []).append(
            (binding, enabled, isinstance(node, App))
        )
    out: list[KeyEntry] = []
    for (_is_app, group), items in groups.items():
        keys: list[str] = []
        for b, _enabled, _app in items:
            shown = app.get_key_display(b)
            if shown not in keys:
                keys.append(shown)
        first = items[0][0]
        if isinstance(group, Binding.Group):
            desc = group.description
            joined = " ".join(keys)
        else:
            desc = first.description
            joined = "/".join(keys)
        long = " / ".join(dict.fromkeys(b.tooltip for b, _e, _a in items if b.tooltip))
        out.append(
            KeyEntry(
                joined,
                desc,
                long or desc,
                any(e for _b, e, _a in items),
                items[0][2],
                tuple(b.action for b, _e, _a in items),
            )
        )
    out.sort(key=lambda e: not e.app_key)
    return out


def fit_keys(entries: list[KeyEntry], width: int, key_style: str = KEY_STYLE) -> Text:
    """The bar's text: `key description` entries two spaces apart, descriptions dropped
    from the last entry backwards (never the app's own) until the line fits."""
    show_desc = [bool(e.description) for e in entries]

    def length() -> int:
        parts = [
            len(e.keys) + (1 + len(e.description) if d else 0)
            for e, d in zip(entries, show_desc, strict=True)
        ]
        return sum(parts) + 2 * max(0, len(parts) - 1) + 1

    for i in range(len(entries) - 1, -1, -1):
        if length() <= width:
            break
        if not entries[i].app_key:
            show_desc[i] = False
    t = Text(" ", no_wrap=True, overflow="ellipsis")
    for i, (e, d) in enumerate(zip(entries, show_desc, strict=True)):
        if i:
            t.append("  ")
        style = key_style if e.enabled else "dim"
        t.append(f"{e.keys}", style=style)
        if d:
            t.append(f" {e.description}", style="" if e.enabled else "dim")
    t.truncate(width, overflow="ellipsis")
    return t


class KeyBar(Widget):
    """Footer of a quanttui screen (see the module docstring)."""

    COMPONENT_CLASSES = {"keybar--key"}
    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: 1; width: 1fr; background: $panel; }
    KeyBar > .keybar--key { text-style: bold; color: $accent; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, lambda _screen: self.refresh())

    @property
    def text(self) -> str:
        """The bar as plain text (what the tests read)."""
        return self.render().plain

    def render(self) -> Text:
        style = str(self.get_component_rich_style("keybar--key"))
        entries = key_entries(self.screen)
        hide = getattr(self.screen, "bar_hides", None)
        if hide is not None:
            hidden = hide()
            entries = [e for e in entries if not set(e.actions) <= hidden]
        return fit_keys(entries, self.size.width or 80, style)
