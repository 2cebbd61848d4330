"""Import throughput: 1,000,000 aggTrade rows (a Binance archive CSV) into SQLite.

Prints rows/s for `quanttui import` (plain CSV and the same file zipped), median of
`--runs`, against a naive baseline measured in the same run: `pandas.read_csv` then
`DataFrame.to_sql` into a fresh table (what the old dashboards did, with no primary key,
so no idempotence and no validation either), and one INSERT + COMMIT per row, timed on a
20,000-row sample and extrapolated. Usage: python benchmarks/bench_import.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quanttui.store.db import connect  # noqa: E402
from quanttui.store.importer import import_file  # noqa: E402


def write_csv(path: Path, n: int) -> None:
    t0 = 1_704_067_200_000
    with path.open("w") as fh:
        fh.write(
            "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
        )
        for i in range(n):
            fh.write(
                f"{1_000_000 + i},{42000 + (i % 997) * 0.1:.1f},0.{1 + i % 97:03d},"
                f"{3 * i},{3 * i + 2},{t0 + i * 86 // 1000},{'true' if i % 3 else 'false'}\n"
            )


def ours(src: Path, db: Path) -> float:
    db.unlink(missing_ok=True)
    conn = connect(db)
    t = time.perf_counter()
    res = import_file(conn, src)
    dt = time.perf_counter() - t
    conn.close()
    assert res.inserted == res.rows, res
    return dt


def naive(src: Path, db: Path) -> float:
    import pandas as pd

    db.unlink(missing_ok=True)
    t = time.perf_counter()
    df = pd.read_csv(src)
    with sqlite3.connect(db) as conn:
        df.to_sql("ticks", conn, index=False)
    return time.perf_counter() - t


def per_row_commit(src: Path, db: Path, rows: int = 20_000) -> float:
    """Rows/s of one INSERT and one COMMIT per row (the old dashboards' way), on a sample."""
    import csv

    db.unlink(missing_ok=True)
    conn = connect(db)
    t = time.perf_counter()
    with src.open() as fh:
        r = csv.reader(fh)
        next(r)
        for i, row in enumerate(r):
            if i == rows:
                break
            conn.execute(
                "INSERT OR IGNORE INTO ticks VALUES (?, ?, ?, ?, ?, ?)",
                (
                    "BTCUSDT",
                    int(row[0]),
                    int(row[5]),
                    float(row[1]),
                    float(row[2]),
                    row[6] == "true",
                ),
            )
            conn.commit()
    dt = time.perf_counter() - t
    conn.close()
    return rows / dt


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "BTCUSDT-aggTrades-2024-01-01.csv"
        write_csv(src, args.rows)
        zsrc = src.with_suffix(".zip")
        with zipfile.ZipFile(zsrc, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(src, src.name)
        db = Path(d) / "bench.db"
        plain = statistics.median(ours(src, db) for _ in range(args.runs))
        zipped = statistics.median(ours(zsrc, db) for _ in range(args.runs))
        base = statistics.median(naive(src, db) for _ in range(args.runs))
        slow = per_row_commit(src, db)
    n = args.rows
    print(f"quanttui import, {n:,} aggTrade rows (csv): {plain:.2f} s, {n / plain:,.0f} rows/s")
    print(f"quanttui import, {n:,} aggTrade rows (zip): {zipped:.2f} s, {n / zipped:,.0f} rows/s")
    print(f"naive pandas read_csv + to_sql (no key):    {base:.2f} s, ratio {base / plain:.2f}x")
    print(
        f"naive one commit per row: {slow:,.0f} rows/s (20k-row sample), "
        f"{n / slow:.0f} s for {n:,}, ratio {n / slow / plain:.0f}x"
    )


if __name__ == "__main__":
    main()
