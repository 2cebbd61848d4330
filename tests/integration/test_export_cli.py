from __future__ import annotations

import csv
from pathlib import Path

from quanttui.cli import main
from quanttui.feed.recordings import read_ndjson
from tests.helpers import store_ticks


def test_export_command_writes_four_csvs(real_data: Path, tmp_path: Path, capsys) -> None:
    ticks = list(read_ndjson(real_data / "ticks_2025-12-15T08-50-11.076Z.ndjson"))
    db = tmp_path / "q.db"
    store_ticks(db, ticks).close()
    out = tmp_path / "out"
    assert (
        main(["export", "BTCUSDT", "ETHUSDT", "--db", str(db), "--out", str(out), "--window", "60"])
        == 0
    )
    files = {p.name.rsplit("_", 1)[1]: p for p in out.glob("*.csv")}
    assert set(files) == {"ticks.csv", "bars.csv", "analytics.csv", "alerts.csv"}
    rows = list(csv.reader(files["ticks.csv"].open()))
    assert len(rows) - 1 == len(ticks) == 19_280
    bars = list(csv.reader(files["bars.csv"].open()))
    analytics = list(csv.reader(files["analytics.csv"].open()))
    # the bars file ends with the bucket of the newest trade, not settled, marked 0
    assert [r[-1] for r in bars[1:]] == ["1"] * (len(bars) - 2) + ["0"]
    assert len(bars) == len(analytics) + 1 and 400 <= len(analytics) - 1 <= 410
    assert analytics[0][:4] == ["time", "close_x", "close_y", "alpha"]
    k = analytics[0].index("adf_p")
    assert analytics[0][k : k + 2] == ["adf_p", "coint_p"] and analytics[-1][k] != ""
    assert all(r[k] == "" for r in analytics[1:-1])
    assert rows[1][0].endswith("Z")
    assert "19,280 rows" in capsys.readouterr().out


def test_export_to_unwritable_dir_fails_cleanly(tmp_path: Path, capsys) -> None:
    db = tmp_path / "q.db"
    store_ticks(db, []).close()
    blocker = tmp_path / "f"
    blocker.write_text("x")
    assert main(["export", "BTCUSDT", "ETHUSDT", "--db", str(db), "--out", str(blocker / "d")]) == 1
    assert "cannot create export dir" in capsys.readouterr().err
