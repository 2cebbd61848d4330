"""The pure layers must not import textual (see STYLE.md: nothing outside app/ imports it)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import quanttui

PURE = (
    "quanttui.feed",
    "quanttui.store",
    "quanttui.analytics",
    "quanttui.alerts",
    "quanttui.export",
    "quanttui.textsafe",
    "quanttui.scanner",
    "quanttui.scan_report",
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
