"""`quanttui serve ... --print-systemd-unit`: the unit runs the command line it was given
(not the caller's `sys.argv`), and never holds the browser view's token, in any spelling
argparse accepts; with `--web` it reads $QUANTTUI_WEB_TOKEN from a file of the user's."""

from __future__ import annotations

from pathlib import Path

import pytest

from quanttui.cli import main
from quanttui.modes.serve import WEB_ENV_FILE

TOKEN = "s3cret-Token_0123456789"


def unit_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str, str]:
    assert main(["serve", *args, "--print-systemd-unit"]) == 0
    got = capsys.readouterr()
    (exec_start,) = [line for line in got.out.splitlines() if line.startswith("ExecStart=")]
    return got.out, exec_start, got.err


def test_the_unit_runs_the_command_line_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "u.db")
    out, exec_start, err = unit_of(["BTCUSDT/ETHUSDT", "--db", db], capsys)
    assert exec_start.endswith(f" serve BTCUSDT/ETHUSDT --db {db}"), exec_start
    assert "EnvironmentFile" not in out and err == ""


@pytest.mark.parametrize(
    "spelling",
    [["--web-token", TOKEN], [f"--web-token={TOKEN}"], ["--web-tok", TOKEN], [f"--web-t={TOKEN}"]],
)
def test_the_web_token_stays_out_of_the_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spelling: list[str]
) -> None:
    db = str(tmp_path / "u.db")
    args = ["BTCUSDT/ETHUSDT", "--web", "0.0.0.0:8000", *spelling, "--db", db]
    out, exec_start, err = unit_of(args, capsys)
    assert TOKEN not in out and TOKEN not in err
    assert exec_start.endswith(f" serve BTCUSDT/ETHUSDT --web 0.0.0.0:8000 --db {db}"), exec_start
    assert f"\nEnvironmentFile=-{WEB_ENV_FILE}\n" in out
    assert out.index("EnvironmentFile=") < out.index("ExecStart=")
    assert err.count("\n") == 1 and err.startswith("quanttui: note: the --web-token is left out")
    assert "~/.config/quanttui/web.env" in err


def test_a_web_view_without_a_token_reads_the_file_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["BTCUSDT/ETHUSDT", "--web", "8000", "--db", str(tmp_path / "u.db")]
    out, _, err = unit_of(args, capsys)
    assert f"EnvironmentFile=-{WEB_ENV_FILE}" in out and err == ""
