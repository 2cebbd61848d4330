"""The pure layers must not import textual (see STYLE.md: nothing outside app/ imports it)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import quanttui

PURE = (
    "quanttui.engine",
    "quanttui.plausible",
    "quanttui.terminal",
    "quanttui.feed",
    "quanttui.store",
    "quanttui.analytics",
    "quanttui.alerts",
    "quanttui.export",
    "quanttui.textsafe",
    "quanttui.scanner",
    "quanttui.scan_report",
    "quanttui.notify",
    "quanttui.web",
    "quanttui.sched",
)


def pure_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(quanttui.__path__, "quanttui."):
        if info.name.startswith(PURE):
            names.append(info.name)
    return names


def test_pure_layers_exist() -> None:
    assert "quanttui.config" not in pure_modules()
    assert any(n.startswith("quanttui.feed") for n in pure_modules())


def test_pure_layers_import_without_textual() -> None:
    mods = pure_modules() + ["quanttui.model", "quanttui.config"]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('textual', 'textual_plotext'))\n"
        "lazy = sorted(k for k in sys.modules if k.split('.')[0] == 'statsmodels')\n"
        "print(bad, lazy)\n"
        "sys.exit(1 if bad or lazy else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


LAYERS = {
    "model": 0,
    "textsafe": 0,
    "errors": 0,
    "plausible": 0,
    "sched": 0,  # scheduling requests of the engine's threads and of the UI's
    "config": 1,
    "feed": 2,
    "store": 2,
    "notify": 2,
    "analytics": 2,
    "alerts": 2,
    "export": 2,
    "report": 2,
    "scan_report": 2,
    "scanner": 3,
    "engine": 3,
    "terminal": 3,
    "server": 3.5,
    "web": 3.5,  # the browser view's front: serves tabs that attach to the server
    "modes": 4,
    "app": 4,
    "cli": 5,
    "__main__": 6,
    "__init__": 0,
}
"""Arrows point down only: a module may import its own package and lower layers (STYLE.md:
views -> server -> engine -> feed/store/analytics -> model/config). Peers in layer 2 may import one
another, but config imports nothing of ours but model (the old config -> feed.backfill ->
config cycle)."""


ALLOWED = {("modes/scan", "quanttui.app.scan_app")}
"""`quanttui scan` without --json opens the scanner app: a view starting a view."""


def _imports(path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("quanttui"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("quanttui"))
    return out


def test_imports_point_down_the_layers() -> None:
    from pathlib import Path

    root = Path(quanttui.__file__).parent
    bad = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("")
        top = rel.parts[0]
        mine = LAYERS[top]
        for mod in _imports(path):
            parts = mod.split(".")
            if len(parts) < 2:
                continue
            other = parts[1]
            if other == top:
                continue
            theirs = LAYERS[other]
            if ("/".join(rel.parts), mod) in ALLOWED:
                continue
            if (
                theirs > mine
                or (top == "config" and other != "model")
                or (theirs == mine and mine >= 3)
            ):
                bad.append(f"{'/'.join(rel.parts)} imports {mod}")
    assert not bad, "\n".join(sorted(bad))


def test_the_first_frame_imports_neither_numpy_nor_the_engine() -> None:
    """The CLI draws the first frame before it imports the engine (`defer_engine`): what
    the app and its first screens import must not pull numpy, pandas, the feed or the
    engine's core in with them (about 300 ms of the 500 ms first-frame budget)."""
    code = (
        "import sys\n"
        "import quanttui.cli, quanttui.app.app\n"
        "import quanttui.app.screens.monitor, quanttui.app.screens.watchlist\n"
        "import quanttui.app.basket_app, quanttui.app.screens.basket\n"
        "import quanttui.engine, quanttui.engine.events\n"
        "heavy = ('numpy', 'pandas', 'httpx', 'websockets', 'plotext', 'statsmodels')\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in heavy)\n"
        "bad += sorted(k for k in sys.modules if k.startswith(('quanttui.engine.core',\n"
        "    'quanttui.feed', 'quanttui.analytics')))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
