"""Push notifications end to end: real writer, real SQLite outbox, real apprise, and a real
loopback HTTP server on 127.0.0.1 that receives apprise's ``json://`` posts.

The server can answer 500, hang past the client's timeout, or be down (its port closed)
for a while; every alert must still arrive exactly once per destination. A URL carries a
token in its user info (``json://user:SECRET@...``): it must not appear in any log line,
output, database or CSV of these tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from quanttui.config import load_config
from quanttui.engine.core import WITHDRAW_ALERT
from quanttui.engine.events import AlertsDelivered, Status
from quanttui.engine.mailbox import Mailbox
from quanttui.model import Alert
from quanttui.notify.outbox import alert_rows, read_status, retraction_rows
from quanttui.notify.urls import routing
from quanttui.notify.worker import Notifier
from quanttui.server.client import RemoteEngine
from quanttui.server.sessions import socket_path
from quanttui.store.db import connect
from quanttui.store.writer import INSERT_ALERT, TickWriter
from tests.fakes.exchange import FakeExchange, FakeTrade
from tests.fakes.inbox import SECRET, Inbox
from tests.helpers import alert_lines, exchange_args, run_cli, spawn
from tests.integration.test_serve import runtime, server_log, start_server  # noqa: F401


def _cfg(tmp_path: Path, url: str, **notify: object) -> Path:
    lines = ["[notify]", f"urls = [{json.dumps(url)}]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in notify.items()]
    p = tmp_path / "c.toml"
    p.write_text("\n".join(lines) + "\n[alerts]\nbell = false\ncooldown_s = 0\n")
    p.chmod(0o600)
    return p


FAST = {
    "backoff_base_s": 0.2,
    "backoff_max_s": 1.0,
    "timeout_s": 1.0,
    "max_attempts": 100,
    "rate_per_min": 6000.0,
    "burst": 50,
    "drain_s": 3.0,
}


def _no_secret(*texts: str | bytes) -> None:
    for t in texts:
        t = t.decode(errors="replace") if isinstance(t, bytes) else t
        assert SECRET not in t


def _db_bytes(db: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal"):
        p = Path(f"{db}{suffix}")
        if p.exists():
            out += p.read_bytes()
    return out


def _outbox(db: Path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as c:
        return c.execute(
            "SELECT alert_id, kind, state, attempts, idem_key, last_error FROM outbox ORDER BY id"
        ).fetchall()


async def _fire(writer: TickWriter, cfg, alerts: list[Alert]) -> None:
    r = routing(cfg)
    for a in alerts:
        then = alert_rows(a, r.for_alert(a.pair, a.rule), 0.083, "ols")
        await writer.execute(
            INSERT_ALERT, (a.ts_ms, a.pair, a.rule, a.metric, a.value, a.threshold), then=then
        )
    assert await writer.flush()


async def _until(pred, within: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


def _alerts(n: int, t0: int = 1_765_788_195_000) -> list[Alert]:
    return [
        Alert(t0 + 1000 * i, "BTCUSDT/ETHUSDT", "abs(zscore) >= 2", "zscore", 2.3 + i / 100, 2.0)
        for i in range(n)
    ]


# ---------------------------------------------------------------- a real headless run
def excursion_trades() -> list[FakeTrade]:
    """ETH at 100, then 110 for 3 s, back to 100, 110 again, then 100 (20 trades/s)."""
    out = []
    ids = {"BTCUSDT": 100, "ETHUSDT": 500}
    for level in [100, 110, 100, 110, 100]:
        for i in range(60):
            sym = "BTCUSDT" if i % 2 else "ETHUSDT"
            ids[sym] += 1
            price = "90000.0" if sym == "BTCUSDT" else f"{level:.1f}"
            out.append(FakeTrade(sym, ids[sym], price, "0.01", 0, False))
    return out


async def _headless(ex: FakeExchange, cfg: Path, db: Path, *args: str):
    return await spawn(
        "BTCUSDT",
        "ETHUSDT",
        "--headless",
        "--alert",
        "price_y > 105",
        "--window",
        "10",
        *args,
        "--config",
        str(cfg),
        "--db",
        str(db),
        *exchange_args(ex),
    )


async def test_headless_alerts_arrive_with_their_fields_and_equal_the_stored_ones(
    tmp_path: Path,
) -> None:
    inbox = Inbox().start()
    try:
        cfg = _cfg(tmp_path, "json://127.0.0.1:1/unused", **FAST)
        db = tmp_path / "h.db"
        async with FakeExchange(excursion_trades(), rate=20, restamp=True) as ex:
            proc = await _headless(ex, cfg, db, "--notify", inbox.url())
            await asyncio.wait_for(ex.done.wait(), 60)
            await _until(lambda: len(inbox.received) >= 2, 10)
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        lines = alert_lines(out)
        with contextlib.closing(sqlite3.connect(db)) as c:
            stored = c.execute(
                "SELECT id, ts_ms, pair, rule, metric, value, threshold FROM alerts ORDER BY id"
            ).fetchall()
            dests = {r[0] for r in c.execute("SELECT destination FROM outbox")}
        assert len(stored) == 2 == len(lines)
        # the inbox got exactly the stored alerts, once each, for the --notify URL
        mine = [m for m in inbox.received if m["title"].startswith("quanttui BTCUSDT/ETHUSDT")]
        assert len(mine) == 2
        for m, (aid, ts, pair, rule, _metric, value, thr), line in zip(
            mine, stored, lines, strict=True
        ):
            body = m["message"]
            assert m["title"] == f"quanttui {pair}: {rule}"
            assert f"pair {pair}, rule {rule}, value {value:+.4f}, threshold {thr:g}" in body
            assert f"bar {line['time']} (UTC)" in body
            assert "hedge " in body and "(ols)" in body
            assert body.splitlines()[0].startswith("price_y = +110 > 105")
            assert m["idempotency_key"].startswith(f"qt-{aid}-{ts}-")
            assert f"id {m['idempotency_key']}" in body
        assert len(set(inbox.keys())) == len(inbox.keys())
        # the other configured URL (port 1, nothing listens) is pending, not lost
        assert len(dests) == 2
        rows = _outbox(db)
        assert sorted(r[2] for r in rows).count("delivered") == 2
        assert all(r[2] in ("pending", "sending", "delivered") for r in rows)
        code, so, se = run_cli(
            "notify", "status", "--config", str(cfg), "--db", str(db), "--notify", inbox.url()
        )
        assert code == 0, se
        assert "2 pending, 0 failed, 2 delivered" in so
        assert "json://127.0.0.1:1/unused" in so
        csv_dir = tmp_path / "csv"
        code, eo, ee = run_cli(
            "export", "BTCUSDT", "ETHUSDT", "--db", str(db), "--config", str(cfg),
            "--timeframe", "1s", "--window", "10", "--out", str(csv_dir),
        )  # fmt: skip
        assert code == 0, ee
        csvs = [p.read_text() for p in csv_dir.rglob("*.csv")]
        assert csvs
        _no_secret(
            out, err, so, se, eo, ee, _db_bytes(db), *csvs, *(json.dumps(h) for h in inbox.headers)
        )
    finally:
        inbox.stop()


async def test_kill_9_with_pending_deliveries_then_restart_delivers_them(tmp_path: Path) -> None:
    inbox = Inbox()  # not started: its port is closed
    url = inbox.url()
    cfg = _cfg(tmp_path, url, **FAST)
    db = tmp_path / "k.db"
    async with FakeExchange(excursion_trades(), rate=20, restamp=True) as ex:
        proc = await _headless(ex, cfg, db)
        await asyncio.wait_for(ex.done.wait(), 60)

        def two_tried() -> bool:
            try:
                rows = _outbox(db)
            except sqlite3.Error:
                return False
            return len(rows) == 2 and all(r[3] >= 1 for r in rows)

        assert await _until(two_tried, 15)
        proc.send_signal(signal.SIGKILL)
        _, err1 = await asyncio.wait_for(proc.communicate(), 10)
    rows = _outbox(db)
    assert [r[2] for r in rows] != ["delivered", "delivered"]
    assert all(r[5] for r in rows if r[2] == "pending")  # the refusal is recorded
    inbox.start()
    try:
        calm = [
            FakeTrade("BTCUSDT" if i % 2 else "ETHUSDT", 10_000 + i, "100.0", "0.01", 0, False)
            for i in range(40)
        ]
        async with FakeExchange(calm, rate=20, restamp=True) as ex:
            proc = await _headless(ex, cfg, db)
            assert await _until(lambda: len(inbox.received) >= 2, 30)
            await asyncio.wait_for(ex.done.wait(), 60)
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert len(inbox.received) == 2
        with contextlib.closing(sqlite3.connect(db)) as c:
            ids = [r[0] for r in c.execute("SELECT id FROM alerts ORDER BY id")]
        assert [k.split("-")[1] for k in inbox.keys()] == [str(i) for i in ids]
        assert [r[2] for r in _outbox(db)] == ["delivered", "delivered"]
        _no_secret(err1, out, err, _db_bytes(db))
    finally:
        inbox.stop()


# ---------------------------------------------------------------- the worker, in process
async def _run_worker(tmp_path: Path, url: str, alerts: list[Alert], **notify):
    cfg = load_config(_cfg(tmp_path, url, **{**FAST, **notify}))
    db = tmp_path / "w.db"
    writer = TickWriter(db, 0.05)
    await writer.start()
    notifier = Notifier(db, cfg.notify, routing(cfg))
    await notifier.start()
    await _fire(writer, cfg, alerts)
    return cfg, db, writer, notifier


async def test_500_then_timeout_then_down_then_up_each_alert_exactly_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox().start()
    inbox.fail_next = 3
    inbox.hang_s = 2.5
    caplog.set_level("WARNING", logger="quanttui")
    cfg, db, writer, notifier = await _run_worker(tmp_path, inbox.url(), _alerts(3))
    try:
        assert await _until(lambda: len(inbox.received) == 3, 20)
        assert inbox.attempts >= 6  # three 500s first
        # hang past the 1 s timeout: the attempt fails, the row is retried
        inbox.mode = "hang"
        await _fire(writer, cfg, _alerts(2, t0=1_765_789_000_000))
        assert await _until(lambda: inbox.attempts >= 8, 10)
        errors = [r[5] for r in _outbox(db) if r[5]]
        assert errors
        # then down for 30 s (port closed), then back
        inbox.stop()
        inbox.mode = "ok"
        await _fire(writer, cfg, _alerts(2, t0=1_765_790_000_000))
        await asyncio.sleep(30)
        assert len(inbox.received) == 3
        inbox.start()
        assert await _until(lambda: len(inbox.received) == 7, 20)
        await asyncio.sleep(1.5)  # nothing more comes: no duplicate
        assert len(inbox.received) == 7
        assert len(set(inbox.keys())) == 7
        assert [r[2] for r in _outbox(db)] == ["delivered"] * 7
        st = notifier.status()
        assert (st.pending, st.failed, st.delivered) == (0, 0, 7)
    finally:
        await notifier.stop(0)
        await writer.close()
        inbox.stop()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "delivery to json://user:****@127.0.0.1" in logs and "500" in logs
    status = read_status(db)
    _no_secret(logs, _db_bytes(db), repr(status), st.last_error or "")
    assert "\x1b" not in logs


async def test_attempt_cap_marks_failed_and_status_lists_it(tmp_path: Path) -> None:
    inbox = Inbox().start()
    inbox.mode = "500"
    cfg, db, writer, notifier = await _run_worker(tmp_path, inbox.url(), _alerts(1), max_attempts=3)
    try:
        assert await _until(lambda: notifier.status().failed == 1, 15)
        await asyncio.sleep(0.5)
        assert inbox.attempts == 3
    finally:
        await notifier.stop(0)
        await writer.close()
        inbox.stop()
    code, out, err = run_cli(
        "notify", "status", "--config", str(_cfg(tmp_path, inbox.url())), "--db", str(db)
    )
    assert code == 0, err
    assert "0 pending, 1 failed, 0 delivered" in out
    assert "failed" in out and "3 attempts" in out and "json://user:****@127.0.0.1" in out
    assert "\\x1b" in out  # the service's escape sequence, shown escaped
    _no_secret(out, err)


async def test_retraction_follows_its_alert(tmp_path: Path) -> None:
    inbox = Inbox().start()
    inbox.fail_next = 2  # the alert needs retries: the retraction must still come after it
    a = _alerts(1)[0]
    cfg, db, writer, notifier = await _run_worker(tmp_path, inbox.url(), [a])
    try:
        t = int(time.time() * 1000)
        await writer.execute(
            WITHDRAW_ALERT,
            (t, a.ts_ms, a.pair, a.rule),
            then=retraction_rows(a, t, "a recompute from the database changed its bar"),
        )
        assert await writer.flush()
        assert await _until(lambda: len(inbox.received) == 2, 15)
    finally:
        await notifier.stop(0)
        await writer.close()
        inbox.stop()
    first, second = inbox.received
    assert first["title"] == "quanttui BTCUSDT/ETHUSDT: abs(zscore) >= 2"
    assert second["title"] == "quanttui BTCUSDT/ETHUSDT: WITHDRAWN abs(zscore) >= 2"
    assert "withdrawn: a recompute from the database changed its bar" in second["message"]
    assert second["idempotency_key"] == first["idempotency_key"] + "-withdrawn"


async def test_storm_is_rate_limited_with_the_overflow_summarised(tmp_path: Path) -> None:
    """An always-true rule on 20 pairs: 20 alerts at once to one destination with a
    bucket of 3. Two go alone, the 18 others in one summary; none is dropped."""
    inbox = Inbox().start()
    pairs = [f"SYM{i:02d}USDT/ETHUSDT" for i in range(20)]
    storm = [Alert(1_765_788_195_000, p, "price_y > 0", "price_y", 3000.0, 0.0) for p in pairs]
    cfg, db, writer, notifier = await _run_worker(
        tmp_path, inbox.url(), storm, burst=3, rate_per_min=20.0
    )
    try:
        assert await _until(lambda: notifier.status().delivered == 20, 15)
        await asyncio.sleep(0.5)
    finally:
        await notifier.stop(0)
        await writer.close()
        inbox.stop()
    assert len(inbox.received) == 3
    alone, summary = inbox.received[:2], inbox.received[2]
    assert [m["title"] for m in alone] == [f"quanttui {p}: price_y > 0" for p in pairs[:2]]
    assert summary["title"] == "quanttui: 18 notifications (rate limit)"
    for p in pairs[2:]:
        assert f"{p}: price_y > 0" in summary["message"]
    with contextlib.closing(sqlite3.connect(db)) as c:
        got = c.execute(
            "SELECT count(*), count(DISTINCT summary_key) FROM outbox "
            "WHERE state = 'delivered' AND summary_key IS NOT NULL"
        ).fetchone()
    assert got == (18, 1)


async def test_alert_and_outbox_rows_commit_together(tmp_path: Path) -> None:
    """The outbox rows ride the alert's transaction: an outbox insert that fails takes
    the alert row with it."""
    db = tmp_path / "t.db"
    connect(db).close()
    writer = TickWriter(db, 0.05)
    await writer.start()
    try:
        a = _alerts(1)[0]
        cfg = load_config(_cfg(tmp_path, "json://127.0.0.1:9/x"))
        then = alert_rows(a, routing(cfg).default, 1.0, "ols")
        row = (a.ts_ms, a.pair, a.rule, a.metric, a.value, a.threshold)
        await writer.execute(INSERT_ALERT, row, then=then)
        bad = ((then[0][0].replace("outbox(", "outbox_nope("), then[0][1]),)
        await writer.execute(INSERT_ALERT, row, then=bad)
        assert await writer.flush()
    finally:
        await writer.close()
    with contextlib.closing(sqlite3.connect(db)) as c:
        assert c.execute("SELECT count(*) FROM alerts").fetchone() == (1,)
        assert c.execute("SELECT alert_id, state FROM outbox").fetchall() == [(1, "pending")]
    assert writer.rejected == 1


def test_notify_test_command_one_line(tmp_path: Path) -> None:
    inbox = Inbox().start()
    try:
        code, out, err = run_cli("notify", "test", inbox.url())
        assert code == 0, err
        assert (
            out.strip()
            == f"ok: sent a test message to json://user:****@127.0.0.1:{inbox.port}/hook"
        )
        assert len(inbox.received) == 1
        inbox.mode = "500"
        code, out, err = run_cli("notify", "test", inbox.url())
        assert code == 1
        assert len(out.strip().splitlines()) == 1 and out.startswith("FAILED: could not send")
        _no_secret(out, err)
    finally:
        inbox.stop()
    code, out, err = run_cli("notify", "test", inbox.url())
    assert code == 1 and out.startswith("FAILED:")
    _no_secret(out, err)


def test_env_urls_need_no_file(tmp_path: Path) -> None:
    inbox = Inbox().start()
    try:
        env = {**os.environ, "QUANTTUI_NOTIFY_URLS": inbox.url()}
        import subprocess
        import sys

        (tmp_path / "none.toml").write_text("")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "quanttui",
                "notify",
                "test",
                "--config",
                str(tmp_path / "none.toml"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("ok: sent a test message to json://user:****@")
        _no_secret(proc.stdout, proc.stderr)
    finally:
        inbox.stop()


async def test_engine_fire_and_withdraw_write_the_outbox_and_deliver_in_order(
    tmp_path: Path,
) -> None:
    """The engine's own `_fire`/`_withdraw` (not a copy of their statements): the alert
    and its outbox row in one commit, the retraction after it, both delivered in order."""
    from quanttui.engine.core import Engine

    inbox = Inbox().start()
    db = tmp_path / "e.db"
    cfg = load_config(_cfg(tmp_path, inbox.url(), **FAST), {("storage", "db"): str(db)})
    engine = Engine(cfg, [("BTCUSDT", "ETHUSDT")])
    box = engine.subscribe(Mailbox())
    await engine.feed.writer.start()
    mon = engine.pairs["BTCUSDT/ETHUSDT"]
    a = _alerts(1)[0]
    try:
        engine._fire(mon, [a])
        await asyncio.sleep(0.05)
        engine._withdraw([a])
        await asyncio.sleep(0.05)
        assert await engine.feed.writer.flush()
        await engine._start_notifier()
        assert engine.notifier is not None
        notifier = engine.notifier
        assert await _until(lambda: notifier.status().delivered == 2, 15)
        st = notifier.status()
        assert (st.pending, st.failed, st.delivered) == (0, 0, 2)
        events, latest = box.drain()
        # the view hears of the delivery: the alert once, and the outbox's counts
        assert [e.alerts for e in events if isinstance(e, AlertsDelivered)] == [(a,)]
        status = [e for e in latest if isinstance(e, Status)]
        assert status and status[0].notify and status[0].notify_pending == 0
    finally:
        if engine.notifier is not None:
            await engine.notifier.stop(0)
        await engine.feed.writer.close()
        inbox.stop()
    assert [m["title"] for m in inbox.received] == [
        "quanttui BTCUSDT/ETHUSDT: abs(zscore) >= 2",
        "quanttui BTCUSDT/ETHUSDT: WITHDRAWN abs(zscore) >= 2",
    ]
    assert "(hedge unknown)" in inbox.received[0]["message"]  # no bars yet


@pytest.mark.usefixtures("runtime")
async def test_the_server_pushes_its_alerts_and_a_late_view_sees_them_delivered(
    tmp_path: Path,
) -> None:
    """`quanttui serve --notify`: the server delivers (no view needed), and a view that
    attaches afterwards gets the alerts, their delivery and the outbox's counts."""
    inbox = Inbox().start()
    cfg = _cfg(tmp_path, inbox.url(), **FAST)
    db = tmp_path / "s.db"
    try:
        async with (
            asyncio.timeout(120),
            FakeExchange(excursion_trades(), rate=20, restamp=True) as ex,
        ):
            server = await start_server(
                ex, db, "--config", str(cfg), "--alert", "price_y > 105", "--window", "10"
            )
            try:
                await asyncio.wait_for(ex.done.wait(), 60)
                assert await _until(lambda: len(inbox.received) >= 2, 20)
                box = Mailbox()
                view = RemoteEngine(socket_path(db), box, history=True).connect().start()
                try:
                    seen: list = []

                    def delivered() -> bool:
                        events, latest = box.drain()
                        seen.extend([*events, *latest])
                        return any(isinstance(e, AlertsDelivered) for e in seen) and any(
                            isinstance(e, Status) and e.notify and e.notify_pending == 0
                            for e in seen
                        )

                    assert await _until(delivered, 10)
                finally:
                    view.stop()
            finally:
                server.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(server.wait, 10)
        assert code == 0, server_log(db)
    finally:
        inbox.stop()
    with contextlib.closing(sqlite3.connect(db)) as c:
        stored = c.execute("SELECT id, rule FROM alerts ORDER BY id").fetchall()
    assert len(stored) == 2
    assert [m["idempotency_key"].split("-")[1] for m in inbox.received] == [
        str(i) for i, _ in stored
    ]
    shown = [a for e in seen if isinstance(e, AlertsDelivered) for a in e.alerts]
    assert [a.rule for a in shown] == [r for _, r in stored]
    assert [r[2] for r in _outbox(db)] == ["delivered", "delivered"]
    _no_secret(server_log(db), _db_bytes(db))
    assert SECRET.lower() not in server_log(db).lower()


async def test_sighup_moves_the_servers_deliveries_to_the_new_destinations(
    tmp_path: Path,
    runtime: Path,  # noqa: F811
) -> None:
    """`[notify]` changed under a running server, then SIGHUP: an unknown URL is refused
    in one logged line and the old destination keeps its deliveries; a good one takes the
    alerts fired after the reload, and the old one gets none of them."""
    first, second = Inbox().start(), Inbox().start()
    cfg = _cfg(tmp_path, first.url(), **FAST)
    db = tmp_path / "h.db"

    def reload(url: str) -> None:
        cfg.write_text(_cfg(tmp_path, url, **FAST).read_text())
        server.send_signal(signal.SIGHUP)

    try:
        async with (
            asyncio.timeout(120),
            FakeExchange(excursion_trades(), rate=10, restamp=True) as ex,
        ):
            server = await start_server(
                ex, db, "--config", str(cfg), "--alert", "price_y > 105", "--window", "10"
            )
            try:
                assert await _until(lambda: len(first.received) >= 1, 40), server_log(db)
                reload("nonsense://" + SECRET)
                assert await _until(lambda: "config not reloaded" in server_log(db), 10)
                assert "nonsense://****" in server_log(db)
                reload(second.url())
                assert await _until(lambda: "1 notification destination" in server_log(db), 10)
                await asyncio.wait_for(ex.done.wait(), 60)
                assert await _until(lambda: len(second.received) >= 1, 20), server_log(db)
            finally:
                server.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(server.wait, 10)
        assert code == 0, server_log(db)
    finally:
        first.stop()
        second.stop()
    with contextlib.closing(sqlite3.connect(db)) as c:
        ids = [i for (i,) in c.execute("SELECT id FROM alerts ORDER BY id")]
    assert len(ids) == 2
    key = lambda m: int(m["idempotency_key"].split("-")[1])  # noqa: E731
    assert [key(m) for m in first.received] == [ids[0]]
    assert [key(m) for m in second.received] == [ids[1]]
    _no_secret(server_log(db), _db_bytes(db))
    assert SECRET.lower() not in server_log(db).lower()
