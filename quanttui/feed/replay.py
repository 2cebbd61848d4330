"""Replay of recorded trades through the same pipeline as the live feed.

A `Replay` has the surface the app and headless mode use of `Ingestion` (`start`, `stop`,
`check_symbols`, `writer`, `feed.stats`), so everything downstream - bars, analytics,
alerts, export, backtest - runs unchanged. It differs in two ways:

* Trades come from a source instead of the exchange: a quanttui database (opened
  read-only, never written), an NDJSON recording (`.ndjson`, `.ndjson.gz`) or Binance
  archive files (aggTrades/trades, `.csv` or `.zip`, one per symbol). Recordings and
  archives are first loaded into a scratch database next to the session database, so one
  ordered SQL scan serves every kind of source.
* Time is the replay clock: ``t = t0 + (wall - wall0) * speed``, with ``t0`` the first
  trade's time; a trade is delivered once the clock passes its trade time ``T``. With
  speed 0 trades are delivered as fast as the pipeline takes them and the clock is the
  time of the last delivered trade. The clock never runs ahead of delivery: when reading
  the source falls behind the wall clock (a loaded machine), it waits at the next
  undelivered trade's time, so no bar closes before its trades are in. Bars close on
  this clock, so a replay at any speed produces the same bars (and alerts, whose
  cooldown is in bar time) as the recording did.
  With a prefill the clock starts `prefill_ms` after the first trade, so that much of the
  recording is delivered at once (the demo uses it to open with a full window).

The replayed trades are written to the session database by the usual single writer;
in loop mode (the demo) each pass is shifted by the recording's span (plus one second)
and its trade ids by the largest id, so the session database never sees a duplicate, and
each symbol's prices in pass k are multiplied by ``(last / first) ** k`` (its last and
first price in the recording), so a pass starts where the one before ended: without
that, the jump back to the first prices at every seam was one huge return on both legs,
which swung the correlation of returns and fired false alerts once a pass.
Rows that are not trades (price or quantity 0) are dropped by the live feed's own
`drop_empty`, so a replay stores and exports what the live feed would have.

The scratch and session databases live in a temporary directory (`scratch_dir`) that
the run removes however it ends; one that a SIGKILL left behind names its dead process
in a `pid` file, and the next replay removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import math
import os
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from quanttui.config import TIMEFRAMES, Config
from quanttui.feed.binance import SymbolError, drop_empty
from quanttui.feed.ingest import Ingestion
from quanttui.feed.recordings import RecordingError, read_ndjson
from quanttui.model import MarkPrice, Tick
from quanttui.plausible import latest_ms
from quanttui.store.db import StoreError, connect, is_sqlite
from quanttui.store.importer import ArchiveError, import_file, inspect_name
from quanttui.store.queries import load_pair_bars
from quanttui.store.writer import INSERT_TICK, TickWriter

BATCH = 2000
StateSink = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class ReplaySpec:
    """What to replay and how: the prepared source database, speed, loop, header label,
    and `name`, the source as the user gave it, which messages use (the prepared
    database may be an internal scratch file)."""

    source_db: Path
    speed: float = 1.0
    loop: bool = False
    label: str = "REPLAY"
    prefill_ms: int = 0
    name: str = ""


class ReplayError(ValueError):
    """A replay source that cannot be used; one line naming the source."""


@dataclass
class ReplayStats:
    """The `FeedStats` fields the screens read, for a replay."""

    ticks: int = 0
    empty: int = 0
    per_symbol: dict[str, int] = field(default_factory=dict)
    gaps_open: int = 0
    gaps_filled: int = 0
    state: str = "connecting"
    implausible: int = 0  # source rows stamped in the future, not replayed


@dataclass
class _FeedView:
    stats: ReplayStats


def source_kind(path: Path) -> str:
    """`db`, `ndjson` or `archive`; raises `ReplayError`."""
    if not path.exists():
        raise ReplayError(f"replay source {path}: no such file")
    if path.is_dir():
        raise ReplayError(f"replay source {path}: is a directory")
    name = path.name.lower()
    if name.endswith((".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")):
        return "ndjson"
    if name.endswith((".csv", ".zip")):
        return "archive"
    if path.stat().st_size > 0 and is_sqlite(path):
        return "db"
    raise ReplayError(
        f"replay source {path}: not a quanttui database, an .ndjson recording or a "
        "Binance archive .csv/.zip"
    )


def prepare_source(sources: Sequence[Path], scratch: Path) -> Path:
    """The database to replay from: the source itself when it is a quanttui database,
    else `scratch` filled from the recordings or archive files. Raises `ReplayError`."""
    kinds = [source_kind(p) for p in sources]
    if "db" in kinds:
        if len(sources) != 1:
            raise ReplayError("a database replay source must be the only --replay")
        try:
            connect(sources[0], readonly=True).close()
        except StoreError as exc:
            raise ReplayError(f"replay source {exc}") from None
        return sources[0]
    conn = connect(scratch)
    try:
        for path, kind in zip(sources, kinds, strict=True):
            if kind == "ndjson":
                try:
                    with conn:
                        conn.executemany(
                            INSERT_TICK,
                            (
                                (t.symbol, t.trade_id, t.ts_ms, t.price, t.qty, 0)
                                for t in read_ndjson(path)
                            ),
                        )
                except (RecordingError, OSError, EOFError, gzip.BadGzipFile) as exc:
                    raise ReplayError(f"replay source {exc}") from None
            else:
                if inspect_name(path, None)[1] == "klines":
                    raise ReplayError(
                        f"replay source {path}: klines have no trades to replay; "
                        "`quanttui import` them instead"
                    )
                try:
                    import_file(conn, path)
                except ArchiveError as exc:
                    raise ReplayError(f"replay source {exc}") from None
    finally:
        conn.close()
    return scratch


MIN_WINDOW = 10  # the config's lower bound on [analytics] window


def bars_needed(window: int, hedge: str) -> int:
    """Closed bars until the first z-score: an OLS or log hedge has its first spread at
    bar W and the z-score needs W spreads, so 2W - 1; the Kalman hedge has a spread from
    the first bar, so W (see `quanttui.analytics.engine`)."""
    return window if hedge == "kalman" else 2 * window - 1


def check_fill(
    source_db: Path, symbols: Sequence[str], timeframe: str, window: int, hedge: str
) -> None:
    """Raise `ReplayError` when one pass of the recording holds fewer bars than the first
    z-score needs, naming what would fit. For the demo, whose loop would otherwise fill
    the window only with repeats of itself (or never, at 1m and 5m)."""
    conn = connect(source_db, readonly=True)
    try:
        sx, sy = symbols
        held = len(load_pair_bars(conn, sx, sy, timeframe).ts_ms)
        lo, hi = conn.execute(
            "SELECT min(ts_ms), max(ts_ms) FROM ticks WHERE symbol IN (?, ?)", (sx, sy)
        ).fetchone()
    finally:
        conn.close()
    need = bars_needed(window, hedge)
    if held >= need:
        return
    minutes, seconds = divmod(round(((hi or 0) - (lo or 0)) / 1000), 60)
    rule = "W" if hedge == "kalman" else "2W-1"
    fits = held if hedge == "kalman" else (held + 1) // 2
    smaller = [tf for tf, ms in TIMEFRAMES.items() if ms < TIMEFRAMES[timeframe]]
    if fits >= MIN_WINDOW:
        advice = f"use --window {fits} or less"
    elif smaller:
        advice = f"use --timeframe {smaller[0]}"
    else:
        advice = "no window fits"
    raise ReplayError(
        f"the recording spans {minutes} min {seconds} s, {held} bars of {timeframe}; the "
        f"first z-score with --window {window} ({hedge}) needs {need} ({rule}): {advice}"
    )


SCRATCH_PREFIX = "quanttui-replay-"
PID_FILE = "pid"


def make_scratch_dir(parent: Path | None = None) -> Path:
    """A new private temporary directory for a replay's scratch and session databases,
    with this process's id in its `pid` file.

    The caller removes it on exit; a run that cannot (SIGKILL, a crash, power loss)
    leaves it behind, and the next call removes it (`sweep_scratch_dirs`) before making
    its own, so stale directories never pile up.
    """
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep_scratch_dirs(base)
    path = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=base))
    (path / PID_FILE).write_text(f"{os.getpid()}\n")
    return path


@contextlib.contextmanager
def scratch_dir(parent: Path | None = None) -> Iterator[Path]:
    """`make_scratch_dir`, removed on leaving. Meanwhile SIGHUP and SIGTERM end the run
    through `SystemExit` (status 128 + signal), so they remove it too; a view that
    installs its own handlers while it runs must end the run cleanly as well."""
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM)} if main else {}
    for s in previous:
        signal.signal(s, _exit_on_signal)
    path: Path | None = None
    try:
        try:
            path = make_scratch_dir(parent)
        except OSError as exc:
            raise ReplayError(f"cannot make a temporary folder for the replay: {exc}") from None
        yield path
    finally:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
        for s, handler in previous.items():
            if handler is not None:
                signal.signal(s, handler)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def sweep_scratch_dirs(parent: Path) -> list[Path]:
    """Remove the scratch directories in `parent` whose `pid` names a process that is
    gone; returns them. A directory without a readable `pid` file (one being made at this
    moment) and one whose process still runs are left alone."""
    removed = []
    for path in sorted(Path(parent).glob(SCRATCH_PREFIX + "*")):
        try:
            pid = int((path / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Replay:
    """Delivers a source's trades for two symbols on the replay clock."""

    def __init__(
        self,
        source_db: Path,
        symbols: Sequence[str],
        session_db: Path,
        *,
        speed: float = 1.0,
        loop: bool = False,
        prefill_ms: int = 0,
        flush_interval_s: float = 0.25,
        on_ticks: Callable[[list[Tick]], Awaitable[None] | None] | None = None,
        on_state: StateSink | None = None,
        source_name: str = "",
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.source_db = source_db
        self.source_name = source_name or str(source_db)
        self.symbols = list(symbols)
        self.speed = speed
        self.loop = loop
        self.prefill_ms = prefill_ms
        self.writer = TickWriter(session_db, flush_interval_s)
        self.feed = _FeedView(ReplayStats())
        self._on_ticks = on_ticks
        self._on_state = on_state
        self._task: asyncio.Task[None] | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay")
        self._closed = False
        self._t0: int | None = None
        self._wall0 = 0.0
        self._last_ts: int | None = None
        self._horizon = 0
        """Every trade before this time has been delivered."""
        self._latest = latest_ms()
        self.finished = asyncio.Event()

    @property
    def stats(self) -> ReplayStats:
        return self.feed.stats

    @property
    def start_ms(self) -> int | None:
        """Where the replay clock started (after the prefill); None before the start."""
        return self._t0

    def now_ms(self) -> int:
        """The replay clock (see the module docstring); 0 before the first trade."""
        if self._t0 is None:
            return 0
        if self.speed == 0 or self.finished.is_set():
            return self._last_ts or self._t0
        return min(self._wall_ms(), self._horizon - 1)

    def _wall_ms(self) -> int:
        assert self._t0 is not None
        return self._t0 + int((time.monotonic() - self._wall0) * 1000 * self.speed)

    def _state(self, state: str, detail: str = "") -> None:
        self.stats.state = state
        if self._on_state is not None:
            self._on_state(state, detail)

    def _open(self) -> sqlite3.Connection:
        return connect(self.source_db, readonly=True)

    async def check_symbols(self) -> str | None:
        """Raises `SymbolError` naming a symbol the source has no trades for."""

        def counts() -> dict[str, int]:
            conn = self._open()
            try:
                return {
                    s: conn.execute(
                        "SELECT count(*) FROM ticks WHERE symbol = ? AND price > 0", (s,)
                    ).fetchone()[0]
                    for s in self.symbols
                }
            finally:
                conn.close()

        found = await asyncio.to_thread(counts)
        missing = [s for s, n in found.items() if n == 0]
        if missing:
            raise SymbolError(
                f"the replay source {self.source_name} has no trades for {', '.join(missing)}"
            )
        return None

    def _span(self) -> tuple[int, int, int]:
        """First and last plausible trade time and the largest id. Rows stamped after
        `latest_ms` (a database written before trade times were checked) are never
        replayed; their number is in `stats.implausible`."""
        conn = self._open()
        marks = ",".join("?" * len(self.symbols))
        try:
            lo, hi, top = conn.execute(
                f"SELECT min(ts_ms), max(ts_ms), max(abs(trade_id)) FROM ticks "
                f"WHERE symbol IN ({marks}) AND ts_ms <= ?",
                [*self.symbols, self._latest],
            ).fetchone()
            self.stats.implausible = conn.execute(
                f"SELECT count(*) FROM ticks WHERE symbol IN ({marks}) AND ts_ms > ?",
                [*self.symbols, self._latest],
            ).fetchone()[0]
        finally:
            conn.close()
        return lo or 0, hi or 0, top or 0

    def _pass_ratios(self) -> dict[str, float]:
        """Per symbol, its last trade price over its first (trades with price and
        quantity above 0): the factor by which one pass of a loop moves it."""
        conn = self._open()
        out: dict[str, float] = {}
        try:
            for sym in self.symbols:
                ends = [
                    conn.execute(
                        "SELECT price FROM ticks WHERE symbol = ? AND ts_ms <= ? AND price > 0 "
                        f"AND qty > 0 ORDER BY ts_ms {order}, trade_id {order} LIMIT 1",
                        (sym, self._latest),
                    ).fetchone()
                    for order in ("ASC", "DESC")
                ]
                if ends[0] and ends[1] and math.isfinite(ends[1][0] / ends[0][0]):
                    out[sym] = ends[1][0] / ends[0][0]
        finally:
            conn.close()
        return out

    def _batches(
        self, shift_ms: int, id_shift: int, scale: dict[str, float] | None = None
    ) -> Iterator[list[Tick]]:
        """Trades in (ts, symbol, id) order, read in pages on a private connection;
        prices multiplied by `scale[symbol]` where given."""
        conn = self._open()
        marks = ",".join("?" * len(self.symbols))
        try:
            cur = conn.execute(
                "SELECT symbol, trade_id, ts_ms, price, qty, is_buyer_maker FROM ticks "
                f"WHERE symbol IN ({marks}) AND ts_ms <= ? ORDER BY ts_ms, symbol, trade_id",
                [*self.symbols, self._latest],
            )
            while rows := cur.fetchmany(BATCH):
                yield [
                    Tick(
                        s,
                        tid + id_shift if tid >= 0 else tid - id_shift,
                        ts + shift_ms,
                        p * scale[s] if scale and s in scale else p,
                        q,
                        bool(m),
                    )
                    for s, tid, ts, p, q, m in rows
                ]
        finally:
            conn.close()

    async def _deliver(self, page: list[Tick]) -> None:
        ticks = drop_empty(page)
        st = self.stats
        st.empty += len(page) - len(ticks)
        if not ticks:
            return
        await self.writer.submit_many(ticks)
        st.ticks += len(ticks)
        for t in ticks:
            st.per_symbol[t.symbol] = st.per_symbol.get(t.symbol, 0) + 1
        self._last_ts = ticks[-1].ts_ms
        if self._on_ticks is not None:
            res = self._on_ticks(ticks)
            if res is not None:
                await res

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        lo, hi, top = await loop.run_in_executor(self._reader, self._span)
        self._t0 = lo + min(self.prefill_ms, hi - lo)
        self._horizon = lo
        self._wall0 = time.monotonic()
        skipped = self.stats.implausible
        self._state(
            "replay",
            (f"{self.speed:g}x" if self.speed else "max speed")
            + (f" ({skipped:,} trades stamped in the future skipped)" if skipped else ""),
        )
        span = hi - lo + 1000
        ratios = await loop.run_in_executor(self._reader, self._pass_ratios) if self.loop else {}
        k = 0
        while True:
            scale = {sym: r**k for sym, r in ratios.items()} if k else None
            batches = self._batches(k * span, k * (top + 1), scale)
            try:
                await self._play(loop, batches)
            finally:
                await loop.run_in_executor(self._reader, batches.close)
            if not self.loop:
                break
            k += 1
        self.finished.set()
        self._state("finished", "end of the recording")

    async def _play(self, loop: asyncio.AbstractEventLoop, batches: Iterator[list[Tick]]) -> None:
        while True:
            page = await loop.run_in_executor(self._reader, next, batches, None)
            if page is None:
                return
            if self.speed == 0:
                await self._deliver(page)
                await asyncio.sleep(0)
                continue
            i = 0
            while i < len(page):
                now = self._wall_ms()
                j = i
                while j < len(page) and page[j].ts_ms <= now:
                    j += 1
                if j > i:
                    await self._deliver(page[i:j])
                    i = j
                if i < len(page):
                    self._horizon = max(self._horizon, page[i].ts_ms)
                    wait = (page[i].ts_ms - self._wall_ms()) / 1000 / self.speed
                    await asyncio.sleep(min(max(wait, 0.0), 0.1))
            # the next page may start with trades of this page's last millisecond
            self._horizon = max(self._horizon, page[-1].ts_ms)

    async def subscribe(self, symbols: Sequence[str]) -> None:
        """A replay delivers the symbols it was opened with; others have no trades."""
        if set(symbols) - set(self.symbols):
            raise ValueError("a replay cannot add symbols")

    async def unsubscribe(self, symbols: Sequence[str]) -> None:
        return None

    async def start(self) -> None:
        if self._closed:
            return
        await self.writer.start()
        self._task = asyncio.create_task(self._run(), name="replay")

    async def stop(self) -> None:
        """Stop delivering, then flush and close the session writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.writer.close()
        self._reader.shutdown(wait=False, cancel_futures=True)
        self._state("stopped", "")


def open_feed(
    cfg: Config,
    symbols: Sequence[str],
    replay: ReplaySpec | None,
    *,
    on_ticks: Callable[[list[Tick]], Awaitable[None] | None] | None = None,
    on_state: StateSink | None = None,
    on_mark: Callable[[MarkPrice], None] | None = None,
) -> Ingestion | Replay:
    """The exchange feed, or a replay of `replay` into the configured (session) database."""
    if replay is None:
        return Ingestion(cfg, symbols, on_ticks=on_ticks, on_state=on_state, on_mark=on_mark)
    return Replay(
        replay.source_db,
        symbols,
        cfg.db_path,
        speed=replay.speed,
        loop=replay.loop,
        prefill_ms=replay.prefill_ms,
        flush_interval_s=cfg.storage.flush_interval_ms / 1000,
        on_ticks=on_ticks,
        on_state=on_state,
        source_name=replay.name,
    )
