from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from quanttui.config import Config, load_config
from quanttui.feed.recordings import read_ndjson
from quanttui.model import Tick
from tests.helpers import store_ticks

RECORDING = "ticks_2025-12-15T08-50-11.076Z.ndjson"
ID_OFFSET = 10_000_000


def app_config(db: Path, ws: str, rest: str, export_dir: Path, **analytics) -> Config:
    cfg = load_config(
        use_user_file=False,
        overrides={
            ("feed", "ws_url"): ws,
            ("feed", "rest_url"): rest,
            ("storage", "db"): str(db),
            ("export", "dir"): str(export_dir),
            ("analytics", "window"): 60,
        },
    )
    feed = dataclasses.replace(cfg.feed, reconnect_base_s=0.05, reconnect_max_s=0.5)
    return dataclasses.replace(
        cfg, feed=feed, analytics=dataclasses.replace(cfg.analytics, **analytics)
    )


@pytest.fixture
def history_db(real_data: Path, tmp_path: Path) -> Path:
    """The real 7-minute recording, shifted to end 2 s ago, ids clear of the fake's."""
    ticks = list(read_ndjson(real_data / RECORDING))
    shift = int(time.time() * 1000) - 2000 - max(t.ts_ms for t in ticks)
    db = tmp_path / "hist.db"
    store_ticks(
        db,
        [
            Tick(t.symbol, t.trade_id + ID_OFFSET, t.ts_ms + shift, t.price, t.qty, False)
            for t in ticks
        ],
    ).close()
    return db


@pytest.fixture
def fixed_db(real_data: Path, tmp_path: Path) -> Path:
    """The real recording at its own (past) times: deterministic screens."""
    db = tmp_path / "fixed.db"
    store_ticks(db, read_ndjson(real_data / RECORDING)).close()
    return db


def count_ticks(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT count(*) FROM ticks").fetchone()[0]
