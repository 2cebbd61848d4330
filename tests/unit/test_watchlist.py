"""The watchlist's pure parts: sparkline, column plan, [watchlists] config, the saved
watchlist, the export folder, and the command line's pair forms."""

from __future__ import annotations

import csv
import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from quanttui.analytics.live import PairParams
from quanttui.app.screens.watchlist import (
    COLUMNS,
    SPARK_MAX,
    SPARK_MIN,
    fmt_duration,
    pair_label,
    plan_columns,
    sparkline,
)
from quanttui.cli import live_pairs
from quanttui.config import ConfigError, load_config
from quanttui.errors import UsageError
from quanttui.export import WATCHLIST_COLUMNS, ExportError, export_watchlist
from quanttui.model import Alert, Snapshot, Tick
from quanttui.store.db import StoreError
from quanttui.store.state import decode, encode, load_last, save_last
from tests.helpers import run_cli, store_ticks


def test_sparkline_is_on_a_fixed_symmetric_scale() -> None:
    assert sparkline([-3.0, 0.0, 3.0, math.nan], 6, 3.0) == "  ▁▅█ "
    assert sparkline([-9.0, 9.0], 2, 3.0) == "▁█"  # clamped
    assert sparkline([1.0, 2.0, 0.0, 4.0], 2, 4.0) == "▅█"  # the last `width` values
    assert sparkline([], 3, 2.0) == "   "


def test_labels_and_durations() -> None:
    assert pair_label("BTCUSDT", "ETHUSDT") == "BTC->ETH"
    assert pair_label("BTCUSDC", "ETHUSDT") == "BTCUSDC->ETH"
    assert [fmt_duration(s) for s in (45, 150, 9000, 200_000, None)] == [
        "45s",
        "2.5m",
        "2.5h",
        "2.3d",
        "—",
    ]


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_column_plan_fits_and_keeps_pair_z_sparkline_and_last_alert(width: int) -> None:
    cols, spark = plan_columns(width, 8)
    keys = [c.key for c in cols]
    assert {"pair", "z", "spark", "alert"} <= set(keys)
    assert keys == [c.key for c in COLUMNS if c.key in keys]  # the screen's order
    used = sum((8 if c.key == "pair" else spark if c.key == "spark" else c.width) + 2 for c in cols)
    if width >= 80:
        assert used <= width - 2  # no horizontal scrolling (2 cells for the scrollbar)
    assert SPARK_MIN <= spark <= SPARK_MAX
    # a column is left out only when the next one by priority would not fit
    if width >= 200:
        assert keys == [c.key for c in COLUMNS]


def test_column_plan_drops_by_priority() -> None:
    narrow = {c.key for c in plan_columns(80, 8)[0]}
    wide = {c.key for c in plan_columns(120, 8)[0]}
    assert narrow < wide
    assert "fill" in narrow and "carry" not in narrow


# ------------------------------------------------------------------ config
def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_watchlists_in_config(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            '[watchlists]\nmajors = ["btcusdt/ethusdt", "BTCUSDT/SOLUSDT"]\nalts-1 = ["A1/B1"]\n',
        )
    )
    assert cfg.watchlist("majors") == (("BTCUSDT", "ETHUSDT"), ("BTCUSDT", "SOLUSDT"))
    assert cfg.watchlist("alts-1") == (("A1", "B1"),)
    assert cfg.watchlist("nope") is None
    assert load_config(use_user_file=False).watchlists == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[watchlists]\nx = []\n", "[watchlists] x: empty"),
        ('[watchlists]\nx = ["BTCUSDT"]\n', "invalid pair 'BTCUSDT': expected X/Y"),
        ('[watchlists]\nx = ["AAUSDT/AAUSDT"]\n', "the two symbols must differ"),
        ('[watchlists]\nx = ["B$/EE"]\n', "invalid symbol 'B$'"),
        ('[watchlists]\nx = ["AA/BB", "aa/bb"]\n', "pair AA/BB given twice"),
        ('[watchlists]\n"a b" = ["AA/BB"]\n', "a name is 1-40 letters"),
        ("[watchlists]\nx = 3\n", "expected an array of pairs"),
        ("watchlists = 3\n", "[watchlists] must be a table"),
    ],
)
def test_bad_watchlists_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and str(path) in str(err.value)


# ------------------------------------------------------------------ the saved watchlist
def test_saved_watchlist_round_trip_and_bad_values(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    assert load_last(db) is None  # no database yet: nothing saved, nothing created
    assert not db.exists()
    save_last(db, "majors", [("BTCUSDT", "ETHUSDT"), ("ETHUSDT", "SOLUSDT")])
    saved = load_last(db)
    assert saved is not None and saved.name == "majors"
    assert saved.pairs == (("BTCUSDT", "ETHUSDT"), ("ETHUSDT", "SOLUSDT"))
    with sqlite3.connect(db) as c:
        (value,) = c.execute("SELECT value FROM meta WHERE key = 'watchlist'").fetchone()
    assert value == encode("majors", saved.pairs)
    for bad in ("{", '{"pairs": ["BTC"]}', '{"name": 3, "pairs": []}', "[]"):
        assert decode(bad) is None
    assert decode('{"name": null, "pairs": ["a1/b1", "A1/B1"]}').pairs == (("A1", "B1"),)
    foreign = tmp_path / "x.db"
    foreign.write_text("not sqlite")
    with pytest.raises(StoreError):
        load_last(foreign)


def test_live_pairs_forms(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            f'[storage]\ndb = "{tmp_path / "l.db"}"\n'
            '[watchlists]\nmajors = ["BTCUSDT/ETHUSDT", "BTCUSDT/SOLUSDT"]\n',
        )
    )
    assert live_pairs(cfg, ["btcusdt", "ethusdt"], None) == ([("BTCUSDT", "ETHUSDT")], False, None)
    assert live_pairs(cfg, ["A1/B1"], None) == ([("A1", "B1")], False, None)
    assert live_pairs(cfg, ["A1/B1", "C1/D1"], None)[1] is True
    pairs, listed, name = live_pairs(cfg, ["BTCUSDT/SOLUSDT", "A1/B1"], "majors")
    assert pairs == [("BTCUSDT", "ETHUSDT"), ("BTCUSDT", "SOLUSDT"), ("A1", "B1")]
    assert listed and name == "majors"
    with pytest.raises(UsageError, match="no watchlist 'minors'.*known: majors"):
        live_pairs(cfg, [], "minors")
    with pytest.raises(UsageError, match="no pairs given and no watchlist saved"):
        live_pairs(cfg, [], None)
    save_last(cfg.db_path, None, [("A1", "B1"), ("C1", "D1")])
    assert live_pairs(cfg, [], None) == ([("A1", "B1"), ("C1", "D1")], True, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--watchlist", "majors"], "no watchlist 'majors' in the config's [watchlists]"),
        ([], "no pairs given and no watchlist saved in"),
        (["BTCUSDT/ETHUSDT", "SOLUSDT"], "invalid pair 'SOLUSDT': expected X/Y"),
        (["BTCUSDT/ETHUSDT", "btcusdt/ethusdt"], "pair btcusdt/ethusdt given twice"),
    ],
)
def test_cli_watchlist_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    code, out, err = run_cli(*args, "--db", str(tmp_path / "n.db"), timeout=60)
    assert code == 2 and out == ""
    assert err.startswith("quanttui: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_watchlists_config_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, '[watchlists]\nx = ["BTCUSDT"]\n')
    code, _, err = run_cli("--watchlist", "x", "--config", str(path), timeout=60)
    assert code == 2 and err.startswith("quanttui: config error: ") and "[watchlists] x" in err


# ------------------------------------------------------------------ export
def snapshot(x: str, y: str, z: float | None) -> Snapshot:
    return Snapshot(x, y, "1s", 20, "ols", 40, 1_765_000_039_000, zscore=z, beta=1.5, corr=0.5)


def test_export_watchlist_folder_and_summary(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    t0 = 1_765_000_000_000
    ticks = [
        Tick(s, i, t0 + 1000 * i, 100.0 + k + (i % 7) * 0.1, 1.0, False)
        for i in range(40)
        for k, s in enumerate(("AAUSDT", "BBUSDT", "CCUSDT"))
    ]
    conn = store_ticks(db, ticks)
    pairs = [
        (PairParams("AAUSDT", "BBUSDT", "1s", 20, "ols"), snapshot("AAUSDT", "BBUSDT", -2.5), None),
        (
            PairParams("BBUSDT", "CCUSDT", "1s", 20, "ols"),
            None,
            Alert(t0, "BBUSDT/CCUSDT", "=cmd", "zscore", -2.25, 2.0),
        ),
    ]
    now = datetime(2025, 12, 15, 8, 0, tzinfo=UTC)
    folder, n = export_watchlist(conn, pairs, tmp_path / "out", now=now)
    again, _ = export_watchlist(conn, pairs, tmp_path / "out", now=now)  # the same second
    conn.close()
    assert folder.name == "watchlist_20251215T080000Z" and again.name.endswith("Z-2")
    names = sorted(p.name for p in folder.iterdir())
    assert n == len(names) == 9 and "watchlist.csv" in names
    assert "AAUSDT_BBUSDT_1s_20251215T080000Z_ticks.csv" in names
    with (folder / "watchlist.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == tuple(WATCHLIST_COLUMNS)
    a = dict(zip(rows[0], rows[1], strict=True))
    b = dict(zip(rows[0], rows[2], strict=True))
    assert (
        a["pair"] == "AAUSDT/BBUSDT" and float(a["zscore"]) == -2.5 and a["last_alert_rule"] == ""
    )
    assert b["zscore"] == "" and b["bars"] == "" and b["last_alert_rule"] == "'=cmd"
    assert float(b["last_alert_value"]) == -2.25
    assert not list((tmp_path / "out").glob("*.part"))


def test_export_watchlist_failure_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import quanttui.export as export

    db = tmp_path / "e.db"
    conn = store_ticks(db, [Tick("AAUSDT", 1, 1_765_000_000_000, 1.0, 1.0, False)])
    pairs = [
        (PairParams(x, y, "1s", 20, "ols"), None, None) for x, y in (("AAUSDT", "BBUSDT"),) * 2
    ]
    calls = []
    real = export.export_pair

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(export, "export_pair", flaky)
    with pytest.raises(ExportError, match="No space left"):
        export_watchlist(conn, pairs, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError):
        export_watchlist(conn, pairs, blocker / "sub")
    conn.close()
