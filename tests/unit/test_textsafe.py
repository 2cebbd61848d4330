"""`quanttui.textsafe.printable`: what leaves the program is printable and bounded."""

from __future__ import annotations

import logging
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanttui.textsafe import ELLIPSIS, SafeFormatter, guard_logging, printable
from tests.fakes.exchange import HOSTILE

ALLOWED = {"\t", "\n"}


def unsafe_chars(text: str, one_line: bool) -> list[str]:
    """Characters a terminal could act on: category Cc (C0, DEL and C1) other than tab
    and newline, plus format, separator and surrogate characters."""
    allowed = {"\t"} if one_line else ALLOWED
    return [
        ch
        for ch in text
        if ch not in allowed
        and (unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") or 0x80 <= ord(ch) <= 0x9F)
    ]


def check(value: object, limit: int, one_line: bool) -> str:
    out = printable(value, limit, one_line=one_line)
    assert len(out) <= limit
    assert not unsafe_chars(out, one_line), out
    out.encode("utf-8")  # no lone surrogate: a strict stdout can write it
    return out


any_char = st.characters(codec=None, categories=None)
limits = st.integers(1, 400)


@settings(max_examples=500)
@given(st.text(any_char, max_size=600), limits, st.booleans())
def test_unicode_output_has_no_controls_and_respects_the_bound(
    text: str, limit: int, one_line: bool
) -> None:
    out = check(text, limit, one_line)
    if out.endswith(ELLIPSIS) and not text.endswith(ELLIPSIS):
        assert printable(text, 10**6, one_line=one_line).startswith(out[: -len(ELLIPSIS)])
    elif not unsafe_chars(text, one_line) and len(text) <= limit:
        assert out == text  # safe text passes unchanged


@settings(max_examples=300)
@given(
    st.binary(max_size=600), limits, st.booleans(), st.sampled_from(["replace", "surrogateescape"])
)
def test_bytes_output_has_no_controls_and_respects_the_bound(
    data: bytes, limit: int, one_line: bool, errors: str
) -> None:
    check(data, limit, one_line)
    check(data.decode("utf-8", errors=errors), limit, one_line)


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["\x1b", "\x9b", "\u202e", "\n", "a", "\udcff"]), max_size=80))
def test_cut_never_splits_an_escape(chars: list[str]) -> None:
    text = "".join(chars)
    for limit in range(1, 40):
        out = printable(text, limit, one_line=True)
        body = out.removesuffix(ELLIPSIS)
        assert printable(text, 10**6, one_line=True).startswith(body)
        assert not body.endswith(("\\", "\\x", "\\x1", "\\u", "\\u20", "\\ud", "\\udcf"))


def test_the_hostile_message_is_shown_escaped_and_markup_stays_text() -> None:
    out = printable(HOSTILE)
    assert out == (
        "[reverse]PWNED[/reverse] [link=http://evil]click[/link] "
        "\\x1b]0;TITLEPWN\\x07 \\x1b]52;c;cHduZWQ=\\x07 \\x1b[2J"
    )


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b", "\\x1b"),
        ("\x07", "\\x07"),
        ("\x7f", "\\x7f"),
        ("\x9b", "\\x9b"),  # C1 CSI
        ("\x9d", "\\x9d"),  # C1 OSC
        ("\r", "\\r"),
        ("\x00", "\\x00"),
        ("\u202e", "\\u202e"),  # right-to-left override
        ("\u2066", "\\u2066"),  # left-to-right isolate
        ("\u200b", "\\u200b"),  # zero-width space
        ("\ufeff", "\\ufeff"),
        ("\u2028", "\\u2028"),
        ("\udc80", "\\udc80"),  # a lone surrogate from surrogateescape
        ("\U000e0041", "\\U000e0041"),  # tag character
        ("\t", "\t"),
        ("é ü 中文 ✓", "é ü 中文 ✓"),
        ("C:\\Users\\me", "C:\\Users\\me"),
    ],
)
def test_escapes(raw: str, shown: str) -> None:
    assert printable(f"a{raw}b") == f"a{shown}b"


def test_newline_is_kept_unless_one_line() -> None:
    assert printable("a\nb") == "a\nb"
    assert printable("a\nb", one_line=True) == "a\\nb"


def test_a_1_mb_message_is_cut_with_an_ellipsis() -> None:
    msg = "HTTP 400: " + "\x1b[2J" * 200_000 + "A" * 200_000
    out = printable(msg, 300)
    assert 300 - len("\\x1b") <= len(out) <= 300  # cut at an escape's boundary
    assert out.endswith(ELLIPSIS)
    assert out.startswith("HTTP 400: \\x1b[2J\\x1b[2J")
    assert "\x1b" not in out


def test_bound_counts_the_output_and_the_ellipsis() -> None:
    assert printable("abcdef", 6) == "abcdef"
    assert printable("abcdefg", 6) == "abcde" + ELLIPSIS
    assert printable("\x1b\x1b", 8) == "\\x1b\\x1b"
    assert printable("\x1b\x1b", 7) == "\\x1b" + ELLIPSIS
    assert printable("\x1b", 3) == ELLIPSIS
    with pytest.raises(ValueError, match="limit"):
        printable("x", 0)


def test_other_values_and_bytes() -> None:
    assert printable(ValueError("bad \x1b[2J")) == "bad \\x1b[2J"
    assert printable(b"\xff\x1b]52;") == "\ufffd\\x1b]52;"
    assert printable(42) == "42"


def test_log_records_go_out_escaped_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    name = "test_textsafe_guard"
    guard_logging(name)
    guard_logging(name)  # idempotent: one handler, one line per record
    log = logging.getLogger(name)
    log.warning("gap %s not filled: %s", "BTCUSDT", "HTTP 400: " + HOSTILE + "\nforged line")
    err = capsys.readouterr().err
    assert err == ("gap BTCUSDT not filled: HTTP 400: " + printable(HOSTILE) + "\\nforged line\n")


def test_safe_formatter_bounds_the_message() -> None:
    rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "%s", ("y" * 10**6,), None)
    out = SafeFormatter(limit=100).format(rec)
    assert len(out) == 100 and out.endswith(ELLIPSIS)


def test_log_handler_follows_sys_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """As Python's last-resort handler does, so a Textual app's stderr capture applies."""
    import io

    name = "test_textsafe_follow"
    guard_logging(name)
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    logging.getLogger(name).warning("\x1b]0;TITLEPWN\x07")
    assert buf.getvalue() == "\\x1b]0;TITLEPWN\\x07\n"
