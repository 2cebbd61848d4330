from __future__ import annotations

import pytest

from quanttui.cli import main
from tests.helpers import run_cli


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["BTCUSDT"], "SYMBOL_Y"),
        (["BTC-USD", "ETHUSDT"], "invalid symbol 'BTC-USD'"),
        (["btcusdt", "BTCUSDT"], "must differ"),
        (["B", "ETHUSDT"], "invalid symbol 'B'"),
        (["BTCUSDT", "ETHUSDT", "--window", "3"], "window"),
        (["BTCUSDT", "ETHUSDT", "--timeframe", "2h"], "timeframe"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], needle: str) -> None:
    code, out, err = run_cli(*args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert "Traceback" not in err


def test_help_and_version() -> None:
    code, out, _ = run_cli("--help")
    assert code == 0
    assert "SYMBOL_X" in out and "regressed on" in out
    code, out, _ = run_cli("--version")
    assert code == 0
    assert out.startswith("quanttui ")


def test_bad_config_file_exits_2_naming_key(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[analytics]\nwindoww = 20\n")
    assert main(["BTCUSDT", "ETHUSDT", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "windoww" in err and str(cfg) in err
    cfg.write_text("[analytics]\nwindow = -5\n")
    assert main(["BTCUSDT", "ETHUSDT", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "window" in err and "-5" in err and err.count("\n") == 1


def test_missing_config_file_exits_2(tmp_path, capsys) -> None:
    assert main(["BTCUSDT", "ETHUSDT", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "near"),
    [
        (["dmeo"], "demo"),
        (["deom", "--speed", "2"], "demo"),
        (["recrod", "BTCUSDT", "ETHUSDT"], "record"),
        (["snapshto", "BTCUSDT", "ETHUSDT"], "snapshot"),
        (["backtset"], "backtest"),
        (["exprot"], "export"),
        (["improt", "a.zip"], "import"),
    ],
)
def test_a_mistyped_command_suggests_the_nearest(args: list[str], near: str) -> None:
    code, out, err = run_cli(*args)
    assert (code, out) == (2, "")
    assert err == f"quanttui: error: unknown command {args[0]!r}; did you mean {near!r}?\n"


@pytest.mark.parametrize(
    "args",
    [
        ["btcusdt", "ethusdt", "--speed", "2"],
        ["BTCUSDT", "ETHUSDT", "--speed", "2"],
        ["DEMO", "ETHUSDT", "--speed", "2"],
        ["dogeusdt", "ethusdt", "--speed", "2"],
    ],
)
def test_symbols_in_either_case_are_still_symbols(args: list[str], capsys) -> None:
    """Parsed as the pair (the error is about `--speed`), not as a mistyped command."""
    assert main(args) == 2
    assert capsys.readouterr().err == "quanttui: error: --speed needs --replay SOURCE\n"
