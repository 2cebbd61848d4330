"""The single writer: one task owns the database's write side and commits in batches.

Per-tick commits cap SQLite near 3.5k rows/s on this class of machine; batching every
available row into one `executemany` per transaction lifts that by an order of magnitude.
Producers (`submit`, `submit_many`, `execute`) only enqueue; the task drains the queue,
writes, and commits at least every `flush_interval` seconds. (Shape after cryptofeed's
backend queue-plus-writer.) The queue holds at most `max_queue` trades (a batch from
`submit_many` is one item of the queue and counts as its length), so a healthy writer holds
at most twice that many trades: the queue, and the batch being committed.

A database that stops taking writes (disk full, I/O error, a lock held past the busy
timeout, a file deleted or replaced under us) must not lose trades silently, print a
traceback or keep the process from exiting. So:

* A failed commit is rolled back and its trades stay, oldest first, in a retry buffer
  bounded at `max_unsaved` trades (`MAX_UNSAVED` = 200,000, about 45 MB: a `Tick` takes
  216 bytes, measured with tracemalloc). `error`, `unsaved` and `dropped` say so at once,
  and `on_error` fires once when an episode starts and once when it ends.
* The buffer is retried with capped exponential backoff (0.25 s doubling to 5 s), in
  chunks that halve after each failure, so a little freed space already drains some of it.
  Errors other than a full disk or a lock reopen the connection before the next try, which
  recreates a deleted file (each commit first checks that the path still names the file
  the connection has open: in WAL mode SQLite itself would not notice).
* Past the bound the oldest trades are dropped and counted; their id ranges are written
  to `gaps` with status `open` in the first commit that succeeds, so a REST fill can fetch
  them again (`on_dropped` reports each range).
* The connection lives in its own daemon thread rather than aiosqlite's non-daemon one: a
  call stuck in SQLite's busy wait or in the kernel cannot keep the interpreter from
  exiting, and a result that arrives after the event loop closed is dropped, not printed.
  `close()` makes one last attempt and returns within its deadline whatever the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from itertools import chain, islice
from operator import attrgetter
from pathlib import Path
from typing import Any

from quanttui.model import Tick
from quanttui.store.db import StoreError, connect, lock_holders, prepare

log = logging.getLogger(__name__)

INSERT_TICK = (
    "INSERT OR IGNORE INTO ticks(symbol, trade_id, ts_ms, price, qty, is_buyer_maker) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
ROWS_PER_INSERT = 100
INSERT_TICKS = INSERT_TICK.replace(
    "VALUES (?, ?, ?, ?, ?, ?)", "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?)"] * ROWS_PER_INSERT)
)
"""`INSERT_TICK` of `ROWS_PER_INSERT` rows (600 parameters, within SQLite's historical
limit of 999). SQLite runs a statement without the GIL and `executemany` takes it back after
each one: one statement per 100 rows lets the event loop's thread run while SQLite inserts,
where one per row had the two threads trade the GIL once per trade; SQLite also binds and
steps far fewer statements (1.9 rather than 2.7 us a row, measured alone)."""
_TICK_ROW = attrgetter("symbol", "trade_id", "ts_ms", "price", "qty", "is_buyer_maker")
INSERT_ALERT = (
    "INSERT INTO alerts(ts_ms, pair, rule, metric, value, threshold) VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_GAP = (
    "INSERT INTO gaps(symbol, first_id, last_id, detected_ms, status, filled, resolved_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)

MAX_UNSAVED = 200_000
"""Trades kept for retry while the database fails (about 45 MB)."""
MAX_UNSAVED_ROWS = 20_000
"""Rows of other statements (alerts, gaps, warm-start klines) kept for retry."""
PAGE_CACHE_KIB = 2000
"""SQLite page cache of the writer's connection (`PRAGMA cache_size = -2000`: SQLite's
usual default, stated so that a build with another default cannot change it). Inserts
append to the end of the `ticks` key, so a small cache keeps up; readers open short-lived
connections of their own."""
BUSY_TIMEOUT_S = 2.0
CLOSE_DEADLINE_S = 2.5
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0
CHUNK_MAX = 50_000
CHUNK_MIN = 500
MAX_RUNS = 64
"""Dropped-id ranges kept per symbol; past it the newest two merge (a REST fill of the
wider range re-inserts nothing that is stored: the primary key ignores duplicates)."""

# primary result codes, https://www.sqlite.org/rescode.html
_REASONS = {
    3: "permission denied",
    5: "database locked",
    6: "database locked",
    7: "out of memory",
    8: "read-only database",
    9: "interrupted",
    10: "I/O error",
    11: "database corrupt",
    13: "disk full",
    14: "cannot open database",
    26: "not a database",
}
_SQLITE_READONLY_DBMOVED = 1032
_KEEP_CONNECTION = ("disk full", "database locked", "interrupted")
_CALLER_ERRORS = (
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
)


class DatabaseMoved(StoreError):
    """The path no longer names the file the connection writes to (deleted, renamed or
    replaced): in WAL mode SQLite would go on committing into the unlinked inode."""


def _caller_error(exc: sqlite3.Error) -> bool:
    """A statement that is itself wrong (SQLITE_ERROR: bad SQL, wrong parameter count;
    a constraint; a bad parameter type), whatever state the database is in."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, _CALLER_ERRORS) or (isinstance(code, int) and code & 0xFF == 1)


def _execute_group(conn: sqlite3.Connection, s: Statement) -> None:
    """`s` and its `then` statements inside the open transaction, all or none."""
    if not conn.in_transaction:
        conn.execute("BEGIN")
    conn.execute("SAVEPOINT quanttui_group")
    try:
        rowid = conn.execute(s.sql, s.params).lastrowid
        for sql, params in s.then:
            conn.execute(sql, tuple(rowid if p is LASTROWID else p for p in params))
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK TO quanttui_group")
            conn.execute("RELEASE quanttui_group")
        raise
    conn.execute("RELEASE quanttui_group")


def describe(exc: BaseException) -> tuple[str, str]:
    """(short reason for a status line, SQLite's own message) of a failed write."""
    if isinstance(exc, DatabaseMoved):
        return "database file moved or deleted", str(exc)
    if isinstance(exc, StoreError):
        return "cannot open database", str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    if code == _SQLITE_READONLY_DBMOVED:
        return "database file moved or deleted", str(exc)
    reason = _REASONS.get(code & 0xFF) if isinstance(code, int) else None
    return reason or str(exc) or type(exc).__name__, str(exc)


UPSERT_FUNDING = (
    "INSERT INTO funding(symbol, funding_ms, rate, mark_price) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(symbol, funding_ms) DO UPDATE SET rate = excluded.rate, "
    "mark_price = coalesce(excluded.mark_price, funding.mark_price) "
    "WHERE funding.rate IS NOT excluded.rate "
    "OR funding.mark_price IS NOT coalesce(excluded.mark_price, funding.mark_price)"
)
"""REST is authoritative: it replaces a stored rate and fills a mark price the archive
import left NULL, and touches nothing when the row is already the same."""
INSERT_FUNDING_IGNORE = (
    "INSERT OR IGNORE INTO funding(symbol, funding_ms, rate, mark_price) VALUES (?, ?, ?, ?)"
)
UPSERT_MARK = (
    "INSERT INTO mark_prices(symbol, event_ms, mark_price, index_price, funding_rate, "
    "next_funding_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET "
    "event_ms = excluded.event_ms, mark_price = excluded.mark_price, "
    "index_price = excluded.index_price, funding_rate = excluded.funding_rate, "
    "next_funding_ms = excluded.next_funding_ms WHERE excluded.event_ms > mark_prices.event_ms"
)
"""The latest mark price of a symbol; an older update never replaces a newer one."""
UPSERT_INTERVAL = (
    "INSERT INTO funding_info(symbol, interval_hours, updated_ms) VALUES (?, ?, ?) "
    "ON CONFLICT(symbol) DO UPDATE SET interval_hours = excluded.interval_hours, "
    "updated_ms = excluded.updated_ms WHERE excluded.updated_ms > funding_info.updated_ms"
)
"""A symbol's interval as of `updated_ms` (fundingInfo: the request time; an archive
file: its last settlement); older information never replaces newer."""


LASTROWID = object()
"""In the parameters of a `Statement.then` statement: the rowid the statement inserted."""


@dataclass(frozen=True, slots=True)
class Statement:
    """A non-tick write (alert, gap, kline batch) that rides the same transaction stream.

    `then` holds statements (sql, params) run right after it, all or none (a savepoint):
    an alert and its outbox rows (`quanttui.notify.outbox`). `LASTROWID` among their
    parameters stands for the rowid this statement inserted."""

    sql: str
    params: tuple | list[tuple]
    many: bool = False
    then: tuple[tuple[str, tuple], ...] = ()

    @property
    def rows(self) -> int:
        return len(self.params) if self.many else 1


@dataclass(frozen=True, slots=True)
class WriterStatus:
    """The writer's health, for a view's status line.

    `error` is a short reason ("disk full", "I/O error", "database locked", ...) while
    the last commit failed, else None; `detail` is SQLite's message. `unsaved` trades are
    held for retry, `dropped` were discarded past the bound, `gapped` of them have their
    ids in `gaps` (written with the first commit that succeeds after the drop), `stored`
    is the count of new tick rows committed so far."""

    error: str | None
    detail: str | None
    unsaved: int
    dropped: int
    gapped: int
    stored: int
    since_ms: int | None = None

    @property
    def lost(self) -> int:
        """Trades not in the database: dropped ones plus those still unsaved."""
        return self.unsaved + self.dropped


def db_event_line(st: WriterStatus, max_unsaved: int) -> str:
    """The one stderr line (`record`, `--headless`) for the start or the end of a failure episode."""
    if st.error is not None:
        return (
            f"quanttui: error: database write failed ({st.error}: {st.detail}); "
            f"holding up to {max_unsaved:,} trades in memory and retrying"
        )
    dropped = (
        f"; {st.dropped:,} trades dropped past the bound, their ids recorded as open gaps"
        if st.dropped
        else ""
    )
    return f"quanttui: database writable again, every held trade written{dropped}"


def _ranges(ranges: dict[str, list[tuple[int, int]]], limit: int = 3) -> str:
    parts = []
    for sym, rs in ranges.items():
        shown = ", ".join(f"{lo}..{hi}" if hi > lo else f"{lo}" for lo, hi in rs[:limit])
        more = f" and {len(rs) - limit} more ranges" if len(rs) > limit else ""
        parts.append(f"{sym} {shown}{more}")
    return "; ".join(parts)


def loss_line(st: WriterStatus, ranges: dict[str, list[tuple[int, int]]]) -> str:
    """The final stderr line of a run that could not store everything it received."""
    why = f" ({st.error})" if st.error else ""
    parts = []
    if st.unsaved:
        parts.append(f"{st.unsaved:,} unsaved at exit{why}")
    if st.dropped:
        gapped = f", {st.gapped:,} of them recorded as open gaps" if st.gapped else ""
        parts.append(f"{st.dropped:,} dropped past the retry bound{gapped}")
    ids = _ranges(ranges)
    return f"quanttui: error: {st.lost:,} trades were not stored: {', '.join(parts)}" + (
        f"; trade ids {ids}" if ids else ""
    )


_STOP = object()


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class _Inbox:
    """The writer's queue: `asyncio.Queue`'s calls, but a list of ticks is one item that
    counts as its length towards `maxsize` and `qsize()`, so a batch costs one put and
    one get while the bound stays in trades. `put` waits until the item fits; an item
    larger than `maxsize` never fits (`TickWriter.submit_many` splits batches)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("max_queue must be at least 1")
        self.maxsize = maxsize
        self._items: deque[object] = deque()
        self._size = 0
        self._getter: asyncio.Future[None] | None = None
        self._putters: list[asyncio.Future[None]] = []

    def qsize(self) -> int:
        return self._size

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return self._size >= self.maxsize

    def put_nowait(self, item: object) -> None:
        n = len(item) if type(item) is list else 1
        if self._size + n > self.maxsize:
            raise asyncio.QueueFull
        self._items.append(item)
        self._size += n
        g = self._getter
        if g is not None and not g.done():
            g.set_result(None)

    async def put(self, item: object) -> None:
        n = len(item) if type(item) is list else 1
        while self._size + n > self.maxsize:
            fut = asyncio.get_running_loop().create_future()
            self._putters.append(fut)
            try:
                await fut
            finally:
                with contextlib.suppress(ValueError):
                    self._putters.remove(fut)
        self.put_nowait(item)

    def get_nowait(self) -> object:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        self._size -= len(item) if type(item) is list else 1
        if self._putters:
            for fut in self._putters:
                if not fut.done():
                    fut.set_result(None)
            self._putters.clear()
        return item

    async def get(self) -> object:
        while not self._items:
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        return self.get_nowait()


class _DbThread:
    """The one thread that touches the connection. Daemon, so that the interpreter can
    exit while a call is stuck; results for a loop that has closed are dropped."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="quanttui-db", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, fut, fn = job
            try:
                ok, value = True, fn()
            except Exception as exc:
                ok, value = False, exc
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, fut, ok, value)

    async def call(self, fn: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((loop, fut, fn))
        return await fut

    def stop(self) -> None:
        self._jobs.put(None)


class TickWriter:
    def __init__(
        self,
        path: str | Path,
        flush_interval: float = 0.25,
        max_queue: int = 50_000,
        *,
        max_unsaved: int = MAX_UNSAVED,
        busy_timeout: float = BUSY_TIMEOUT_S,
        on_error: Callable[[WriterStatus], None] | None = None,
        on_dropped: Callable[[str, int, int], None] | None = None,
    ) -> None:
        if max_unsaved < 1:
            raise ValueError("max_unsaved must be at least 1")
        self.path = prepare(path)
        self.flush_interval = flush_interval
        self.max_unsaved = max_unsaved
        self.busy_timeout = busy_timeout
        self.on_error = on_error
        """Called with the status when a failure episode starts and when it ends."""
        self.on_dropped = on_dropped
        """Called with (symbol, first_id, last_id) once a dropped range is in `gaps`."""
        self.queue = _Inbox(max_queue)
        self.received = 0
        self.inserted = 0
        self.commits = 0
        self.last_commit_ms = 0
        self.error: str | None = None
        self.error_detail: str | None = None
        self.error_since_ms: int | None = None
        self.failed_commits = 0
        self.unsaved = 0
        self.dropped = 0
        self.dropped_other = 0
        self.rejected = 0
        self.last_rejected: str | None = None
        self.gaps_recorded = 0
        self.gapped = 0
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._db: _DbThread | None = None
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] = (0, 0)
        self._reopen = False
        self._stopping = False
        self._pending: deque[Tick] = deque()
        self._stmts: deque[Statement] = deque()
        self._stmt_rows = 0
        self._runs: dict[str, list[list[int]]] = {}
        self._unrecorded = 0
        self._chunk = CHUNK_MAX
        self._retry_s = RETRY_FIRST_S
        self._retry_at = 0.0

    # ------------------------------------------------------------------ producers
    async def start(self) -> None:
        """Open the connection in its thread and start the writer task (`StoreError` if
        the file cannot be opened)."""
        self._db = _DbThread()
        try:
            await self._db.call(self._open)
        except (sqlite3.Error, StoreError) as exc:
            self._db.stop()
            self._db = None
            raise StoreError(f"{self.path}: cannot open for writing ({describe(exc)[1]})") from None
        self._task = asyncio.create_task(self._run(), name="tick-writer")
        self.ready.set()

    async def submit(self, tick: Tick) -> None:
        self.received += 1
        await self.queue.put(tick)

    async def submit_many(self, ticks: Iterable[Tick]) -> None:
        batch = list(ticks)
        self.received += len(batch)
        step = self.queue.maxsize
        for i in range(0, len(batch), step):
            await self.queue.put(batch[i : i + step] if len(batch) > step else batch)

    async def execute(
        self,
        sql: str,
        params: tuple | list[tuple] = (),
        many: bool = False,
        then: tuple[tuple[str, tuple], ...] = (),
    ) -> None:
        await self.queue.put(Statement(sql, params, many, then))

    async def flush(self) -> bool:
        """Wait until everything queued before this call has been attempted: True when it
        is committed, False when it waits in the retry buffer (or the writer is stopped)."""
        if self._task is None or self._task.done():
            return self.error is None and not self._pending
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self.queue.put(done)
        return await done

    def status(self) -> WriterStatus:
        return WriterStatus(
            self.error,
            self.error_detail,
            self.unsaved,
            self.dropped,
            self.gapped,
            self.inserted,
            self.error_since_ms,
        )

    def lost_ranges(self) -> dict[str, list[tuple[int, int]]]:
        """Id ranges per symbol of the trades not in the database and not yet recorded
        in `gaps`: the retry buffer plus dropped ranges still waiting for a commit."""
        spans: dict[str, list[tuple[int, int]]] = {
            sym: [(lo, hi) for lo, hi in runs] for sym, runs in self._runs.items()
        }
        for t in self._pending:
            spans.setdefault(t.symbol, []).append((t.trade_id, t.trade_id))
        merged: dict[str, list[tuple[int, int]]] = {}
        for sym, rs in sorted(spans.items()):
            acc: list[tuple[int, int]] = []
            for lo, hi in sorted(rs):
                if acc and lo <= acc[-1][1] + 1:
                    acc[-1] = (acc[-1][0], max(acc[-1][1], hi))
                else:
                    acc.append((lo, hi))
            merged[sym] = acc
        return merged

    # ------------------------------------------------------------------ the thread side
    def _open(self) -> None:
        self._conn = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB:d}")
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)

    def _check_identity(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            raise DatabaseMoved(f"{self.path}: the database file is gone") from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise DatabaseMoved(f"{self.path}: the database file was replaced")

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _commit(self, rows: list[tuple], stmts: list[Statement]) -> tuple[int, int]:
        """One transaction: the tick rows, then the statements. Returns (new tick rows,
        statements rejected as malformed). A statement that is itself wrong (a caller's
        bug, not the database's state) is skipped and counted rather than retried for
        ever."""
        if self._reopen or self._conn is None:
            self._close_conn()
            connect(self.path).close()
            self._open()
            self._reopen = False
        conn = self._conn
        assert conn is not None
        self._check_identity()
        try:
            before = conn.total_changes
            if rows:
                whole = len(rows) - len(rows) % ROWS_PER_INSERT
                if whole:
                    flat = list(chain.from_iterable(rows[:whole]))
                    step = 6 * ROWS_PER_INSERT
                    conn.executemany(
                        INSERT_TICKS, [flat[i : i + step] for i in range(0, len(flat), step)]
                    )
                if whole < len(rows):
                    conn.executemany(INSERT_TICK, rows[whole:])
            inserted = conn.total_changes - before
            rejected = 0
            for s in stmts:
                try:
                    if s.then:
                        _execute_group(conn, s)
                    elif s.many:
                        conn.executemany(s.sql, s.params)
                    else:
                        conn.execute(s.sql, s.params)
                except sqlite3.Error as exc:
                    if not _caller_error(exc):
                        raise
                    rejected += 1
                    self.last_rejected = f"{s.sql.split('(')[0].strip()}: {exc}"
            conn.commit()
            return inserted, rejected
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.rollback()
            raise

    # ------------------------------------------------------------------ the task
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch: list[object] = []
            if self.error is None and not self._stopping:
                batch.append(await self.queue.get())
            elif not self._stopping:
                await asyncio.sleep(
                    max(0.0, min(self.flush_interval / 5, self._retry_at - loop.time()))
                )
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            stop = self._stopping or any(b is _STOP for b in batch)
            waiters = [b for b in batch if isinstance(b, asyncio.Future)]
            self._take(batch)
            if self.error is None or stop or loop.time() >= self._retry_at:
                await self._attempt()
            committed = self.error is None
            for w in waiters:
                if not w.done():
                    w.set_result(committed)
            if stop:
                return
            await asyncio.sleep(self.flush_interval / 5)

    def _take(self, batch: list[object]) -> None:
        for item in batch:
            if type(item) is list:
                self._pending.extend(item)
            elif type(item) is Tick:
                self._pending.append(item)
            elif type(item) is Statement:
                self._stmts.append(item)
                self._stmt_rows += item.rows
        if self.error is not None:
            self._bound()

    def _bound(self) -> None:
        while len(self._pending) > self.max_unsaved:
            self._drop(self._pending.popleft())
        while self._stmt_rows > MAX_UNSAVED_ROWS and len(self._stmts) > 1:
            s = self._stmts.popleft()
            self._stmt_rows -= s.rows
            self.dropped_other += s.rows
        self.unsaved = len(self._pending)

    def _drop(self, t: Tick) -> None:
        self.dropped += 1
        self._unrecorded += 1
        runs = self._runs.setdefault(t.symbol, [])
        i = t.trade_id
        if runs and runs[-1][0] - 1 <= i <= runs[-1][1] + 1:
            runs[-1][0] = min(runs[-1][0], i)
            runs[-1][1] = max(runs[-1][1], i)
            return
        runs.append([i, i])
        if len(runs) > MAX_RUNS:
            last = runs.pop()
            runs[-1] = [min(runs[-1][0], last[0]), max(runs[-1][1], last[1])]

    def _gap_statements(self) -> tuple[Statement | None, list[tuple[str, int, int]]]:
        ranges = [(s, lo, hi) for s, runs in self._runs.items() for lo, hi in runs]
        if not ranges:
            return None, []
        now = int(time.time() * 1000)
        rows = [(s, lo, hi, now, "open", 0, None) for s, lo, hi in ranges]
        return Statement(INSERT_GAP, rows, many=True), ranges

    async def _attempt(self) -> bool:
        """Write the retry buffer, oldest first, one chunk per transaction; stop at the
        first failure. True when everything held is committed."""
        assert self._db is not None
        while self._pending or self._stmts or self._runs:
            n = min(self._chunk, len(self._pending))
            rows = list(map(_TICK_ROW, islice(self._pending, n)))
            gap, ranges = self._gap_statements()
            stmts = list(self._stmts) if gap is None else [*self._stmts, gap]
            try:
                inserted, rejected = await self._db.call(partial(self._commit, rows, stmts))
            except (sqlite3.Error, StoreError) as exc:
                self._failed(exc)
                return False
            for _ in range(n):
                self._pending.popleft()
            self._stmts.clear()
            self._stmt_rows = 0
            self._runs.clear()
            self.gapped += self._unrecorded
            self._unrecorded = 0
            self.inserted += inserted
            self.rejected += rejected
            self.gaps_recorded += len(ranges)
            self.commits += 1
            self.last_commit_ms = int(time.time() * 1000)
            self._chunk = min(CHUNK_MAX, self._chunk * 2)
            if self.error is not None:
                self.unsaved = len(self._pending)
            if self.on_dropped is not None:
                for r in ranges:
                    self.on_dropped(*r)
        if self.error is not None:
            self._recovered()
        return True

    def _failed(self, exc: BaseException) -> None:
        reason, detail = describe(exc)
        if reason == "database locked":
            holders = lock_holders(self.path)
            if holders:
                detail += "; write lock held by " + ", ".join(
                    f"pid {pid} ({cmd})" for pid, cmd in holders
                )
        if reason not in _KEEP_CONNECTION:
            self._reopen = True
        self.failed_commits += 1
        self._chunk = max(CHUNK_MIN, self._chunk // 2)
        first = self.error is None
        self.error, self.error_detail = reason, detail
        self._bound()
        loop = asyncio.get_running_loop()
        self._retry_s = RETRY_FIRST_S if first else min(RETRY_MAX_S, self._retry_s * 2)
        self._retry_at = loop.time() + self._retry_s
        if first:
            self.error_since_ms = int(time.time() * 1000)
            self._notify()

    def _recovered(self) -> None:
        self.error = self.error_detail = self.error_since_ms = None
        self.unsaved = 0
        self._retry_s = RETRY_FIRST_S
        self._notify()

    def _notify(self) -> None:
        if self.on_error is not None:
            try:
                self.on_error(self.status())
            except Exception:
                log.debug("on_error callback failed", exc_info=True)

    # ------------------------------------------------------------------ shutdown
    async def close(self, within: float = CLOSE_DEADLINE_S) -> WriterStatus:
        """Stop, make one last attempt to commit everything held, close the connection,
        and return the final status, all within `within` seconds whatever the database
        does. Trades that could not be written are counted in `unsaved` (their ids in
        `lost_ranges()`); a statement stuck in SQLite is interrupted, and a thread stuck
        beyond that is abandoned (it is a daemon)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        task = self._task
        if task is not None:
            self._stopping = True
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(_STOP)
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time() - 0.5))
            if not done:
                conn = self._conn
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        conn.interrupt()
                done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._task = None
            if done:
                task.result()
        leftover: list[object] = []
        while True:
            try:
                leftover.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        for item in leftover:
            if isinstance(item, asyncio.Future) and not item.done():
                item.set_result(False)
        for item in leftover:
            if type(item) is list:
                self._pending.extend(item)
            elif type(item) is Tick:
                self._pending.append(item)
        self.unsaved = len(self._pending)
        if self.unsaved and self.error is None:
            self.error, self.error_detail = "not written before the close deadline", None
        if self._db is not None:
            if self._conn is not None:
                with contextlib.suppress(TimeoutError, sqlite3.Error):
                    await asyncio.wait_for(
                        self._db.call(self._close_conn), max(0.05, deadline - loop.time())
                    )
            self._db.stop()
            self._db = None
        return self.status()
