from __future__ import annotations

import subprocess
import sys

import pytest

from quanttui.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quanttui", *args], capture_output=True, text=True, timeout=60
    )


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
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_help_and_version() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "SYMBOL_X" in proc.stdout and "regressed on" in proc.stdout
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("quanttui ")


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
