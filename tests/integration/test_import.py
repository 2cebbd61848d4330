"""`quanttui import`: Binance archive files into a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from quanttui.cli import main
from tests.conftest import need
from tests.unit.test_snapshot_cmd import reference

AGG_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
TRADES_HEADER = "id,price,qty,quote_qty,time,is_buyer_maker"


def agg_rows(n: int, start_id: int = 1000, t0: int = 1_704_067_200_000) -> list[str]:
    return [
        f"{start_id + i},{42000 + (i % 50) * 0.1:.1f},0.{1 + i % 9},{10 * i},{10 * i + 2},"
        f"{t0 + 37 * i},{'true' if i % 3 else 'false'}"
        for i in range(n)
    ]


def count(db: Path, sql: str, *args) -> int:
    with sqlite3.connect(db) as c:
        return c.execute(sql, args).fetchone()[0]


def test_real_klines_import_and_snapshot_matches_statsmodels(
    real_data: Path, tmp_path: Path, capsys
) -> None:
    files = [need(real_data / f"{s}USDT-1m-2024-02.csv") for s in ("AVAX", "NEAR", "FIL")]
    db = tmp_path / "k.db"
    assert main(["import", *map(str, files), "--db", str(db), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "imported 3 of 3 files, 125,280 new rows" in err
    for s in ("AVAXUSDT", "NEARUSDT", "FILUSDT"):
        assert (
            count(db, "SELECT count(*) FROM klines WHERE symbol = ? AND interval = '1m'", s)
            == 41_760
        )
    assert main(["import", str(files[0]), "--db", str(db), "--quiet"]) == 0
    assert "41,760 rows, 0 new" in capsys.readouterr().err

    w = 200
    assert (
        main(
            [
                "snapshot",
                "AVAXUSDT",
                "NEARUSDT",
                "--db",
                str(db),
                "--timeframe",
                "1m",
                "--window",
                str(w),
                "--json",
            ]
        )
        == 0
    )
    snap = json.loads(capsys.readouterr().out)
    x = pd.read_csv(files[0])["close"].to_numpy(float)[-3 * w :]
    y = pd.read_csv(files[1])["close"].to_numpy(float)[-3 * w :]
    ref = reference(x, y, w)
    for k in ("beta", "alpha", "zscore", "adf_stat", "adf_p", "coint_p"):
        assert snap[k] == pytest.approx(ref[k], rel=1e-6, abs=1e-9), k
    assert snap["bars"] == 41_760


def test_aggtrades_with_and_without_header_zip_and_trades(tmp_path: Path, capsys) -> None:
    rows = agg_rows(1000)
    with_header = tmp_path / "BTCUSDT-aggTrades-2024-01-01.csv"
    with_header.write_text(AGG_HEADER + "\n" + "\n".join(rows[:600]) + "\n")
    bare = tmp_path / "BTCUSDT-aggTrades-2024-01-02.csv"
    bare.write_text("\n".join(rows[500:]) + "\n")
    zipped = tmp_path / "ETHUSDT-aggTrades-2024-01-01.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ETHUSDT-aggTrades-2024-01-01.csv", "\n".join(rows) + "\n")
    trades = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    trades.write_text(TRADES_HEADER + "\n1000,42000.5,0.5,21000.25,1704067200000,true\n")
    unnamed = tmp_path / "dump.csv"
    unnamed.write_text("\n".join(rows[:10]) + "\n")
    db = tmp_path / "a.db"
    args = [str(p) for p in (with_header, bare, zipped, trades)]
    assert main(["import", *args, "--db", str(db), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "BTCUSDT aggTrades, 600 rows, 600 new" in err
    assert "BTCUSDT aggTrades, 500 rows, 400 new" in err  # 100 overlap: not stored twice
    assert "ETHUSDT aggTrades, 1,000 rows, 1,000 new" in err
    assert count(db, "SELECT count(*) FROM ticks WHERE symbol = 'BTCUSDT' AND trade_id > 0") == 1000
    # a raw trade id 1000 does not collide with aggregate id 1000
    assert (
        count(db, "SELECT count(*) FROM ticks WHERE symbol = 'BTCUSDT' AND trade_id = -1000") == 1
    )
    with sqlite3.connect(db) as c:
        assert c.execute(
            "SELECT ts_ms, price, qty, is_buyer_maker FROM ticks WHERE symbol='BTCUSDT' AND trade_id=1001"
        ).fetchone() == (1_704_067_200_037, 42000.1, 0.2, 1)
    assert main(["import", *args, "--db", str(db), "--quiet"]) == 0
    assert "0 new rows" in capsys.readouterr().err
    assert main(["import", str(unnamed), "--db", str(db), "--quiet"]) == 1
    assert "cannot tell the symbol from the file name; pass --symbol" in capsys.readouterr().err
    assert main(["import", str(unnamed), "--db", str(db), "--symbol", "solusdt", "--quiet"]) == 0
    assert count(db, "SELECT count(*) FROM ticks WHERE symbol = 'SOLUSDT'") == 10


def test_bad_files_report_and_commit_nothing(tmp_path: Path, capsys) -> None:
    rows = agg_rows(200)
    good = "\n".join(rows) + "\n"
    truncated = tmp_path / "BTCUSDT-aggTrades-2024-01-03.zip"
    with zipfile.ZipFile(truncated, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("BTCUSDT-aggTrades-2024-01-03.csv", good * 50)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    columns = tmp_path / "BTCUSDT-aggTrades-2024-01-04.csv"
    columns.write_text(good + "1,2,3\n" + good.replace("\n", ",x\n", 2))
    price = tmp_path / "BTCUSDT-aggTrades-2024-01-05.csv"
    price.write_text(AGG_HEADER + "\n" + good + rows[0].replace("42000.0", "abc") + "\n")
    fine = tmp_path / "ETHUSDT-aggTrades-2024-01-05.csv"
    fine.write_text(good)
    db = tmp_path / "b.db"
    files = [str(p) for p in (truncated, columns, price, fine)]
    assert main(["import", *files, "--db", str(db), "--quiet"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"quanttui: error: {truncated}: not a valid zip file (truncated or corrupt" in err[0]
    assert err[1] == (
        f"quanttui: error: {columns}: 3 bad rows of 401 (first at line 201: expected 7 columns "
        "for aggTrades, got 3); nothing imported from this file"
    )
    assert err[2] == (
        f"quanttui: error: {price}: 1 bad row of 201 (first at line 202: could not convert "
        "string to float: 'abc'); nothing imported from this file"
    )
    assert "ETHUSDT aggTrades, 200 rows, 200 new" in err[3]
    assert err[4].startswith("imported 1 of 4 files, 200 new rows")
    assert count(db, "SELECT count(*) FROM ticks WHERE symbol = 'BTCUSDT'") == 0
    assert count(db, "SELECT count(*) FROM ticks WHERE symbol = 'ETHUSDT'") == 200
    assert main(["import", str(tmp_path / "missing.csv"), "--db", str(db), "--quiet"]) == 1
    assert "missing.csv: no such file" in capsys.readouterr().err


def test_import_into_a_foreign_file_is_refused(tmp_path: Path, capsys) -> None:
    notdb = tmp_path / "notes.txt"
    notdb.write_text("hello")
    f = tmp_path / "BTCUSDT-aggTrades-2024-01-01.csv"
    f.write_text("\n".join(agg_rows(3)) + "\n")
    assert main(["import", str(f), "--db", str(notdb)]) == 2
    assert "not an SQLite database" in capsys.readouterr().err
    assert notdb.read_text() == "hello"
