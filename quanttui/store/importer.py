"""Import of Binance public-data archive files (data.binance.vision) into the database.

Formats (USD-M futures; each with or without a header row, as a .csv or a .zip holding
one):

* ``aggTrades``: ``agg_trade_id, price, quantity, first_trade_id, last_trade_id,
  transact_time, is_buyer_maker`` (7 columns). Stored in ``ticks`` with the aggregate id
  as ``trade_id``, the same id space as the live feed, so a day imported over data the
  recorder already stored adds nothing.
* ``trades``: ``id, price, qty, quote_qty, time, is_buyer_maker`` (6 columns). Raw trade
  ids are a different id space, so they are stored as ``trade_id = -id``: they can never
  collide with (and silently be dropped as duplicates of) aggregate trades.
* klines: ``open_time, open, high, low, close, volume, close_time, quote_volume, count,
  taker_buy_volume, taker_buy_quote_volume, ignore`` (12 columns). Stored in ``klines``
  with the interval from the file name (``1m`` when the name has none).
* ``fundingRate`` (monthly, ``SYMBOL-fundingRate-YYYY-MM.csv``): ``calc_time,
  funding_interval_hours, last_funding_rate`` (3 columns): one row per settlement, the
  rate settled at ``calc_time``. Stored in ``funding`` with a NULL mark price (the
  archive has none; a later REST warm start fills it in). The interval of the file's
  last settlement goes to ``funding_info`` unless what is stored there is newer.

Times in milliseconds; a time above 10^14 is taken as microseconds (Binance's newer
files) and divided by 1000. A time no trade can have (`quanttui.plausible`: more than a
minute ahead of the clock, or before USD-M futures opened) is a bad row, and so is an id
or count outside SQLite's 64-bit integer range. A leading UTF-8 byte-order mark is
removed before the first row is read, so it never decides whether there is a header.

The symbol and kind come from names like ``BTCUSDT-aggTrades-2024-01-01.csv`` or
``AVAXUSDT-1m-2024-02.zip``; without them the kind follows from the column count and the
symbol must be given.

A file is imported in one transaction. Any bad row (wrong column count, a non-number, a
negative price) fails the whole file: the rest of it is still read so the error can say
how many rows are bad and where the first one is, then the transaction is rolled back and
nothing of that file is kept. Any other fault of a file (an unreadable or encrypted
archive, text that is not UTF-8, a read error) is likewise one `ArchiveError` line for
that file alone. Re-importing a file adds nothing (``INSERT OR IGNORE`` on the primary
keys).
"""

from __future__ import annotations

import contextlib
import csv
import io
import lzma
import math
import re
import sqlite3
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from quanttui.plausible import FUTURES_LAUNCH_MS, describe, time_problem, wall_ms
from quanttui.store.writer import INSERT_FUNDING_IGNORE, INSERT_TICK, UPSERT_INTERVAL

INSERT_KLINE = (
    "INSERT OR IGNORE INTO klines(symbol, interval, open_ms, open, high, low, close, volume, "
    "close_ms, quote_volume, trades) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
KINDS = ("aggTrades", "trades", "klines", "fundingRate")
COLUMNS = {"aggTrades": 7, "trades": 6, "klines": 12, "fundingRate": 3}
INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]{2,20})-(?P<kind>aggTrades|trades|fundingRate|"
    + "|".join(INTERVALS)
    + r")-"
)
CHUNK = 50_000


class ArchiveError(ValueError):
    """A file that cannot be imported; the message names the file and the fault."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    path: Path
    symbol: str
    kind: str
    rows: int
    inserted: int


def inspect_name(path: Path, symbol: str | None) -> tuple[str | None, str | None, str | None]:
    """`(symbol, kind, interval)` from the file name (None where it says nothing);
    `symbol` overrides the name's symbol."""
    m = _NAME.match(path.name)
    if not m:
        return symbol, None, None
    k = m.group("kind")
    kind, interval = (k, None) if k in ("aggTrades", "trades", "fundingRate") else ("klines", k)
    return symbol or m.group("symbol"), kind, interval


_ZIP_FAULTS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,  # a compression method zipfile cannot read
    RuntimeError,  # an encrypted member
)


def _open_text(path: Path) -> tuple[Iterator[str], Callable[[], None]]:
    """Lines of the CSV (the single .csv member of a zip), decoded as UTF-8 with a
    leading byte-order mark removed; raises `ArchiveError`."""
    try:
        if path.suffix.lower() == ".zip":
            zf = zipfile.ZipFile(path)
            try:
                members = [
                    i.filename
                    for i in zf.infolist()
                    if i.filename.lower().endswith(".csv") and not i.is_dir()
                ]
                if len(members) != 1:
                    raise ArchiveError(
                        f"{path}: expected one .csv inside the zip, found {len(members)}"
                    )
                raw = zf.open(members[0])
            except BaseException:
                zf.close()
                raise
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")

            def close() -> None:
                text.close()
                zf.close()

            return text, close
        fh = path.open(encoding="utf-8-sig", newline="")
        return fh, fh.close
    except ArchiveError:
        raise
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ArchiveError(f"{path}: is a directory") from None
    except PermissionError:
        raise ArchiveError(f"{path}: permission denied") from None
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{path}: not a valid zip file (truncated or corrupt: {exc})") from None
    except _ZIP_FAULTS as exc:
        raise ArchiveError(f"{path}: {_zip_fault(exc)}") from None
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:  # zipfile's own checks on a malformed directory
        raise ArchiveError(f"{path}: unreadable zip archive ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:159] + "…"


def _zip_fault(exc: BaseException) -> str:
    if isinstance(exc, NotImplementedError):  # before RuntimeError, its base class
        return f"zip uses an unsupported compression method ({_one_line(exc)})"
    if isinstance(exc, RuntimeError):
        return f"encrypted zip member, cannot be read ({_one_line(exc)})"
    return f"zip data is truncated or corrupt ({exc.__class__.__name__}: {_one_line(exc)})"


class ImplausibleTime(ValueError):
    """A time no trade can have (`quanttui.plausible`); `reason` is the short key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _int64(v: str, what: str) -> int:
    x = int(v)
    if not -(2**63) <= x < 2**63:
        raise ValueError(f"{what} {v.strip()[:40]} is out of the 64-bit range")
    return x


def _ms(v: str, now_ms: int, floor_ms: int = FUTURES_LAUNCH_MS) -> int:
    t = int(v)
    if t <= 0:
        raise ValueError("time must be positive")
    t = t // 1000 if t > 10**14 else t
    problem = time_problem(t, now_ms, floor_ms)
    if problem is not None:
        raise ImplausibleTime(problem, describe(t, now_ms, floor_ms) or problem)
    return t


def _price(v: str) -> float:
    x = float(v)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"price must be a positive number, got {v!r}")
    return x


def _qty(v: str) -> float:
    x = float(v)
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"quantity must be a non-negative number, got {v!r}")
    return x


def _bool(v: str) -> int:
    s = v.strip().lower()
    if s in ("true", "1"):
        return 1
    if s in ("false", "0"):
        return 0
    raise ValueError(f"is_buyer_maker must be true or false, got {v!r}")


def _id(v: str) -> int:
    x = _int64(v, "id")
    if x < 0:
        raise ValueError(f"id must not be negative, got {v.strip()[:40]}")
    return x


def _row_agg(sym: str, r: list[str], now_ms: int) -> tuple:
    return (sym, _id(r[0]), _ms(r[5], now_ms), _price(r[1]), _qty(r[2]), _bool(r[6]))


def funding_row(sym: str, r: list[str], now_ms: int | None = None) -> tuple:
    """A fundingRate archive row to a `funding` row plus its interval:
    ``((symbol, calc_time, rate, None), interval_hours)``; raises `ValueError`."""
    hours = int(r[1])
    if not 0 < hours <= 24:
        raise ValueError(f"funding_interval_hours must be 1..24, got {r[1]!r}")
    rate = float(r[2])
    if not math.isfinite(rate) or abs(rate) >= 1:
        raise ValueError(f"last_funding_rate out of range: {r[2]!r}")
    return (sym, _ms(r[0], wall_ms() if now_ms is None else now_ms), rate, None), hours


def _row_trade(sym: str, r: list[str], now_ms: int) -> tuple:
    return (sym, -_id(r[0]), _ms(r[4], now_ms), _price(r[1]), _qty(r[2]), _bool(r[5]))


def kline_row(
    sym: str,
    interval: str,
    r: list[str],
    *,
    now_ms: int | None = None,
    floor_ms: int = FUTURES_LAUNCH_MS,
) -> tuple:
    """A 12-field kline (archive CSV or REST row, as strings) to a `klines` row; raises
    `ValueError` for a non-number, a count out of the 64-bit range, a high/low that does
    not bracket open/close, or (`ImplausibleTime`) a time no trade can have at `now_ms`
    (default: the wall clock)."""
    now = wall_ms() if now_ms is None else now_ms
    o, h, lo, c = _price(r[1]), _price(r[2]), _price(r[3]), _price(r[4])
    if not (lo <= min(o, c) and h >= max(o, c)):
        raise ValueError("high/low do not bracket open/close")
    trades = _int64(r[8], "trade count")
    if trades < 0:
        raise ValueError("trade count must not be negative")
    return (
        sym,
        interval,
        _ms(r[0], now, floor_ms),
        o,
        h,
        lo,
        c,
        _qty(r[5]),
        _ms(r[6], now, floor_ms),
        _qty(r[7]),
        trades,
    )


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _is_header(row: list[str]) -> bool:
    """A header names its columns: no field of it is a number. (A data row has at least
    its id and time; a garbled one then fails as a bad row instead of passing as a
    header.)"""
    return bool(row) and not any(_NUMBER.match(f.strip()) for f in row)


def import_file(
    conn: sqlite3.Connection,
    path: str | Path,
    *,
    symbol: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import one archive file in one transaction; raises `ArchiveError` and keeps nothing
    of the file on any fault. `progress(rows)` is called every `CHUNK` rows."""
    path = Path(path)
    sym, kind, interval = inspect_name(path, symbol)
    lines, close = _open_text(path)
    now = wall_ms()
    before = conn.total_changes
    bad = 0
    first_bad = ""
    rows = 0
    try:
        reader = csv.reader(lines)
        try:
            first = next(reader, None)
            if first is None:
                raise ArchiveError(f"{path}: empty file")
            if kind is None:
                kind = {v: k for k, v in COLUMNS.items()}.get(len(first))
                if kind is None:
                    raise ArchiveError(
                        f"{path}: {len(first)} columns match no archive format "
                        "(aggTrades 7, trades 6, klines 12, fundingRate 3)"
                    )
            if sym is None:
                raise ArchiveError(
                    f"{path}: cannot tell the symbol from the file name; pass --symbol"
                )
            ncol = COLUMNS[kind]
            if kind == "klines":
                iv = interval or "1m"
                make: Callable[[list[str]], tuple] = lambda r: kline_row(sym, iv, r, now_ms=now)  # noqa: E731
                sql = INSERT_KLINE
            elif kind == "fundingRate":
                latest = [0, 0]  # calc_time and interval of the newest settlement

                def make(r: list[str]) -> tuple:
                    row, hours = funding_row(sym, r, now)
                    if row[1] >= latest[0]:
                        latest[:] = [row[1], hours]
                    return row

                sql = INSERT_FUNDING_IGNORE
            elif kind == "aggTrades":
                make = lambda r: _row_agg(sym, r, now)  # noqa: E731
                sql = INSERT_TICK
            else:
                make = lambda r: _row_trade(sym, r, now)  # noqa: E731
                sql = INSERT_TICK
            conn.execute("BEGIN")
            batch: list[tuple] = []
            header = _is_header(first)
            lineno = 1 if header else 0
            source: Iterable[list[str]] = reader if header else _chain(first, reader)
            for r in source:
                lineno += 1
                if not r:
                    continue
                rows += 1
                try:
                    if len(r) != ncol:
                        raise ValueError(f"expected {ncol} columns for {kind}, got {len(r)}")
                    row = make(r)
                except (ValueError, IndexError) as exc:
                    bad += 1
                    if not first_bad:
                        first_bad = f"line {lineno}: {_one_line(exc)}"
                    continue
                if bad:
                    continue
                batch.append(row)
                if len(batch) >= CHUNK:
                    conn.executemany(sql, batch)
                    batch.clear()
                    if progress is not None:
                        progress(rows)
            if bad:
                raise ArchiveError(
                    f"{path}: {bad:,} bad row{'s' if bad != 1 else ''} of {rows:,} "
                    f"(first at {first_bad}); nothing imported from this file"
                )
            if batch:
                conn.executemany(sql, batch)
            inserted = conn.total_changes - before
            if kind == "fundingRate" and latest[0]:
                conn.execute(UPSERT_INTERVAL, (sym, latest[1], latest[0]))
            conn.execute("COMMIT")
        except ArchiveError:
            raise
        except csv.Error as exc:
            raise ArchiveError(f"{path}: malformed CSV ({exc}); nothing imported") from None
        except UnicodeDecodeError:
            raise ArchiveError(f"{path}: not UTF-8 text; nothing imported") from None
        except _ZIP_FAULTS as exc:
            raise ArchiveError(f"{path}: {_zip_fault(exc)}; nothing imported") from None
        except sqlite3.Error as exc:
            raise ArchiveError(f"{path}: database error ({exc}); nothing imported") from None
        except OverflowError as exc:
            raise ArchiveError(
                f"{path}: a number out of range ({_one_line(exc)}); nothing imported"
            ) from None
        except OSError as exc:
            raise ArchiveError(
                f"{path}: read error ({exc.strerror or _one_line(exc)}); nothing imported"
            ) from None
        except Exception as exc:
            # The file is untrusted input: whatever else reading it raises is this file's
            # failure alone, reported in one line, and the other files go on.
            raise ArchiveError(
                f"{path}: cannot import ({exc.__class__.__name__}: {_one_line(exc)}); "
                "nothing imported"
            ) from None
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    finally:
        with contextlib.suppress(Exception):
            close()
    if progress is not None:
        progress(rows)
    return ImportResult(path, sym, kind, rows, inserted)


def _chain(first: list[str], rest: Iterable[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest


def estimate_rows(path: str | Path) -> int | None:
    """Rough row count for a progress bar: uncompressed size over the mean length of the
    first lines. None when the file cannot be read."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as zf:
                infos = [i for i in zf.infolist() if i.filename.lower().endswith(".csv")]
                if len(infos) != 1:
                    return None
                size = infos[0].file_size
                with zf.open(infos[0]) as fh:
                    head = fh.read(65536)
        else:
            size = path.stat().st_size
            with path.open("rb") as fh:
                head = fh.read(65536)
    except (OSError, ValueError, *_ZIP_FAULTS):
        return None
    lines = head.count(b"\n")
    if lines == 0:
        return 1
    return max(1, round(size / (len(head[: head.rfind(b"\n") + 1]) / lines)))
