"""Every view names the same last settled bar, and the same z, for one database.

The database holds two legs traded every second for `FULL` seconds, then a last second
that is only partly there (the recording stopped 400 ms into it), with Y's price far off
so that a z computed from that partial bar cannot pass for the settled one. The views:

* `quanttui snapshot --json` on the database;
* `quanttui export` on it (the analytics CSV's last row; the bars CSV);
* `--headless --replay` of it (the engine's last snapshot, printed at the end);
* the engine itself, replaying it in process: its last snapshot, and its watchlist
  export (`watchlist.csv` and the pair's CSVs), as the watchlist's `e` writes them.

Each must name the bar before the partial one, with z equal to a plain numpy z of the
full seconds (1e-9); where the partial bar is shown (the bars CSVs) it is marked
``settled = 0``.
"""

from __future__ import annotations

import csv
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from quanttui.cli import main
from quanttui.config import load_config
from quanttui.engine import Engine, EngineThread, Mailbox
from quanttui.engine.events import FeedState
from quanttui.feed.replay import ReplaySpec
from quanttui.model import Tick, iso_utc
from tests.helpers import run_cli, store_ticks

X, Y = "BTCUSDT", "ETHUSDT"
W = 20
FULL = 90
T0 = 1_765_000_000_000  # on the 1 s grid
PARTIAL_MS = T0 + FULL * 1000
LAST_SETTLED = PARTIAL_MS - 1000


def _x(i: int) -> float:
    return 100.0 + 3.0 * math.sin(i / 7.0) + 1.5 * math.sin(i / 2.3)


def _y(i: int) -> float:
    return 2.0 * _x(i) + 0.4 * math.sin(i / 3.1) + 0.3 * math.cos(i / 1.7)


def trades() -> list[Tick]:
    """Four trades a leg in each full second (closes `_x(k)`, `_y(k)` at its end), then
    two a leg in the first 400 ms of the partial second, Y 8 above the line."""
    out: list[Tick] = []
    tid = {X: 0, Y: 0}

    def add(sym: str, ts: int, price: float) -> None:
        tid[sym] += 1
        out.append(Tick(sym, tid[sym], ts, price, 0.01, False))

    for k in range(FULL):
        for j, off in enumerate((100, 350, 600, 850)):
            i = 4 * k + j
            last = j == 3
            add(X, T0 + 1000 * k + off, _x(k) if last else _x(k) + 0.01 * (i % 5))
            add(Y, T0 + 1000 * k + off + 20, _y(k) if last else _y(k) - 0.01 * (i % 3))
    for off in (100, 400):
        add(X, PARTIAL_MS + off, _x(FULL))
        add(Y, PARTIAL_MS + off, _y(FULL) + 8.0)
    return out


def reference_z() -> float:
    """z at the last full second from the README definitions, in plain numpy."""
    x = np.array([_x(k) for k in range(FULL)])
    y = np.array([_y(k) for k in range(FULL)])
    s = np.full(FULL, np.nan)
    for t in range(W - 1, FULL):
        b, a = np.polyfit(x[t - W + 1 : t + 1], y[t - W + 1 : t + 1], 1)
        s[t] = y[t] - a - b * x[t]
    win = s[-W:]
    return float((s[-1] - win.mean()) / win.std(ddof=1))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "rec.db"
    store_ticks(path, trades()).close()
    return path


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def check_pair_csvs(files: dict[str, Path], want_z: float, want_adf_p: float | None) -> None:
    """The analytics CSV ends at the last settled bar; the bars CSV shows the partial bar
    only marked `settled = 0`."""
    analytics = rows(files["analytics"])
    assert analytics[-1]["time"] == iso_utc(LAST_SETTLED)
    assert float(analytics[-1]["zscore"]) == pytest.approx(want_z, rel=1e-9, abs=1e-12)
    assert all(r["time"] != iso_utc(PARTIAL_MS) for r in analytics)
    if want_adf_p is not None:
        assert float(analytics[-1]["adf_p"]) == pytest.approx(want_adf_p, rel=1e-9, abs=1e-15)
        assert analytics[-1]["coint_p"] != ""
    assert all(r["adf_p"] == "" and r["coint_p"] == "" for r in analytics[:-1])
    bars = rows(files["bars"])
    partial = [r for r in bars if r["time"] == iso_utc(PARTIAL_MS)]
    assert all(r["settled"] == "0" for r in partial)
    settled = [r for r in bars if r["time"] != iso_utc(PARTIAL_MS)]
    assert all(r["settled"] == "1" for r in settled)
    assert [r["time"] for r in settled] == [r["time"] for r in analytics]


def by_kind(paths: list[Path]) -> dict[str, Path]:
    return {p.name.rsplit("_", 1)[1].removesuffix(".csv"): p for p in paths}


def run_engine(db: Path, tmp_path: Path) -> tuple[object, Path]:
    """Replay `db` through the engine in this process to its end; then the watchlist
    export (`e` on the watchlist). Returns (the engine's last snapshot, the folder)."""
    cfg = load_config(
        use_user_file=False,
        overrides={
            ("storage", "db"): str(tmp_path / "session.db"),
            ("analytics", "window"): W,
            ("analytics", "timeframe"): "1s",
        },
    )
    engine = Engine(cfg, [(X, Y)], replay=ReplaySpec(db, speed=0))
    finished = threading.Event()

    class Watch(Mailbox):
        def put(self, event: object) -> None:
            if isinstance(event, FeedState) and event.state == "finished":
                finished.set()

    engine.subscribe(Watch())
    runner = EngineThread(engine).start()
    try:
        assert finished.wait(60), "the replay did not finish"
        done = runner.call(engine.export(out_dir=tmp_path / "wl", watchlist=True)).result(60)
        assert not done.error, done.error
        snap = engine.pairs[f"{X}/{Y}"].snapshot
    finally:
        assert runner.stop(15)
    (folder,) = (tmp_path / "wl").iterdir()
    return snap, folder


def test_every_view_names_the_same_last_settled_bar_and_z(db: Path, tmp_path: Path, capsys) -> None:
    want = reference_z()
    common = ["--db", str(db), "--timeframe", "1s", "--window", str(W)]

    # quanttui snapshot --json
    assert main(["snapshot", X, Y, *common, "--json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["time"] == iso_utc(LAST_SETTLED)
    assert snap["bars"] == FULL
    assert snap["zscore"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert snap["adf_p"] is not None

    # quanttui export
    out = tmp_path / "out"
    assert main(["export", X, Y, *common, "--out", str(out)]) == 0
    capsys.readouterr()
    check_pair_csvs(by_kind(list(out.glob("*.csv"))), want, snap["adf_p"])

    # the engine: its last snapshot and the watchlist export
    engine_snap, folder = run_engine(db, tmp_path)
    assert engine_snap is not None and engine_snap.time_ms == LAST_SETTLED
    assert engine_snap.zscore == pytest.approx(want, rel=1e-9, abs=1e-12)
    (summary,) = rows(folder / "watchlist.csv")
    assert summary["time"] == iso_utc(LAST_SETTLED)
    assert float(summary["zscore"]) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert int(summary["bars"]) == FULL
    check_pair_csvs(by_kind([p for p in folder.glob(f"{X}_{Y}_*.csv")]), want, snap["adf_p"])

    # --headless --replay: the last snapshot line
    cfg = tmp_path / "c.toml"
    cfg.write_text("[alerts]\nbell = false\n")
    code, stdout, err = run_cli(
        X, Y, "--headless", "--replay", str(db), "--speed", "0", "--window", str(W),
        "--timeframe", "1s", "--config", str(cfg),
    )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    (last,) = [r["snapshot"] for r in lines if "snapshot" in r]
    assert last["time"] == iso_utc(LAST_SETTLED)
    assert last["zscore"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert last["bars"] == FULL


def test_the_partial_bar_settles_when_a_later_trade_is_stored(db: Path, capsys) -> None:
    """One trade of either leg past the partial bar's end settles it: the rule the live
    bar builder closes bars by."""
    store_ticks(db, [Tick(X, 10_000, PARTIAL_MS + 1000, _x(FULL + 1), 0.01, False)]).close()
    assert main(["snapshot", X, Y, "--db", str(db), "--timeframe", "1s", "--window", str(W),
                 "--json"]) == 0  # fmt: skip
    snap = json.loads(capsys.readouterr().out)
    assert snap["time"] == iso_utc(PARTIAL_MS) and snap["bars"] == FULL + 1


def test_settled_end_rule() -> None:
    """The newest trade's bucket is open; the clock, less the grace, settles a bucket
    once past its end; nothing to go by gives None."""
    from quanttui.analytics.bars import settled_end

    assert settled_end(1000, 5_400) == 5_000
    assert settled_end(1000, 5_000) == 5_000  # a trade at the end settles the bar before
    assert settled_end(1000, 5_400, now_ms=6_249, grace_ms=250) == 5_000
    assert settled_end(1000, 5_400, now_ms=6_250, grace_ms=250) == 6_000
    assert settled_end(1000, None, now_ms=3_300, grace_ms=250) == 3_000
    assert settled_end(1000, None) is None
    with pytest.raises(ValueError):
        settled_end(0, 1)


def test_a_stored_kline_is_a_whole_minute(tmp_path: Path) -> None:
    """At 1m/5m, where klines make bars, a stored 1m kline (never the open minute)
    settles through its end; at 1s only trades count. Zero rows are not trades."""
    from quanttui.store.db import connect
    from quanttui.store.queries import newest_data_ms, settled_end_ms

    minute = 60_000
    t = T0 - T0 % (5 * minute)
    conn = store_ticks(
        tmp_path / "k.db",
        [Tick(X, 1, t + 10_000, 1.0, 1.0, False), Tick(Y, 1, t + 20_000, 0.0, 0.0, False)],
    )
    with conn:
        conn.execute(
            "INSERT INTO klines VALUES (?, '1m', ?, 1, 1, 1, 1, 1, ?, 1, 1)",
            (Y, t + 4 * minute, t + 5 * minute - 1),
        )
    conn.close()
    conn = connect(tmp_path / "k.db", readonly=True)
    try:
        assert newest_data_ms(conn, [X, Y], "1s") == t + 10_000
        assert settled_end_ms(conn, X, Y, "1s") == t + 10_000
        assert newest_data_ms(conn, [X, Y], "1m") == t + 5 * minute
        assert settled_end_ms(conn, X, Y, "1m") == t + 5 * minute
        assert settled_end_ms(conn, X, Y, "5m") == t + 5 * minute
    finally:
        conn.close()
