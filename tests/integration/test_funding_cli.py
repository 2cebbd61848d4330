"""Stored funding in `quanttui snapshot --json` and the analytics CSV, over real ticks."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from quanttui.analytics.funding import pair_carry_bps_day
from quanttui.cli import main
from quanttui.feed.funding import mark_params
from quanttui.feed.recordings import read_ndjson
from quanttui.model import MarkPrice, parse_iso_ms
from quanttui.store.writer import UPSERT_FUNDING, UPSERT_INTERVAL, UPSERT_MARK
from tests.helpers import store_ticks

H = 3_600_000
SETTLED = parse_iso_ms("2025-12-15T08:00:00Z")


def stored_db(real_data: Path, tmp_path: Path, now_ms: int) -> Path:
    ticks = list(read_ndjson(real_data / "ticks_2025-12-15T08-50-11.076Z.ndjson"))
    db = tmp_path / "q.db"
    conn = store_ticks(db, ticks)
    with conn:
        conn.execute(UPSERT_INTERVAL, ("ETHUSDT", 4, now_ms))
        conn.executemany(
            UPSERT_FUNDING,
            [
                ("BTCUSDT", SETTLED - 8 * H, 0.00009, 89_000.0),
                ("BTCUSDT", SETTLED + 2, 0.00004512, 89_812.3),
                ("ETHUSDT", SETTLED - 4 * H, -0.00002, None),
                ("ETHUSDT", SETTLED, 0.00011, None),
            ],
        )
        for m in (
            MarkPrice("BTCUSDT", now_ms - 1000, 89_801.2, 89_790.0, None, 0.0001, now_ms + 2 * H),
            MarkPrice("ETHUSDT", now_ms - 900, 3_140.1, 3_141.0, None, -0.00003, now_ms + H),
            MarkPrice("ETHUSDT", now_ms - 5000, 1.0, 1.0, None, 0.0, now_ms),  # older: ignored
        ):
            conn.execute(UPSERT_MARK, mark_params(m))
    conn.close()
    return db


def test_snapshot_json_shows_the_stored_marks(real_data: Path, tmp_path: Path, capsys) -> None:
    now = int(time.time() * 1000)
    db = stored_db(real_data, tmp_path, now)
    args = ["snapshot", "BTCUSDT", "ETHUSDT", "--db", str(db), "--window", "60", "--json"]
    assert main(args) == 0
    snap = json.loads(capsys.readouterr().out)
    fx, fy = snap["funding"]["x"], snap["funding"]["y"]
    assert (fx["mark"], fx["index"], fx["funding_rate"], fx["interval_h"]) == (
        89_801.2, 89_790.0, 0.0001, 8,
    )  # fmt: skip
    assert (fy["mark"], fy["funding_rate"], fy["interval_h"]) == (3_140.1, -0.00003, 4)
    assert snap["basis_x"] == pytest.approx((89_801.2 - 89_790.0) / 89_790.0 * 1e4, rel=1e-12)
    assert snap["basis_y"] == pytest.approx((3_140.1 - 3_141.0) / 3_141.0 * 1e4, rel=1e-12)
    assert snap["funding_x"] == 0.0001 and snap["funding_y"] == -0.00003
    elapsed = (int(time.time() * 1000) - now) / 1000
    assert 2 * 3600 - elapsed - 1 <= fx["countdown_s"] <= 2 * 3600
    assert fx["next_funding"].endswith("Z")
    side = "short" if snap["zscore"] > 0 else "long"
    assert snap["carry_side"] == side
    assert snap["carry_bps_day"] == pytest.approx(
        pair_carry_bps_day(side, snap["beta"], 89_801.2, 3_140.1, 0.0001, -0.00003, 8, 4),
        rel=1e-12,
    )
    assert main(args[:-1]) == 0
    text = capsys.readouterr().out
    assert "Funding Y" in text and "-0.0030% /4h" in text and "bp/d" in text


def test_analytics_csv_gains_the_funding_columns(real_data: Path, tmp_path: Path, capsys) -> None:
    db = stored_db(real_data, tmp_path, int(time.time() * 1000))
    out = tmp_path / "out"
    args = ["export", "BTCUSDT", "ETHUSDT", "--db", str(db), "--out", str(out), "--window", "60"]
    assert main(args) == 0
    (path,) = out.glob("*_analytics.csv")
    rows = list(csv.DictReader(path.open()))
    header = list(rows[0])
    assert header[-5:] == ["funding_x", "funding_y", "carry_bps_day", "basis_x", "basis_y"]
    assert {r["funding_x"] for r in rows} == {"4.512e-05"}  # the 08:00 settlement, 3 ms late
    assert {r["funding_y"] for r in rows} == {"0.00011"}
    assert {r["basis_x"] for r in rows} == {""}
    done = [r for r in rows if r["zscore"] and float(r["zscore"]) != 0]
    assert len(done) > 100
    for r in done[::50]:
        side = "short" if float(r["zscore"]) > 0 else "long"
        ref = pair_carry_bps_day(
            side, float(r["beta"]), float(r["close_x"]), float(r["close_y"]),
            4.512e-05, 0.00011, 8, 4,
        )  # fmt: skip
        assert float(r["carry_bps_day"]) == pytest.approx(ref, rel=1e-12)
    assert all(r["carry_bps_day"] == "" for r in rows if not r["zscore"])
