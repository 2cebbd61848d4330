from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanttui.config import _CHECKS, ConfigError, builtin_defaults_text, load_config

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


FLOAT_KEYS = [
    ("feed", "stale_after_s"),
    ("feed", "reconnect_base_s"),
    ("feed", "reconnect_max_s"),
    ("feed", "max_connection_age_s"),
    ("analytics", "entry_z"),
    ("analytics", "exit_z"),
    ("analytics", "kalman_delta"),
    ("analytics", "kalman_obs_var"),
    ("alerts", "cooldown_s"),
    ("alerts", "hysteresis"),
    ("backtest", "fee_bps"),
    ("backtest", "stop_z"),
]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(FLOAT_KEYS),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, 1e-300, 1e-9, 1e308, -1.0]),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
    ),
)
def test_every_number_is_finite_and_in_its_stated_range_or_refused(
    key: tuple[str, str], value: float
) -> None:
    """A value is either accepted, finite and inside the range the README states, or
    refused with one line naming the key and the allowed range."""
    section, name = key
    try:
        cfg = load_config(use_user_file=False, overrides={key: value})
    except ConfigError as exc:
        text = str(exc)
        assert name in text and "\n" not in text
        assert "must be" in text or "must not exceed" in text or "must be below" in text
        return
    got = getattr(getattr(cfg, section), name)
    assert math.isfinite(got)
    check = _CHECKS[key]
    assert check(got) is None, (key, got)


@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_infinity_is_refused_with_the_range(key: tuple[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(use_user_file=False, overrides={key: float("inf")})
    assert f"[{key[0]}] {key[1]}: inf is not a finite number (must be " in str(info.value)
