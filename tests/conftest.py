from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("quanttui", deadline=None)
settings.load_profile("quanttui")
"""No per-example deadline: the machines are noisy (a property test is about what the code
does, and performance is measured by the benchmarks, never by a timed test)."""

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "tests" / "data"
ENV = "QUANTTUI_REAL_DATA"


def candidates() -> list[Path]:
    """Where the real recordings may be: `$QUANTTUI_REAL_DATA`, then `../shared/data/real`
    beside the repository. No absolute path of any one machine."""
    env = os.environ.get(ENV)
    return [*([Path(env).expanduser()] if env else []), ROOT.parent / "shared" / "data" / "real"]


def real_dir() -> Path:
    for c in candidates():
        if (c / "SOURCE.md").is_file():
            return c
    return BUNDLED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found = real_dir()
    if found == BUNDLED:
        terminalreporter.write_line(
            f"real data: only the bundled {BUNDLED.relative_to(ROOT)}; set ${ENV} to the "
            "shared data/real folder to run the tests that need its kline files"
        )
    else:
        terminalreporter.write_line(f"real data: {found}")


@pytest.fixture
def real_data() -> Path:
    """The shared real recordings, or the bundled copies of the two NDJSON files."""
    return real_dir()


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path.name} is only in the shared data folder, which is absent here")
    return path
