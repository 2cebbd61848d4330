from __future__ import annotations

from pathlib import Path

import pytest

from quanttui.config import ConfigError, builtin_defaults_text, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_defaults_equal_repo_config() -> None:
    assert builtin_defaults_text() == (ROOT / "config.toml").read_text(encoding="utf-8")


def test_defaults() -> None:
    cfg = load_config(use_user_file=False)
    assert cfg.feed.ws_url == "wss://fstream.binance.com/market"
    assert cfg.feed.rest_url == "https://fapi.binance.com"
    assert cfg.analytics.hedge == "ols" and cfg.analytics.timeframe_ms == 1000
    assert cfg.alerts.rules == ()


def test_layers_user_file_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[analytics]\nwindow = 120\nhedge = "log"\nentry_z = 3\n[alerts]\nrules = ["corr < 0.5"]\n'
    )
    cfg = load_config(f, {("analytics", "window"): 50})
    assert cfg.analytics.window == 50
    assert cfg.analytics.hedge == "log"
    assert cfg.analytics.entry_z == 3.0 and isinstance(cfg.analytics.entry_z, float)
    assert cfg.alerts.rules == ("corr < 0.5",)
    assert cfg.sources[-1] == str(f)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[analytics]\nwindoww = 20\n", "unknown key [analytics] windoww"),
        ("[analytic]\nwindow = 20\n", "unknown section [analytic]"),
        ("[analytics]\nwindow = -1\n", "[analytics] window: -1 must be between"),
        ("[analytics]\nwindow = 2.5\n", "expected integer, got number"),
        ('[analytics]\nhedge = "ridge"\n', "must be one of ols, log, kalman"),
        ("[alerts]\nbell = 1\n", "expected boolean"),
        ('[feed]\nws_url = "http://x"\n', "must start with ws://"),
        ("[analytics]\nexit_z = 5\n", "exit_z must be below entry_z"),
        ("[analytics\n", "invalid TOML"),
    ],
)
def test_bad_files_name_file_key_reason(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert needle in str(info.value)
    assert str(f) in str(info.value)


def test_platform_user_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "quanttui").mkdir()
    (tmp_path / "quanttui" / "config.toml").write_text('[export]\ndir = "/tmp/x"\n')
    assert load_config().export.dir == "/tmp/x"
