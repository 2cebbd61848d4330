"""Notifications: config keys, URL masking, message text, backoff and the token bucket."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from quanttui.cli import main
from quanttui.config import NOTIFY_ENV, ConfigError, load_config, url_has_credentials
from quanttui.model import Alert
from quanttui.notify.message import action, alert_message, retraction_message, summary_message
from quanttui.notify.urls import NotifyUrlError, Scrubber, destination, routing
from quanttui.notify.worker import TokenBucket, backoff_s

SECRET = "S3cr3tT0ken42"
TG = "123456789:ABCdefGHIjklMNOpqrSTUvwx"


def _write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    p.chmod(mode)
    return p


# ---------------------------------------------------------------- config
def test_urls_from_file_environment_and_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NOTIFY_ENV, "ntfys://env-topic, json://127.0.0.1:9/e")
    cfg = load_config(
        _write(tmp_path, '[notify]\nurls = ["ntfys://file-topic"]\nburst = 2\n'),
        {("notify", "urls"): ["json://127.0.0.1:9/cli", "ntfys://file-topic"]},
    )
    assert cfg.notify.urls == (
        "ntfys://file-topic",
        "ntfys://env-topic",
        "json://127.0.0.1:9/e",
        "json://127.0.0.1:9/cli",
    )
    assert cfg.notify.burst == 2 and cfg.notify.enabled


def test_no_urls_means_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NOTIFY_ENV, raising=False)
    cfg = load_config(_write(tmp_path, ""))
    assert cfg.notify.urls == () and not cfg.notify.enabled


def test_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NOTIFY_ENV, raising=False)
    cfg = load_config(
        _write(
            tmp_path,
            '[notify]\nurls = ["json://127.0.0.1:9/all"]\n[notify.routes]\n'
            '"corr < 0.6" = ["json://127.0.0.1:9/corr"]\n'
            '"BTCUSDT/ETHUSDT: adf_p > 0.05" = []\n',
        )
    )
    r = routing(cfg)
    names = lambda ds: [d.name for d in ds]  # noqa: E731
    assert names(r.for_alert("BTCUSDT/ETHUSDT", "abs(zscore) >= 2")) == ["json://127.0.0.1:9/all"]
    assert names(r.for_alert("X/Y", "corr < 0.6")) == ["json://127.0.0.1:9/corr"]
    assert names(r.for_alert("BTCUSDT/ETHUSDT", "adf_p > 0.05")) == []
    assert names(r.for_alert("SOLUSDT/ETHUSDT", "adf_p > 0.05")) == ["json://127.0.0.1:9/all"]
    assert len(r.all) == 2


def test_a_readable_file_with_credentials_is_refused(tmp_path: Path) -> None:
    text = f'[notify]\nurls = ["json://user:{SECRET}@127.0.0.1:9/x"]\n'
    with pytest.raises(ConfigError, match="readable by group or others") as got:
        load_config(_write(tmp_path, text, 0o644))
    assert SECRET not in str(got.value) and "chmod 600" in str(got.value)
    assert load_config(_write(tmp_path, text, 0o600)).notify.urls
    tg = f'[notify.routes]\n"corr < 0.5" = ["tgram://{TG}/12345"]\n'
    with pytest.raises(ConfigError, match="readable by group"):
        load_config(_write(tmp_path, tg, 0o640))
    # no credentials: any mode will do
    assert load_config(_write(tmp_path, '[notify]\nurls = ["ntfys://t"]\n', 0o644)).notify.urls


def test_credentials_detection() -> None:
    assert url_has_credentials(f"json://u:{SECRET}@h/p")
    assert url_has_credentials(f"tgram://{TG}/1")
    assert url_has_credentials("json://h/p?token=abc")
    assert not url_has_credentials("ntfys://topic")
    assert not url_has_credentials("json://127.0.0.1:8080/hook")


@pytest.mark.parametrize("bad", ["not a url", "json:// space", "nocolon"])
def test_bad_urls_are_config_errors(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="apprise URL"):
        load_config(_write(tmp_path, f'[notify]\nurls = ["{bad}"]\n'))


@pytest.mark.parametrize("key,value", [("burst", 0), ("rate_per_min", 0.0), ("max_attempts", 0)])
def test_ranges(tmp_path: Path, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"notify] {key}"):
        load_config(_write(tmp_path, f"[notify]\n{key} = {value}\n"))


def test_cli_unknown_scheme_exits_2_masked(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv(NOTIFY_ENV, raising=False)
    code = main(
        ["notify", "test", "--config", str(_write(tmp_path, "")), "nope://user:" + SECRET + "@h/x"]
    )
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("quanttui: error: not a notification URL apprise knows: nope://****")
    assert len(err.strip().splitlines()) == 1 and SECRET not in out + err
    # a scheme apprise does not know may hold its token anywhere, the host too
    assert main(["notify", "test", "--config", str(_write(tmp_path, "")), f"nope://{SECRET}"]) == 2
    assert SECRET.lower() not in capsys.readouterr().err.lower()
    assert main(["notify", "test", "--config", str(_write(tmp_path, "")), "plainword"]) == 2
    assert "not a URL" in capsys.readouterr().err


def test_cli_notify_needs_an_action(capsys) -> None:
    assert main(["notify"]) == 2
    assert "error" in capsys.readouterr().err


def test_cli_notify_test_without_any_url(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv(NOTIFY_ENV, raising=False)
    assert main(["notify", "test", "--config", str(_write(tmp_path, ""))]) == 2
    assert "no notification URL" in capsys.readouterr().err


# ---------------------------------------------------------------- urls and scrubbing
def test_destination_masks_secrets() -> None:
    d = destination(f"json://user:{SECRET}@127.0.0.1:9/path")
    assert d.name == "json://user:****@127.0.0.1:9/path"
    assert d.key.startswith(d.name + "#") and SECRET not in d.key + repr(d)
    assert SECRET in d.secrets
    t = destination(f"tgram://{TG}/12345")
    assert "ABCdefGHIjklMNOpqrSTUvwx" not in t.name and "123456789" not in t.name
    other = destination(f"json://user:other{SECRET}@127.0.0.1:9/path")
    assert other.name == d.name and other.key != d.key


def test_unknown_url() -> None:
    with pytest.raises(NotifyUrlError) as got:
        destination(f"nope://u:{SECRET}@h/p")
    assert SECRET not in str(got.value)


def test_scrubber_removes_secrets_and_escapes_controls() -> None:
    d = destination(f"json://user:{SECRET}@127.0.0.1:9/path")
    t = destination(f"tgram://{TG}/12345")
    s = Scrubber([d, t])
    out = s(f"error at json://user:{SECRET}@127.0.0.1 bot{TG} \x1b]0;pwned\x07\nforged")
    assert SECRET not in out and "ABCdefGHIjklMNOpqrSTUvwx" not in out
    assert "\x1b" not in out and "\\x1b" in out and "\n" not in out


# ---------------------------------------------------------------- messages
def _alert(value: float, rule: str = "abs(zscore) >= 2", metric: str = "zscore") -> Alert:
    return Alert(1_765_788_195_000, "BTCUSDT/ETHUSDT", rule, metric, value, 2.0)


def test_the_issue_example() -> None:
    assert (
        action(_alert(2.3141), 0.0834, "ols")
        == "z = +2.31 ≥ 2: short ETHUSDT, long 0.0834 BTCUSDT per unit"
    )
    assert (
        action(_alert(-2.5), 0.083, "ols")
        == "z = -2.50 ≤ -2: long ETHUSDT, short 0.083 BTCUSDT per unit"
    )
    assert action(_alert(2.5), -0.5, "ols").endswith("short ETHUSDT, short 0.5 BTCUSDT per unit")
    assert "times its notional" in action(_alert(2.5), 0.9, "log")
    assert action(_alert(2.5), None, "ols").endswith("(hedge unknown)")
    assert "close the BTCUSDT/ETHUSDT position" in action(
        _alert(0.1, "abs(zscore) <= 0.5"), 1, "ols"
    )
    assert action(_alert(0.42, "corr < 0.6", "corr"), 1.0, "ols") == "corr = +0.42 < 2"


def test_alert_message_fields() -> None:
    title, body = alert_message(_alert(2.3141), 0.0834, "ols")
    assert title == "quanttui BTCUSDT/ETHUSDT: abs(zscore) >= 2"
    lines = body.splitlines()
    assert lines[1] == "pair BTCUSDT/ETHUSDT, rule abs(zscore) >= 2, value +2.3141, threshold 2"
    assert lines[2] == "bar 2025-12-15T08:43:15.000Z (UTC), hedge 0.0834 (ols)"
    assert alert_message(_alert(2.3), 1, "ols", revised=True)[0].endswith("(revised)")


def test_retraction_and_summary() -> None:
    title, body = retraction_message(_alert(2.31), 1_765_788_200_000, "a recompute")
    assert title == "quanttui BTCUSDT/ETHUSDT: WITHDRAWN abs(zscore) >= 2"
    assert "2025-12-15T08:43:15.000Z" in body and "withdrawn: a recompute." in body
    rows = [(f"quanttui P{i}: r", f"line {i}\nmore") for i in range(40)]
    t, b = summary_message(rows, "json://h/p")
    assert t == "quanttui: 40 notifications (rate limit)"
    assert "- P0: r | line 0" in b and "... and 10 more" in b


# ---------------------------------------------------------------- pacing
def test_backoff_grows_caps_and_jitters() -> None:
    rng = random.Random(1)
    got = [backoff_s(n, 1.0, 10.0, rng) for n in range(1, 8)]
    for n, g in enumerate(got, start=1):
        full = min(10.0, 2 ** (n - 1))
        assert 0.5 * full <= g <= full
    assert len({round(backoff_s(3, 1.0, 10.0, rng), 6) for _ in range(20)}) > 1


def test_token_bucket() -> None:
    b = TokenBucket(3.0, 1.0)
    for _ in range(3):
        b.take()
    assert b.refill() < 1.0
    assert 0 < b.wait_s() <= 1.0


def test_basket_alert_names_the_trade_per_leg() -> None:
    a = Alert(1_765_788_195_000, "AVAXUSDT+NEARUSDT+FILUSDT", "abs(zscore) >= 2", "zscore", 2.4, 2)
    legs = (("AVAXUSDT", 1.0), ("NEARUSDT", -0.52), ("FILUSDT", 0.31))
    title, body = alert_message(a, None, "log", legs=legs)
    assert title == "quanttui AVAXUSDT+NEARUSDT+FILUSDT: abs(zscore) >= 2"
    head, _, bar = body.splitlines()
    assert head == (
        "z = +2.40 ≥ 2: short the basket: sell 1 AVAXUSDT, buy 0.52 NEARUSDT, "
        "sell 0.31 FILUSDT (times the first leg's notional)"
    )
    assert bar.endswith("weights AVAXUSDT 1, NEARUSDT -0.52, FILUSDT 0.31 (log)")
    low = Alert(a.ts_ms, a.pair, a.rule, "zscore", -2.4, 2)
    assert (
        "long the basket: buy 1 AVAXUSDT, sell 0.52 NEARUSDT, buy 0.31 FILUSDT"
        in (alert_message(low, None, "prices", legs=legs)[1])
    )
