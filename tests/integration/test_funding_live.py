"""Live mark price and funding through the engine, against the fake exchange: the values
of the frames reach the engine's snapshots, the `mark_prices` table and `snapshot --json`,
and the next-funding countdown is measured to the exchange's `T`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from quanttui.config import load_config
from quanttui.engine import Engine, EngineThread, Mailbox
from quanttui.engine.events import SnapshotEvent
from quanttui.model import Snapshot, iso_utc
from tests.fakes.exchange import FakeExchange, FakeMark, synthetic_trades
from tests.helpers import run_cli

EIGHT_H = 8 * 3_600_000


def next_funding(now_ms: int) -> int:
    """The next 8-hour settlement at least 10 minutes after `now_ms`, taken when the test
    runs (taken at import, a run that crossed a settlement saw its countdown at 0)."""
    return (now_ms + 600_000) // EIGHT_H * EIGHT_H + EIGHT_H


def marks(e0: int, n: int, settles: int) -> list[FakeMark]:
    return [
        FakeMark(
            "BTCUSDT" if k % 2 == 0 else "ETHUSDT",
            e0 + 500 * k,
            f"{90000.0 + k:.8f}" if k % 2 == 0 else f"{3100.0 + k / 10:.8f}",
            f"{89990.0 + k:.8f}" if k % 2 == 0 else f"{3101.0 + k / 10:.8f}",
            "0.00010000" if k % 2 == 0 else "-0.00002500",
            settles,
        )
        for k in range(n)
    ]


async def test_mark_frames_reach_snapshots_the_table_and_snapshot_json(tmp_path: Path) -> None:
    e0 = int(time.time() * 1000) - 1000
    settles_ms = next_funding(e0)
    sent = marks(e0, 40, settles_ms)
    trades = synthetic_trades(6000, start_ms=e0)
    db = tmp_path / "f.db"
    async with FakeExchange(trades, rate=250, restamp=True, marks=sent, mark_rate=40) as ex:
        cfg = load_config(
            use_user_file=False,
            overrides={
                ("storage", "db"): str(db),
                ("analytics", "window"): 10,
                ("feed", "backfill"): "off",
                ("feed", "ws_url"): ex.ws_base,
                ("feed", "rest_url"): ex.rest_base,
            },
        )
        engine = Engine(cfg, [("BTCUSDT", "ETHUSDT")])
        seen: list[Snapshot] = []
        lock = threading.Lock()

        class Keep(Mailbox):
            def put(self, event: object) -> None:
                if isinstance(event, SnapshotEvent) and event.snapshot.funding is not None:
                    with lock:
                        seen.append(event.snapshot)

        engine.subscribe(Keep())
        runner = EngineThread(engine).start()
        try:
            await asyncio.wait_for(ex.marks_done.wait(), 20)
            await asyncio.wait_for(ex.done.wait(), 30)
            end = time.monotonic() + 10
            while True:
                with lock:
                    last = seen[-1] if seen else None
                f = last.funding if last else None
                if (
                    f
                    and f.x
                    and f.y
                    and f.x.updated_ms == sent[-2].E
                    and f.y.updated_ms == sent[-1].E
                ):
                    break
                assert time.monotonic() < end, last
                await asyncio.sleep(0.1)
        finally:
            runner.stop()
    x, y = last.funding.x, last.funding.y
    bx, by = sent[-2], sent[-1]
    assert (x.mark, x.index, x.rate) == (float(bx.p), float(bx.i), float(bx.r))
    assert (y.mark, y.index, y.rate) == (float(by.p), float(by.i), float(by.r))
    assert x.basis_bps == pytest.approx(1e4 * (float(bx.p) - float(bx.i)) / float(bx.i), rel=1e-12)
    assert x.next_funding_ms == settles_ms and x.interval_h == 8
    # the countdown is measured to the exchange's T when the snapshot was built
    assert 0 < x.countdown_s <= (settles_ms - e0) / 1000
    assert x.countdown_s == pytest.approx((settles_ms - time.time() * 1000) / 1000, abs=15)
    metrics = last.metrics()
    assert metrics["funding_x"] == 0.0001 and metrics["funding_y"] == -0.000025
    code, out, err = run_cli(
        "snapshot", "BTCUSDT", "ETHUSDT", "--db", str(db), "--window", "10", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["funding_x"] == 0.0001 and data["funding_y"] == -0.000025
    assert data["funding"]["x"]["mark"] == float(bx.p)
    assert data["funding"]["y"]["next_funding"] == iso_utc(settles_ms)
