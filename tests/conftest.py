from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "tests" / "data"
CANDIDATES = [
    Path(os.environ["QUANTTUI_REAL_DATA"]) if os.environ.get("QUANTTUI_REAL_DATA") else None,
    ROOT.parent / "shared" / "data" / "real",
    Path("/work/shared/data/real"),
]


def real_dir() -> Path:
    for c in CANDIDATES:
        if c is not None and (c / "SOURCE.md").is_file():
            return c
    return BUNDLED


@pytest.fixture
def real_data() -> Path:
    """The shared real recordings, or the bundled copies of the two NDJSON files."""
    return real_dir()


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path.name} is only in the shared data folder, which is absent here")
    return path
