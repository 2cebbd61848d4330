"""The bad-input catalogue: each case is a bad input given to the real binary
(`python -m quanttui`, a subprocess), with the exit code and the exact stderr lines it
must produce. No case may print a traceback, and a refused database must be left
byte for byte as it was."""

from __future__ import annotations

import json
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from quanttui.model import parse_iso_ms
from tests.badfiles import (
    agg_csv,
    agg_lines,
    corrupt_member_zip,
    damaged_db,
    db_with_2076,
    deflate64_zip,
    encrypted_zip,
    truncated_zip,
    two_csv_zip,
)
from tests.helpers import run_cli


def pattern(line: str, d: Path) -> re.Pattern[str]:
    """A literal expected line: ``{d}`` is the test's directory, ``...`` any text."""
    parts = [re.escape(p) for p in line.split("...")]
    return re.compile(".*".join(parts).replace(re.escape("{d}"), re.escape(str(d))))


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], list[str]]
    code: int
    err: tuple[str, ...]
    check: Callable[[Path, str], None] | None = field(default=None)


def config(text: str, *command: str) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        (d / "c.toml").write_text(text)
        return [*(command or ("BTCUSDT", "ETHUSDT", "--headless")), "--config", str(d / "c.toml")]

    return make


def flags(*args: str) -> Callable[[Path], list[str]]:
    return lambda d: [*args, "--db", str(d / "q.db")]


def importing(*makers: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    return lambda d: ["import", *(str(m(d)) for m in makers), "--db", str(d / "q.db"), "--quiet"]


def agg_file(name: str, rows: list[str], *, bom: bool = False) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / name
        p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ("\n".join(rows) + "\n").encode())
        return p

    return make


def on_damaged(*command: str) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        db = damaged_db(d / "bad.db")
        (d / "bad.bytes").write_bytes(db.read_bytes())
        return [*command, "--db", str(db)]

    return make


def untouched(d: Path, _out: str) -> None:
    assert (d / "bad.db").read_bytes() == (d / "bad.bytes").read_bytes()
    assert not (d / "bad.db-wal").exists() or (d / "bad.db-wal").stat().st_size == 0


def nothing_exported(d: Path, out: str) -> None:
    untouched(d, out)
    assert not list((d / "out").glob("*")) if (d / "out").exists() else True


def recent_snapshot(d: Path, out: str) -> None:
    snap = json.loads(out)
    assert abs(parse_iso_ms(snap["time"]) - time.time() * 1000) < 120_000, snap["time"]
    assert snap["bars"] > 40 and snap["close_x"] < 1000


ENTRY = "must be above 0 and at most 100"
GOOD = agg_lines(3)
FUTURE_ROW = GOOD[1].replace("1704067200037", "9999999999999")

CASES = [
    # --- numbers that are not numbers, flags and config files -----------------------
    Case(
        "flag entry_z inf",
        flags("BTCUSDT", "ETHUSDT", "--headless", "--entry-z", "inf"),
        2,
        (
            "quanttui: config error: command line: [analytics] entry_z: inf is not a finite "
            f"number ({ENTRY})",
        ),
    ),
    Case(
        "flag entry_z nan",
        flags("backtest", "BTCUSDT", "ETHUSDT", "--entry-z", "nan"),
        2,
        (
            f"quanttui: config error: command line: [analytics] entry_z: nan is not a finite number ({ENTRY})",
        ),
    ),
    Case(
        "flag fee_bps 1e9",
        flags("backtest", "BTCUSDT", "ETHUSDT", "--fee-bps", "1e9"),
        2,
        (
            "quanttui: config error: command line: [backtest] fee_bps: 1000000000.0 must be "
            "between 0 and 1000",
        ),
    ),
    Case(
        "flag stop_z -inf",
        flags("backtest", "BTCUSDT", "ETHUSDT", "--stop-z=-inf"),
        2,
        (
            "quanttui: config error: command line: [backtest] stop_z: -inf is not a finite "
            "number (must be between 0 and 100)",
        ),
    ),
    Case(
        "flag window 0",
        flags("snapshot", "BTCUSDT", "ETHUSDT", "--window", "0"),
        2,
        (
            "quanttui: config error: command line: [analytics] window: 0 must be between 10 and 100000",
        ),
    ),
    Case(
        "file entry_z inf",
        config("[analytics]\nentry_z = inf\n"),
        2,
        (
            f"quanttui: config error: {{d}}/c.toml: [analytics] entry_z: inf is not a finite number ({ENTRY})",
        ),
    ),
    Case(
        "file kalman_obs_var inf",
        config("[analytics]\nkalman_obs_var = inf\n"),
        2,
        (
            "quanttui: config error: {d}/c.toml: [analytics] kalman_obs_var: inf is not a "
            "finite number (must be between 1e-12 and 1e+12)",
        ),
    ),
    Case(
        "file hysteresis inf",
        config("[alerts]\nhysteresis = inf\n"),
        2,
        (
            "quanttui: config error: {d}/c.toml: [alerts] hysteresis: inf is not a finite "
            "number (must be between 0 and 1e+09)",
        ),
    ),
    Case(
        "file fee_bps inf",
        config("[backtest]\nfee_bps = inf\n"),
        2,
        (
            "quanttui: config error: {d}/c.toml: [backtest] fee_bps: inf is not a finite "
            "number (must be between 0 and 1000)",
        ),
    ),
    Case(
        "file reconnect_max_s inf",
        config("[feed]\nreconnect_max_s = inf\n"),
        2,
        (
            "quanttui: config error: {d}/c.toml: [feed] reconnect_max_s: inf is not a finite "
            "number (must be between 0.01 and 3600)",
        ),
    ),
    Case(
        "file stale_after_s 1e-9",
        config("[feed]\nstale_after_s = 1e-9\n"),
        2,
        (
            "quanttui: config error: {d}/c.toml: [feed] stale_after_s: 1e-09 must be "
            "between 0.5 and 3600",
        ),
    ),
    Case(
        "file cooldown_s -nan",
        config("[alerts]\ncooldown_s = -nan\n"),
        2,
        (
            "quanttui: config error: {d}/c.toml: [alerts] cooldown_s: nan is not a finite "
            "number (must be between 0 and 604800)",
        ),
    ),
    Case(
        "file window beyond 64 bits of sense",
        config("[analytics]\nwindow = 9223372036854775807\n"),
        2,
        (
            "quanttui: config error: {d}/c.toml: [analytics] window: 9223372036854775807 "
            "must be between 10 and 100000",
        ),
    ),
    Case(
        "file db path with a NUL",
        config('[storage]\ndb = "a\\u0000b"\n'),
        2,
        (
            "quanttui: config error: {d}/c.toml: [storage] db: 'a\\x00b' contains control characters",
        ),
    ),
    Case(
        "file rest_url without a host",
        config('[feed]\nrest_url = "https://"\n'),
        2,
        (
            "quanttui: config error: {d}/c.toml: [feed] rest_url: 'https://' must start with "
            "http:// or https:// and name a host, with a valid port if any",
        ),
    ),
    Case(
        "file ws_url with a port out of range",
        config('[feed]\nws_url = "ws://127.0.0.1:99999999/market"\n'),
        2,
        (
            "quanttui: config error: {d}/c.toml: [feed] ws_url: 'ws://127.0.0.1:99999999/market' "
            "must start with ws:// or wss:// and name a host, with a valid port if any",
        ),
    ),
    # --- import -------------------------------------------------------------------
    Case(
        "import headerless csv with a BOM",
        importing(agg_file("BTCUSDT-aggTrades-2024-01-01.csv", agg_lines(2), bom=True)),
        0,
        (
            "{d}/BTCUSDT-aggTrades-2024-01-01.csv: BTCUSDT aggTrades, 2 rows, 2 new",
            "imported 1 of 1 file, 2 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import csv with a header and a BOM",
        importing(
            agg_file(
                "BTCUSDT-aggTrades-2024-01-01.csv",
                ["agg_trade_id,price,quantity,first,last,transact_time,is_buyer_maker", *GOOD],
                bom=True,
            )
        ),
        0,
        (
            "{d}/BTCUSDT-aggTrades-2024-01-01.csv: BTCUSDT aggTrades, 3 rows, 3 new",
            "imported 1 of 1 file, 3 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import transact_time 9999999999999",
        importing(agg_file("BTCUSDT-aggTrades-2024-01-02.csv", [GOOD[0], FUTURE_ROW, GOOD[2]])),
        1,
        (
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-02.csv: 1 bad row of 3 (first at "
            "line 2: trade time 2286-11-20T17:46:39.999Z is more than 60 s ahead of the clock "
            "(...)); nothing imported from this file",
            "imported 0 of 1 file, 0 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import transact_time 1e30 between two good files",
        importing(
            lambda d: agg_csv(d / "BTCUSDT-aggTrades-2024-01-01.csv"),
            agg_file(
                "BTCUSDT-aggTrades-2024-01-02.csv",
                [GOOD[0].replace("1704067200000", "1" + "0" * 30)],
            ),
            lambda d: agg_csv(d / "ETHUSDT-aggTrades-2024-01-01.csv"),
        ),
        1,
        (
            "{d}/BTCUSDT-aggTrades-2024-01-01.csv: BTCUSDT aggTrades, 50 rows, 50 new",
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-02.csv: 1 bad row of 1 (first at "
            "line 1: trade time 1000000000000000000000000000 ms is more than 60 s ahead of the "
            "clock (...)); nothing imported from this file",
            "{d}/ETHUSDT-aggTrades-2024-01-01.csv: ETHUSDT aggTrades, 50 rows, 50 new",
            "imported 2 of 3 files, 100 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import aggregate id 1e30",
        importing(agg_file("BTCUSDT-aggTrades-2024-01-02.csv", ["1" + "0" * 30 + GOOD[0][4:]])),
        1,
        (
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-02.csv: 1 bad row of 1 (first at "
            "line 1: id 1000000000000000000000000000000 is out of the 64-bit range); nothing "
            "imported from this file",
            "imported 0 of 1 file, 0 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import a 1970 trade",
        importing(
            agg_file("BTCUSDT-aggTrades-2024-01-02.csv", [GOOD[0].replace("1704067200000", "1")])
        ),
        1,
        (
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-02.csv: 1 bad row of 1 (first at "
            "line 1: trade time 1970-01-01T00:00:00.001Z is before the market opened "
            "(2019-09-01T00:00:00.000Z)); nothing imported from this file",
            "imported 0 of 1 file, 0 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import an encrypted zip",
        importing(lambda d: encrypted_zip(d / "BTCUSDT-aggTrades-2024-01-01.zip")),
        1,
        (
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-01.zip: encrypted zip member, "
            "cannot be read (File ... is encrypted, password required for extraction)",
            "imported 0 of 1 file, 0 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import a deflate64 zip",
        importing(lambda d: deflate64_zip(d / "BTCUSDT-aggTrades-2024-01-01.zip")),
        1,
        (
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-01.zip: zip uses an unsupported "
            "compression method (...)",
            "imported 0 of 1 file, 0 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import a zip with corrupt LZMA data",
        importing(
            lambda d: corrupt_member_zip(d / "BTCUSDT-aggTrades-2024-01-01.zip", zipfile.ZIP_LZMA)
        ),
        1,
        (
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-01.zip: zip data is truncated or "
            "corrupt (LZMAError: ...); nothing imported",
            "imported 0 of 1 file, 0 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import a zip with corrupt bzip2 data",
        importing(
            lambda d: corrupt_member_zip(d / "BTCUSDT-aggTrades-2024-01-01.zip", zipfile.ZIP_BZIP2)
        ),
        1,
        (
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-01.zip: read error (...); nothing "
            "imported",
            "imported 0 of 1 file, 0 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import a zip with corrupt deflate data",
        importing(
            lambda d: corrupt_member_zip(
                d / "BTCUSDT-aggTrades-2024-01-01.zip", zipfile.ZIP_DEFLATED
            )
        ),
        1,
        (
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-01.zip: zip data is truncated or "
            "corrupt (...); nothing imported",
            "imported 0 of 1 file, 0 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import a truncated zip",
        importing(lambda d: truncated_zip(d / "BTCUSDT-aggTrades-2024-01-01.zip")),
        1,
        (
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-01.zip: not a valid zip file "
            "(truncated or corrupt: File is not a zip file)",
            "imported 0 of 1 file, 0 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import a zip with two csv files",
        importing(lambda d: two_csv_zip(d / "BTCUSDT-aggTrades-2024-01-01.zip")),
        1,
        (
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-01.zip: expected one .csv inside "
            "the zip, found 2",
            "imported 0 of 1 file, 0 new rows into {d}/q.db",
        ),
    ),
    Case(
        "import UTF-16 text",
        importing(
            lambda d: (
                (d / "BTCUSDT-aggTrades-2024-01-01.csv").write_text(
                    "\n".join(GOOD) + "\n", encoding="utf-16"
                ),
                d / "BTCUSDT-aggTrades-2024-01-01.csv",
            )[1]
        ),
        1,
        (
            "quanttui: error: {d}/BTCUSDT-aggTrades-2024-01-01.csv: not UTF-8 text; nothing "
            "imported",
            "imported 0 of 1 file, 0 new rows into {d}/q.db",
        ),
    ),
    # --- damaged databases ----------------------------------------------------------
    Case(
        "import into a damaged database",
        lambda d: [
            "import",
            str(agg_csv(d / "BTCUSDT-aggTrades-2024-01-01.csv")),
            *on_damaged()(d),
        ],
        2,
        (
            "quanttui: error: {d}/bad.db: database is damaged (PRAGMA quick_check: ...); "
            "nothing was written. Restore a backup, or recover the data with "
            "`sqlite3 {d}/bad.db .recover`",
        ),
        untouched,
    ),
    Case(
        "snapshot on a damaged database",
        on_damaged("snapshot", "BTCUSDT", "ETHUSDT", "--window", "20"),
        1,
        ("quanttui: error: {d}/bad.db: corrupt or unreadable database (...)",),
        untouched,
    ),
    Case(
        "backtest on a damaged database",
        on_damaged("backtest", "BTCUSDT", "ETHUSDT", "--window", "20"),
        1,
        ("quanttui: error: {d}/bad.db: corrupt or unreadable database (...)",),
        untouched,
    ),
    Case(
        "export on a damaged database",
        lambda d: [
            *on_damaged("export", "BTCUSDT", "ETHUSDT", "--window", "20")(d),
            "--out",
            str(d / "out"),
        ],
        1,
        ("quanttui: error: {d}/bad.db: corrupt or unreadable database (...)",),
        nothing_exported,
    ),
    Case(
        "doctor on a damaged database",
        on_damaged("doctor"),
        1,
        ("quanttui: error: {d}/bad.db: database is damaged (PRAGMA quick_check: ...",),
        untouched,
    ),
    # --- a database that already holds a trade stamped in 2076 ------------------------
    Case(
        "snapshot on a database holding a 2076 trade",
        lambda d: [
            "snapshot",
            "BTCUSDT",
            "ETHUSDT",
            "--window",
            "20",
            "--json",
            "--db",
            str(db_with_2076(d / "f.db")),
        ],
        0,
        (),
        recent_snapshot,
    ),
    Case(
        "doctor reports a 2076 trade",
        lambda d: ["doctor", "--db", str(db_with_2076(d / "f.db"))],
        1,
        (),
        lambda d, out: _doctor_says(
            out,
            "implausible times (after ...): 2 trades (T in the future); `quanttui doctor "
            "--quarantine` moves them",
        ),
    ),
]


def _doctor_says(out: str, line: str) -> None:
    assert any(pattern(line, Path()).fullmatch(x) for x in out.splitlines()), out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    args = case.make(tmp_path)
    code, out, err = run_cli(*args)
    assert "Traceback" not in err, err
    assert code == case.code, err
    lines = err.strip().splitlines() if err.strip() else []
    assert len(lines) == len(case.err), err
    for got, want in zip(lines, case.err, strict=True):
        assert pattern(want, tmp_path).fullmatch(got), f"\n got: {got}\nwant: {want}"
    if case.check is not None:
        case.check(tmp_path, out)
