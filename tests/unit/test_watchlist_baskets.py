"""Baskets beside pairs on the command line, in `[watchlists]`, in the saved watchlist
and in the server's protocol: the forms accepted, and bad input as one line, exit 2."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from quanttui.cli import live_pairs, main, parse_entries, split_entries
from quanttui.config import ConfigError, load_config
from quanttui.errors import UsageError
from quanttui.server import protocol as P
from quanttui.store.state import decode, encode, load_last, save_last
from tests.helpers import run_cli

BASKET = ("SOLUSDT", "ADAUSDT", "XRPUSDT")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_parse_entries_mixes_pairs_and_baskets() -> None:
    got = parse_entries(["btcusdt/ethusdt", "solusdt+adausdt+xrpusdt"])
    assert got == [("BTCUSDT", "ETHUSDT"), BASKET]
    assert split_entries(got) == ([("BTCUSDT", "ETHUSDT")], [BASKET])
    legs = [f"S{i:02d}USDT" for i in range(12)]
    assert parse_entries(["+".join(legs)]) == [tuple(legs)]
    assert parse_entries(["btcusdt", "ethusdt"]) == [("BTCUSDT", "ETHUSDT")]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["BTCUSDT/ETHUSDT", "SOLUSDT+ADAUSDT"], "a basket has 3 to 12 legs"),
        (["SOLUSDT+ADAUSDT+SOLUSDT"], "each leg may be given once (got SOLUSDT twice)"),
        (["+".join(f"S{i:02d}USDT" for i in range(13))], "at most 12 legs"),
        (["SOL$+ADAUSDT+XRPUSDT"], "invalid symbol 'SOL$'"),
        (["SOLUSDT+ADAUSDT+XRPUSDT", "solusdt+adausdt+xrpusdt"], "given twice"),
        (["SOLUSDT+ADAUSDT+XRPUSDT", "BTCUSDT"], "invalid pair 'BTCUSDT'"),
    ],
)
def test_bad_entries(words: list[str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_entries(words)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["BTCUSDT/ETHUSDT", "SOLUSDT+ADAUSDT"], "a basket has 3 to 12 legs"),
        (["BTCUSDT/ETHUSDT", "SOLUSDT+ADAUSDT+SOLUSDT"], "each leg may be given once"),
        (["BTCUSDT/ETHUSDT", "+".join(f"S{i:02d}USDT" for i in range(13))], "at most 12"),
        (["BTCUSDT/ETHUSDT", "SOL-USDT+ADAUSDT+XRPUSDT"], "invalid symbol 'SOL-USDT'"),
        (["BTCUSDT/ETHUSDT", "SOLUSDT+ADAUSDT+XRPUSDT", "--window", "12"], "window must be"),
        (
            [
                "BTCUSDT/ETHUSDT",
                "SOLUSDT+ADAUSDT+XRPUSDT",
                "--alert",
                "SOLUSDT+ADAUSDT+XRPUSDT: corr < 1",
            ],
            "unknown metric 'corr'",
        ),
        (["serve", "BTCUSDT/ETHUSDT", "SOLUSDT+ADAUSDT"], "a basket has 3 to 12 legs"),
        (["attach", "SOLUSDT+ADAUSDT+ADAUSDT"], "each leg may be given once"),
    ],
)
def test_cli_bad_baskets_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main([*args, "--db", str(tmp_path / "n.db")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("quanttui: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_basket_bad_input_in_a_process(tmp_path: Path) -> None:
    code, out, err = run_cli("BTCUSDT/ETHUSDT", "SOLUSDT+ADAUSDT", "--db", str(tmp_path / "x.db"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "a basket has 3 to 12 legs" in err


def test_serve_systemd_unit_names_the_basket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["serve", "BTCUSDT/ETHUSDT", "solusdt+adausdt+xrpusdt", "--db", str(tmp_path / "u.db")]
    assert main([*args, "--print-systemd-unit"]) == 0
    out = capsys.readouterr().out
    assert "Description=quanttui engine server (BTCUSDT/ETHUSDT, SOLUSDT+ADAUSDT+XRPUSDT)" in out


def test_watchlists_take_baskets_and_the_saved_list_keeps_them(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            f'[storage]\ndb = "{tmp_path / "l.db"}"\n'
            '[watchlists]\nmixed = ["BTCUSDT/ETHUSDT", "solusdt+adausdt+xrpusdt"]\n',
        )
    )
    assert cfg.watchlist("mixed") == (("BTCUSDT", "ETHUSDT"), BASKET)
    entries, listed, name = live_pairs(cfg, ["AAUSDT+BBUSDT+CCUSDT"], "mixed")
    assert entries == [("BTCUSDT", "ETHUSDT"), BASKET, ("AAUSDT", "BBUSDT", "CCUSDT")]
    assert listed and name == "mixed"
    # one basket given alone opens the watchlist (its row; Enter opens the basket screen)
    assert live_pairs(cfg, ["SOLUSDT+ADAUSDT+XRPUSDT"], None) == ([BASKET], True, None)

    save_last(cfg.db_path, "mixed", entries)
    saved = load_last(cfg.db_path)
    assert saved is not None and saved.name == "mixed" and saved.pairs == tuple(entries)
    with sqlite3.connect(cfg.db_path) as c:
        (value,) = c.execute("SELECT value FROM meta WHERE key = 'watchlist'").fetchone()
    assert "SOLUSDT+ADAUSDT+XRPUSDT" in value and value == encode("mixed", entries)
    assert live_pairs(cfg, [], None) == (entries, True, "mixed")
    # a watchlist saved before baskets existed reads as it did
    old = '{"name": null, "pairs": ["BTCUSDT/ETHUSDT", "ETHUSDT/SOLUSDT"]}'
    assert decode(old).pairs == (("BTCUSDT", "ETHUSDT"), ("ETHUSDT", "SOLUSDT"))
    assert decode('{"name": null, "pairs": ["A1+B1"]}') is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[watchlists]\nx = ["AAUSDT+BBUSDT"]\n', "a basket has 3 to 12 legs"),
        ('[watchlists]\nx = ["AA+BB+AA"]\n', "each leg may be given once"),
        ('[watchlists]\nx = ["AA+BB+CC", "aa+bb+cc"]\n', "basket AA+BB+CC given twice"),
        ('[watchlists]\nx = ["' + "+".join(f"S{i:02d}" for i in range(13)) + '"]\n', "at most 12"),
        ('[watchlists]\nx = ["AA+B!+CC"]\n', "invalid symbol 'B!'"),
    ],
)
def test_bad_basket_in_watchlists_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and "[watchlists] x" in str(err.value)
    assert str(path) in str(err.value)


def test_protocol_carries_a_basket_snapshot_and_backtest_report() -> None:
    """Every dataclass a basket's events and its backtest report hold is registered, and
    each name is one type (a clash would decode into the wrong class)."""
    from quanttui.analytics.backtest import BacktestParams
    from quanttui.analytics.bars import BasketBars, LegBars
    from quanttui.analytics.basket import BasketParams, backtest_basket
    from quanttui.engine.events import BacktestDone, BasketInfo, BasketSnapshotEvent
    from quanttui.model import BasketSnapshot

    legs = ("AAUSDT", "BBUSDT", "CCUSDT")
    snap = BasketSnapshot("+".join(legs), legs, "1m", 20, 0, 1, True, bars=20, zscore=1.5)
    ev = BasketSnapshotEvent(snap.key, snap)
    back = P.decode(P.encode(ev)[4:])
    assert back == ev
    info = BasketInfo(snap.key, legs, "1m", 20)
    assert P.decode(P.encode(["ready", [info], {}])[4:]) == ["ready", [info], {}]

    rng = np.random.default_rng(0)
    n = 300
    ts = np.arange(n, dtype=np.int64) * 60_000 + 1_700_000_040_000
    x = np.cumsum(rng.normal(size=n)) + 100
    cols = [x, 0.5 * x + 50 + rng.normal(size=n) * 0.3, x + 20 + rng.normal(size=n) * 0.5]
    ones = np.ones(n)
    legs_bars = tuple(LegBars(ts, c, c, c, c, ones, np.ones(n, np.int64)) for c in cols)
    bars = BasketBars(ts, legs_bars, tuple(np.zeros(n, bool) for _ in cols))
    report = backtest_basket(
        bars, BasketParams(legs, "1m", 20), BacktestParams(1.0, 0.0, None, 4.0, True)
    )
    done = BacktestDone(snap.key, report)
    got = P.decode(P.encode(done)[4:])
    assert type(got.report) is type(report)
    assert got.report.as_json() == report.as_json()
    P._types()
    assert len({id(t) for t in P.REGISTRY.values()}) == len(P.REGISTRY)
