"""Mark price and funding on screen, under Pilot against the fake exchange: the watchlist's
carry column and the monitor's funding block show what the last markPrice frames said,
formatted as the screen formats them, and the countdown runs to the exchange's ``T``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable

from quanttui.analytics.funding import basis_bps, pair_carry_bps_day, signal_side
from quanttui.app.app import QuantApp
from quanttui.app.screens.monitor import MonitorScreen
from quanttui.app.screens.watchlist import WatchlistScreen
from quanttui.app.widgets.watchtable import WatchTable
from quanttui.report import price_text
from tests.app.conftest import app_config
from tests.app.test_app import until
from tests.app.test_watchlist import split_history
from tests.fakes.exchange import FakeExchange, FakeMark, universe_trades

H = 3_600_000
SYMS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
PAIRS = [("BTCUSDT", "ETHUSDT"), ("ETHUSDT", "SOLUSDT")]
INTERVAL_H = {"BTCUSDT": 8, "ETHUSDT": 8, "SOLUSDT": 4}
BASE = {"BTCUSDT": 90_000.0, "ETHUSDT": 3_100.0, "SOLUSDT": 140.0}
ROUNDS = 12


def next_funding(symbol: str, now_ms: int) -> int:
    step = INTERVAL_H[symbol] * H
    return now_ms // step * step + step


def mark_frames(e0: int) -> list[FakeMark]:
    """`ROUNDS` updates of each symbol in turn; every one moves mark, index and rate, so a
    screen stuck on an earlier frame shows other numbers than the last."""
    out = []
    for k in range(ROUNDS):
        for j, s in enumerate(SYMS):
            mark = BASE[s] * (1 + 1e-4 * k)
            index = mark * (1 - (3 + k + j) * 1e-5)
            rate = (1 + k) * 1e-5 * (-1 if s == "ETHUSDT" else 1)
            out.append(
                FakeMark(
                    s,
                    e0 + 300 * (k * len(SYMS) + j),
                    f"{mark:.8f}",
                    f"{index:.8f}",
                    f"{rate:.8f}",
                    next_funding(s, e0),
                )
            )
    return out


def countdown_s(text: str) -> int:
    h, m, s = (int(v) for v in text.split(":"))
    return 3600 * h + 60 * m + s


def table_cell(table: DataTable, row: str, column: str) -> str:
    return str(table.get_cell(row, column)).strip()


async def test_mark_frames_on_the_watchlist_and_the_monitor(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    live = split_history(universe_trades(24_000, SYMS, seed=3), 9_000, db)
    e0 = int(time.time() * 1000)
    sent = mark_frames(e0)
    last = {m.symbol: m for m in sent}
    info = [{"symbol": "SOLUSDT", "fundingIntervalHours": 4}]
    async with (
        asyncio.timeout(120),
        FakeExchange(
            live, rate=150, restamp=True, marks=sent, mark_rate=20, funding_info=info
        ) as ex,
    ):
        app = QuantApp(app_config(db, ex.ws_base, ex.rest_base, tmp_path, window=20), pairs=PAIRS)
        async with app.run_test(size=(170, 40)) as pilot:
            wl = app.screen
            assert isinstance(wl, WatchlistScreen)
            await asyncio.wait_for(ex.marks_done.wait(), 30)

            def caught_up(key: str) -> bool:
                s = wl.shown.get(key)
                f = s.funding if s is not None else None
                return (
                    f is not None
                    and f.x is not None
                    and f.y is not None
                    and f.x.updated_ms == last[s.symbol_x].E
                    and f.y.updated_ms == last[s.symbol_y].E
                    and f.y.interval_h == INTERVAL_H[s.symbol_y]
                    and f.carry_bps_day is not None
                )

            keys = [f"{x}/{y}" for x, y in PAIRS]
            await until(lambda: all(caught_up(k) for k in keys), 40)
            table = wl.query_one("#wl-table", WatchTable)
            assert "carry" in [c.key for c in table.columns]
            for k in keys:
                snap = wl.shown[k]
                mx, my = last[snap.symbol_x], last[snap.symbol_y]
                want = pair_carry_bps_day(
                    signal_side(snap.zscore),
                    snap.beta,
                    float(mx.p),
                    float(my.p),
                    float(mx.r),
                    float(my.r),
                    INTERVAL_H[snap.symbol_x],
                    INTERVAL_H[snap.symbol_y],
                    log_hedge=snap.hedge == "log",
                )
                assert table.cell(k, "carry") == f"{want:+.1f}", k

            await pilot.press("down", "enter")  # the second pair: ETH -> SOL, 8 h vs 4 h
            await until(lambda: isinstance(app.screen, MonitorScreen))
            mon = app.screen
            assert (mon.info.symbol_x, mon.info.symbol_y) == PAIRS[1]
            metrics = mon.query_one("#metrics", DataTable)

            shown: dict = {}

            def block_shows_last_frames() -> bool:
                """The funding cells, read with the snapshot they were drawn from: true once
                the carry cell is that snapshot's, computed from the last frames."""
                snap = mon.shown
                try:
                    cells = {
                        table_cell(metrics, f"f{i}", lc): table_cell(metrics, f"f{i}", vc)
                        for i in range(5)
                        for lc, vc in (("l1", "v1"), ("l2", "v2"))
                    }
                except Exception:
                    return False
                side = signal_side(snap.zscore) if snap is not None else None
                if side is None or snap.beta is None:
                    return False
                mx, my = last["ETHUSDT"], last["SOLUSDT"]
                carry = pair_carry_bps_day(
                    side, snap.beta, float(mx.p), float(my.p), float(mx.r), float(my.r), 8, 4,
                    log_hedge=snap.hedge == "log",
                )  # fmt: skip
                shown.update(cells=cells, now=time.time() * 1000)
                return cells.get("carry") == f"{carry:+.2f}bp/d" and cells.get("side") == (
                    f"{side} spread"
                )

            await until(block_shows_last_frames, 20)
            cells, now = shown["cells"], shown["now"]
    for tag, sym in (("X", "ETHUSDT"), ("Y", "SOLUSDT")):
        m = last[sym]
        mark, index, rate = float(m.p), float(m.i), float(m.r)
        assert cells[f"mark {tag}"] == price_text(mark)
        assert cells[f"basis {tag}"] == f"{basis_bps(mark, index):+.2f}bp"
        assert cells[f"fund {tag}"] == f"{rate * 100:+.4f}%/{INTERVAL_H[sym]}h"
        # the screen shows the countdown of the last snapshot (built within a bar or two)
        assert countdown_s(cells[f"next {tag}"]) == pytest.approx((m.T - now) / 1000, abs=5)
