"""How `v1.db` was made: run at commit bd4fc63 (schema version 1), from the repo root,
with `python -m tests.data.make_v1_db tests/data/v1.db`.

Every row is written by that release's own code paths, in separate processes:

1. `quanttui import` of the first 120 minutes of two real futures kline archive files
   (AVAXUSDT and NEARUSDT 1m, February 2024, from the shared real data set) -> `klines`.
2. `quanttui BTCUSDT ETHUSDT --headless` against the fake exchange streaming the small
   real recording `ticks_2025-11-01T09-54-08.557Z.ndjson` -> `ticks`, `alerts`; one
   trade id is held back to REST only (a filled gap) and one is never produced (an open
   gap) -> `gaps`.

Kept for provenance only: run against a later schema it would write that schema.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import BUNDLED, real_dir
from tests.fakes.exchange import FakeExchange, trades_from_ticks
from tests.helpers import exchange_args, spawn

MINUTES = 120


def import_klines(db: Path, tmp: Path) -> None:
    files = []
    for sym in ("AVAXUSDT", "NEARUSDT"):
        src = real_dir() / f"{sym}-1m-2024-02.csv"
        lines = src.read_text().splitlines(keepends=True)[: MINUTES + 1]
        dst = tmp / src.name
        dst.write_text("".join(lines))
        files.append(str(dst))
    subprocess.run(
        [sys.executable, "-m", "quanttui", "import", *files, "--db", str(db), "--quiet"],
        check=True,
    )


async def headless(db: Path, tmp: Path) -> None:
    from quanttui.feed.recordings import read_ndjson

    trades = trades_from_ticks(read_ndjson(BUNDLED / "ticks_2025-11-01T09-54-08.557Z.ndjson"))
    btc = [i for i, t in enumerate(trades) if t.symbol == "BTCUSDT"]
    held = trades.pop(btc[200])
    trades.pop(btc[400] - 1)
    cfg = tmp / "c.toml"
    cfg.write_text('[feed]\nbackfill = "off"\n[alerts]\nbell = false\ncooldown_s = 0\n')
    async with FakeExchange(trades, rate=150, restamp=True, history=[held]) as ex:
        proc = await spawn(
            "BTCUSDT",
            "ETHUSDT",
            "--headless",
            "--window",
            "10",
            "--config",
            str(cfg),
            "--db",
            str(db),
            "--alert",
            "price_x > 0",
            "--alert",
            "bars >= 3",
            *exchange_args(ex),
        )
        await asyncio.wait_for(ex.done.wait(), 60)
        await asyncio.sleep(3.0)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    sys.stderr.write(err.decode())
    sys.stdout.write(out.decode())


def main() -> None:
    db = Path(sys.argv[1])
    if db.exists():
        sys.exit(f"{db} exists")
    with tempfile.TemporaryDirectory() as d:
        import_klines(db, Path(d))
        asyncio.run(headless(db, Path(d)))


if __name__ == "__main__":
    main()
