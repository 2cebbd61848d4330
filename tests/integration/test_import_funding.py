"""`quanttui import` of Binance's monthly fundingRate archive files (real format)."""

from __future__ import annotations

import sqlite3
import zipfile
from pathlib import Path

from quanttui.cli import main
from quanttui.store.queries import funding_intervals, load_funding

HEADER = "calc_time,funding_interval_hours,last_funding_rate"
FEB = 1_706_745_600_000  # 2024-02-01 00:00 UTC
H = 3_600_000


def archive_rows(interval_h: int, n: int, t0: int = FEB) -> list[str]:
    """Rows as data.binance.vision writes them: ms calc_time (now and then a few ms
    after the hour), the interval, the rate with 8 decimals."""
    out = []
    for k in range(n):
        t = t0 + k * interval_h * H + (3 if k % 4 == 1 else 0)
        rate = ((k * 37) % 23 - 9) * 1.3e-5
        out.append(f"{t},{interval_h},{rate:.8f}")
    return out


def test_import_is_idempotent_and_sets_the_interval(tmp_path: Path, capsys) -> None:
    near = tmp_path / "NEARUSDT-fundingRate-2024-02.csv"
    rows = archive_rows(4, 29 * 6)
    near.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    avax = tmp_path / "AVAXUSDT-fundingRate-2024-02.zip"
    with zipfile.ZipFile(avax, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "AVAXUSDT-fundingRate-2024-02.csv",
            HEADER + "\n" + "\n".join(archive_rows(8, 87)) + "\n",
        )
    db = tmp_path / "f.db"
    assert main(["import", str(near), str(avax), "--db", str(db), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "NEARUSDT fundingRate, 174 rows, 174 new" in err
    assert "AVAXUSDT fundingRate, 87 rows, 87 new" in err
    conn = sqlite3.connect(db)
    ts, rate, mark = load_funding(conn, "NEARUSDT")
    assert ts.tolist() == [int(r.split(",")[0]) for r in rows]
    assert rate.tolist() == [float(r.split(",")[2]) for r in rows]
    assert all(m != m for m in mark.tolist())  # NULL: the archive has no mark price
    assert funding_intervals(conn, ["NEARUSDT", "AVAXUSDT", "BTCUSDT"]) == {
        "NEARUSDT": 4,
        "AVAXUSDT": 8,
        "BTCUSDT": 8,
    }
    before = conn.execute("SELECT * FROM funding ORDER BY 1, 2").fetchall()
    info = conn.execute("SELECT * FROM funding_info ORDER BY 1").fetchall()
    conn.close()

    assert main(["import", str(near), str(avax), "--db", str(db), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "174 rows, 0 new" in err and "87 rows, 0 new" in err and "0 new rows" in err
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT * FROM funding ORDER BY 1, 2").fetchall() == before
    assert conn.execute("SELECT * FROM funding_info ORDER BY 1").fetchall() == info
    # an older month with another interval does not override the newer one
    jan = tmp_path / "NEARUSDT-fundingRate-2024-01.csv"
    jan.write_text(HEADER + "\n" + "\n".join(archive_rows(8, 93, FEB - 31 * 24 * H)) + "\n")
    conn.close()
    assert main(["import", str(jan), "--db", str(db), "--quiet"]) == 0
    conn = sqlite3.connect(db)
    assert funding_intervals(conn, ["NEARUSDT"]) == {"NEARUSDT": 4}
    assert conn.execute("SELECT count(*) FROM funding WHERE symbol='NEARUSDT'").fetchone() == (
        174 + 93,
    )
    conn.close()


def test_bad_funding_rows_fail_the_file(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "BTCUSDT-fundingRate-2024-02.csv"
    rows = archive_rows(8, 10)
    rows[3] = f"{FEB + 3 * 8 * H},8,abc"
    rows[6] = f"{FEB + 6 * 8 * H},0,0.0001"
    rows[7] = f"{FEB + 7 * 8 * H},8"
    bad.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    db = tmp_path / "b.db"
    assert main(["import", str(bad), "--db", str(db), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "3 bad rows of 10 (first at line 5:" in err and "nothing imported" in err
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM funding").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM funding_info").fetchone() == (0,)
    conn.close()
    # three columns and no name: recognised by the column count, symbol from --symbol
    bare = tmp_path / "funding.csv"
    bare.write_text("\n".join(archive_rows(8, 5)) + "\n")
    assert main(["import", str(bare), "--db", str(db), "--symbol", "ethusdt", "--quiet"]) == 0
    assert "ETHUSDT fundingRate, 5 rows, 5 new" in capsys.readouterr().err
