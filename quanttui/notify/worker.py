"""`Notifier`: delivers the outbox's due rows, never blocking the engine's loop.

One task per destination, one delivery in flight per destination. Each pass reads the
rows that are due (``pending`` or ``sending`` with ``next_try_ms`` reached; a retraction
only once its alert's row for that destination is delivered or failed), takes a token
from the destination's bucket and sends:

* one row on its own while the bucket has tokens to spare, or
* every due row in one summary message when the backlog exceeds what the bucket holds
  (a storm is summarised, never dropped; each row is marked delivered with the summary's
  key in `summary_key`).

Before a send the rows are marked ``sending`` and their attempt counted (committed), so
a process killed during a send leaves them to be sent again at the next start (at least
once); after it they are ``delivered`` (never sent again) or back to ``pending`` at
``now + backoff`` (``base * 2^(attempts-1)``, capped, times a random 0.5-1: jitter), or
``failed`` at the attempt cap. apprise's notify is blocking: it runs in a worker thread
(`asyncio.to_thread`), and the outbox's own SQLite connection lives in a thread of its
own, so the loop only awaits.

A service's error text is outside text: the secrets of every URL are scrubbed from it
and it goes through `quanttui.textsafe.printable` before it is stored or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from quanttui.config import NotifyConfig
from quanttui.model import Alert
from quanttui.notify.message import summary_message, with_id
from quanttui.notify.outbox import OutboxCounts, OutboxRow, counts, rows
from quanttui.notify.urls import Destination, Routing, Scrubber, instantiate, quiet_apprise

log = logging.getLogger("quanttui.notify")

POLL_S = 0.25
"""How often each destination looks for due rows (the writer commits within 250 ms)."""
BATCH = 500


@dataclass
class TokenBucket:
    """`capacity` tokens, refilled at `rate` a second."""

    capacity: float
    rate: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def refill(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def wait_s(self) -> float:
        """Seconds until one token is there."""
        return max(0.0, (1.0 - self.refill()) / self.rate)

    def take(self) -> None:
        self.refill()
        self.tokens -= 1.0


def backoff_s(attempts: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: a random 50-100% of ``min(cap, base*2^(n-1))``."""
    d = min(cap, base * 2 ** max(0, attempts - 1))
    return d * (0.5 + 0.5 * (rng or random).random())


class _Capture(logging.Handler):
    """Collects the apprise logger's warnings of the current thread's delivery."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        buf = getattr(self.local, "buf", None)
        if buf is None:
            return
        with contextlib.suppress(Exception):
            msg = record.getMessage()
            if record.levelno >= logging.WARNING:
                buf.append(msg)
            elif msg.startswith("Response Details"):  # the service's own answer
                buf.append("service said: " + msg.partition(":")[2].strip()[:500])


_capture: _Capture | None = None


def _install_capture() -> _Capture:
    global _capture
    quiet_apprise()
    if _capture is None:
        _capture = _Capture()
        lg = logging.getLogger("apprise")
        lg.addHandler(_capture)
        lg.setLevel(logging.DEBUG)  # the handlers choose; nothing propagates
    return _capture


def deliver(d: Destination, title: str, body: str, key: str, timeout_s: float) -> tuple[bool, str]:
    """Send one message, blocking (run it in a thread): (delivered, error text). The
    error text is raw: the caller scrubs and sanitises it."""
    cap = _install_capture()
    plugin = instantiate(d.url)
    if plugin is None:
        return False, "the URL is not one apprise knows"
    plugin.socket_connect_timeout = min(timeout_s, 10.0)
    plugin.socket_read_timeout = timeout_s
    extras = getattr(plugin, "payload_extras", None)
    if isinstance(extras, dict):
        plugin.payload_extras = {**extras, "idempotency_key": key}
    headers = getattr(plugin, "headers", None)
    if isinstance(headers, dict):
        plugin.headers = {**headers, "Idempotency-Key": key}
    cap.local.buf = []
    try:
        ok = bool(plugin.notify(body=body, title=title))
    except Exception as exc:  # noqa: BLE001 - a plugin is outside code
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        msgs, cap.local.buf = cap.local.buf, None
    return ok, "" if ok else ("; ".join(msgs) or "the service refused the message")


@dataclass(frozen=True, slots=True)
class NotifyStatus:
    """For a view's status line: outbox counts (pending includes rows being sent) and
    the last error (masked and sanitised)."""

    pending: int = 0
    failed: int = 0
    delivered: int = 0
    last_error: str | None = None


class Notifier:
    def __init__(
        self,
        db: str | Path,
        cfg: NotifyConfig,
        routing: Routing,
        *,
        on_change: Callable[[NotifyStatus], None] | None = None,
        on_delivered: Callable[[tuple[Alert, ...]], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.db = Path(db)
        self.cfg = cfg
        self.routing = routing
        self.destinations = {d.key: d for d in routing.all}
        self.scrub = Scrubber(self.destinations.values())
        self.on_change = on_change
        """Called on the loop after each delivery attempt, with the new counts."""
        self.on_delivered = on_delivered
        """Called on the loop with the alerts that have just been delivered to every
        destination they had (for an alert log's mark)."""
        self.rng = rng or random.Random()
        self.sent_messages = 0
        self.summaries = 0
        self._counts = OutboxCounts()
        self._last_error: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notify-db")
        self._conn: sqlite3.Connection | None = None
        self._tasks: list[asyncio.Task] = []
        self._in_flight: set[str] = set()
        self._failing: set[str] = set()
        """Destinations whose last attempt failed: one warning per episode, not per try."""
        self._stopping = False

    # ------------------------------------------------------------------ public
    def status(self) -> NotifyStatus:
        return NotifyStatus(
            self._counts.pending,
            self._counts.failed,
            self._counts.delivered,
            self._last_error,
        )

    async def start(self) -> None:
        """Open the outbox connection and start one task per destination."""
        await self._db(self._open)
        await self._refresh()
        for d in self.destinations.values():
            self._tasks.append(asyncio.create_task(self._run(d), name=f"notify {d.name}"))

    async def stop(self, drain_s: float | None = None) -> None:
        """Wait up to `drain_s` (config `drain_s`) while deliveries are due or in
        flight, then stop. What is left stays in the outbox for the next start."""
        drain = self.cfg.drain_s if drain_s is None else drain_s
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline and self._tasks:
            if not self._in_flight and not await self._db(self._any_due):
                break
            await asyncio.sleep(0.05)
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._db(self._close)
        self._pool.shutdown(wait=False)

    # ------------------------------------------------------------------ db thread
    async def _db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _open(self) -> None:
        self._conn = sqlite3.connect(self.db, timeout=5.0, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 5000")

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _due(self, key: str, now: int) -> list[OutboxRow]:
        assert self._conn is not None
        return rows(
            self._conn,
            "destination = ? AND state IN ('pending', 'sending') AND next_try_ms <= ? "
            "AND NOT (kind = 'retraction' AND EXISTS (SELECT 1 FROM outbox a "
            "WHERE a.alert_id = outbox.alert_id AND a.destination = outbox.destination "
            "AND a.kind = 'alert' AND a.state IN ('pending', 'sending')))",
            (key, now),
            BATCH,
        )

    def _any_due(self) -> bool:
        assert self._conn is not None
        keys = list(self.destinations)
        marks = ",".join("?" * len(keys))
        r = self._conn.execute(
            f"SELECT 1 FROM outbox WHERE destination IN ({marks}) "
            "AND state IN ('pending', 'sending') AND next_try_ms <= ? LIMIT 1",
            (*keys, _now()),
        ).fetchone()
        return r is not None

    def _write(self, sql: str, params: list[tuple]) -> None:
        assert self._conn is not None
        with self._conn:
            self._conn.executemany(sql, params)

    def _begin(self, ids: list[int]) -> None:
        self._write(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1 WHERE id = ?",
            [(i,) for i in ids],
        )

    def _done(self, ids: list[int], summary_key: str | None) -> tuple[Alert, ...]:
        t = _now()
        self._write(
            "UPDATE outbox SET state = 'delivered', delivered_ms = ?, last_error = NULL, "
            "summary_key = ? WHERE id = ?",
            [(t, summary_key, i) for i in ids],
        )
        assert self._conn is not None
        marks = ",".join("?" * len(ids))
        return tuple(
            Alert(*r)
            for r in self._conn.execute(
                "SELECT ts_ms, pair, rule, metric, value, threshold FROM alerts WHERE id IN "
                "(SELECT alert_id FROM outbox WHERE kind = 'alert' AND alert_id IN "
                f"(SELECT alert_id FROM outbox WHERE id IN ({marks}) AND kind = 'alert') "
                "GROUP BY alert_id HAVING sum(state != 'delivered') = 0) ORDER BY id",
                ids,
            )
        )

    def _fail(self, batch: list[OutboxRow], error: str) -> int:
        """Back to pending with backoff, or failed at the cap; returns how many failed."""
        t = _now()
        params, failed = [], 0
        for r in batch:
            n = r.attempts + 1
            if n >= self.cfg.max_attempts:
                params.append(("failed", t, error, r.id))
                failed += 1
            else:
                wait = backoff_s(n, self.cfg.backoff_base_s, self.cfg.backoff_max_s, self.rng)
                params.append(("pending", t + int(wait * 1000), error, r.id))
        self._write(
            "UPDATE outbox SET state = ?, next_try_ms = ?, last_error = ? WHERE id = ?", params
        )
        return failed

    def _read_counts(self) -> OutboxCounts:
        assert self._conn is not None
        return counts(self._conn)

    # ------------------------------------------------------------------ the tasks
    async def _refresh(self) -> None:
        self._counts = await self._db(self._read_counts)
        if self.on_change is not None:
            try:
                self.on_change(self.status())
            except Exception:  # noqa: BLE001 - a view's callback
                log.debug("notify on_change failed", exc_info=True)

    async def _run(self, d: Destination) -> None:
        bucket = TokenBucket(float(self.cfg.burst), self.cfg.rate_per_min / 60.0)
        while not self._stopping:
            try:
                due = await self._db(self._due, d.key, _now())
            except sqlite3.Error as exc:
                log.warning("notify: cannot read the outbox: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if not due:
                await asyncio.sleep(POLL_S)
                continue
            wait = bucket.wait_s()
            if wait > 0:
                await asyncio.sleep(min(wait, 5.0))
                continue
            tokens = bucket.refill()
            batch = due if len(due) > 1 and tokens < 2 else due[:1]
            bucket.take()
            self._in_flight.add(d.key)
            try:
                await self._send(d, batch)
            except sqlite3.Error as exc:
                log.warning("notify: cannot update the outbox: %s", exc)
                await asyncio.sleep(1.0)
            finally:
                self._in_flight.discard(d.key)

    async def _send(self, d: Destination, batch: list[OutboxRow]) -> None:
        ids = [r.id for r in batch]
        await self._db(self._begin, ids)
        if len(batch) == 1:
            r = batch[0]
            key, title, body, summary = r.idem_key, r.title, with_id(r.body, r.idem_key), None
        else:
            digest = hashlib.sha256(",".join(r.idem_key for r in batch).encode()).hexdigest()
            key = summary = f"qt-summary-{digest[:16]}"
            title, body = summary_message([(r.title, r.body) for r in batch], d.name)
            body = with_id(body, key)
        timeout = self.cfg.timeout_s
        try:
            ok, err = await asyncio.wait_for(
                asyncio.to_thread(deliver, d, title, body, key, timeout), 2 * timeout + 5
            )
        except TimeoutError:
            ok, err = False, f"no answer within {2 * timeout + 5:g} s"
        if ok:
            self.sent_messages += 1
            self.summaries += summary is not None
            done = await self._db(self._done, ids, summary)
            if done and self.on_delivered is not None:
                try:
                    self.on_delivered(done)
                except Exception:  # noqa: BLE001 - a view's callback
                    log.debug("notify on_delivered failed", exc_info=True)
            if d.key in self._failing:
                self._failing.discard(d.key)
                log.warning("notify: %s takes deliveries again", d.name)
            if summary is not None:
                log.warning(
                    "notify: %d notifications to %s summarised in one message (rate limit)",
                    len(batch),
                    d.name,
                )
        else:
            text = self.scrub(err, 300)
            self._last_error = f"{d.name}: {text}"
            failed = await self._db(self._fail, batch, text)
            n = batch[0].attempts + 1
            first = d.key not in self._failing
            self._failing.add(d.key)
            if failed:
                log.warning(
                    "notify: gave up on %d notification(s) to %s after %d attempts: %s",
                    failed,
                    d.name,
                    n,
                    text,
                )
            elif first:
                log.warning(
                    "notify: delivery to %s failed (attempt %d of %d), will retry: %s",
                    d.name,
                    n,
                    self.cfg.max_attempts,
                    text,
                )
        await self._refresh()


def _now() -> int:
    return int(time.time() * 1000)


def send_test(url: str, timeout_s: float = 10.0) -> tuple[bool, str]:
    """`quanttui notify test`: send one message to `url` (blocking); (ok, one line)."""
    from quanttui.notify.urls import NotifyUrlError, destination

    try:
        d = destination(url)
    except NotifyUrlError as exc:
        return False, str(exc)
    key = f"qt-test-{int(time.time() * 1000)}"
    ok, err = deliver(
        d,
        "quanttui test",
        with_id("A test notification from quanttui: this destination works.", key),
        key,
        timeout_s,
    )
    scrub = Scrubber([d])
    if ok:
        return True, f"sent a test message to {d.name}"
    return False, f"could not send to {d.name}: {scrub(err, 300)}"
