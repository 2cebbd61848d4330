"""Push notifications seen from the app: a real replay of the real recording, the engine in
its own process (as the CLI runs it), a real loopback HTTP inbox that receives apprise's
``json://`` posts. The inbox must get exactly the stored alerts (and a retraction per
withdrawn one), the status line must show the delivery state, and every delivered
alert's row in the alert log must be marked; the URL's secret must appear nowhere."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from pathlib import Path

from quanttui.app.app import QuantApp
from quanttui.app.widgets.loglines import DELIVERED_MARK, LogLines
from quanttui.config import NotifyConfig
from quanttui.feed.replay import ReplaySpec, prepare_source
from tests.app.conftest import RECORDING, app_config
from tests.app.test_app import text_of, until
from tests.app.test_snapshots import screen_text
from tests.fakes.inbox import SECRET, Inbox

OFFLINE = ("ws://127.0.0.1:1/market", "http://127.0.0.1:1")


async def test_replay_alerts_are_pushed_shown_as_sent_and_equal_the_stored_ones(
    real_data: Path, tmp_path: Path
) -> None:
    inbox = Inbox().start()
    try:
        src = prepare_source([real_data / RECORDING], tmp_path / "source.db")
        db = tmp_path / "session.db"
        cfg = app_config(db, *OFFLINE, tmp_path / "exports")
        notify = NotifyConfig(
            urls=(inbox.url(),), timeout_s=2.0, rate_per_min=60_000.0, burst=1000, drain_s=5.0
        )
        cfg = dataclasses.replace(cfg, notify=notify)
        app = QuantApp(cfg, "BTCUSDT", "ETHUSDT", replay=ReplaySpec(src, 40.0))
        async with asyncio.timeout(120), app.run_test(size=(120, 40)) as pilot:
            await until(lambda: app.feed_state == "finished", 90)
            await until(lambda: app.status is not None and app.status.notify, 10)

            def settled() -> bool:
                st = app.status
                return st.notify_pending == 0 and st.alerts > 0 and len(inbox.received) > 0

            await until(settled, 30)
            await until(lambda: "notify: all sent" in text_of(app, "#status"), 10)
            await pilot.pause(0.5)
            await pilot.press("e")
            await until(lambda: len(list((tmp_path / "exports").rglob("*.csv"))) >= 4, 20)
            rows = app.monitor.query_one("#alerts", LogLines).texts()
            screen = screen_text(app)
            assert "notify: all sent" in screen
        with contextlib.closing(sqlite3.connect(db)) as c:
            stored = c.execute(
                "SELECT id, ts_ms, pair, rule, value, threshold, withdrawn_ms FROM alerts "
                "ORDER BY id"
            ).fetchall()
            states = c.execute("SELECT DISTINCT state FROM outbox").fetchall()
        assert stored, "the recording's z crosses ±2: alerts expected"
        assert states == [("delivered",)]
        alerts = [m for m in inbox.received if ": WITHDRAWN " not in m["title"]]
        retractions = [m for m in inbox.received if ": WITHDRAWN " in m["title"]]
        # one message per stored alert, in order, each naming its own row, value and rule
        assert [m["idempotency_key"].split("-")[1] for m in alerts] == [str(r[0]) for r in stored]
        for m, (_id, _ts, pair, rule, value, thr, _w) in zip(alerts, stored, strict=True):
            assert m["title"].startswith(f"quanttui {pair}: {rule}")
            assert f"value {value:+.4f}, threshold {thr:g}" in m["message"]
        assert len(retractions) == sum(r[6] is not None for r in stored)
        assert len(set(m["idempotency_key"] for m in inbox.received)) == len(inbox.received)
        # the alert log marks the delivered alerts: every row shown that is not withdrawn
        live = [r for r in rows if not r[-1].startswith("WITHDRAWN")]
        assert live and all(r[-1].endswith(DELIVERED_MARK) for r in live), rows
        assert all(SECRET not in " ".join(r) for r in rows)
        assert SECRET not in screen
        csvs = b"".join(p.read_bytes() for p in (tmp_path / "exports").rglob("*.csv"))
        assert SECRET.encode() not in csvs
    finally:
        inbox.stop()
