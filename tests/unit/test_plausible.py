"""The trade-time rule and the untrusted-input parsers, case by case and under hypothesis."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quanttui.feed.backfill import kline_rows
from quanttui.feed.binance import (
    AGG_TRADES_LIMIT,
    BinanceRest,
    FrameError,
    RestError,
    clip,
    parse_frame,
    retry_after_s,
)
from quanttui.plausible import (
    BEFORE_LISTING,
    FUTURE,
    FUTURE_TOLERANCE_MS,
    FUTURES_LAUNCH_MS,
    describe,
    earliest_ms,
    time_problem,
)
from tests.unit.test_parser import FRAME, mutate

NOW = 1_765_788_195_357  # 2025-12-15T08:43:15.357Z
YEAR_2076 = 3_372_000_000_000


def test_time_rule_bounds_are_inclusive_of_the_tolerance() -> None:
    assert time_problem(NOW, NOW) is None
    assert time_problem(NOW + FUTURE_TOLERANCE_MS, NOW) is None
    assert time_problem(NOW + FUTURE_TOLERANCE_MS + 1, NOW) == FUTURE
    assert time_problem(YEAR_2076, NOW) == FUTURE
    assert time_problem(FUTURES_LAUNCH_MS, NOW) is None
    assert time_problem(FUTURES_LAUNCH_MS - 1, NOW) == BEFORE_LISTING
    assert time_problem(1, NOW) == BEFORE_LISTING
    listed = {"NEWUSDT": NOW - 1000}
    assert time_problem(NOW - 2000, NOW, earliest_ms("NEWUSDT", listed)) == BEFORE_LISTING
    assert time_problem(NOW - 2000, NOW, earliest_ms("BTCUSDT", listed)) is None


def test_describe_is_one_readable_line() -> None:
    assert describe(NOW, NOW) is None
    text = describe(9_999_999_999_999, NOW)
    assert text == (
        "trade time 2286-11-20T17:46:39.999Z is more than 60 s ahead of the clock "
        "(2025-12-15T08:43:15.357Z)"
    )
    assert "before the market opened (2019-09-01T00:00:00.000Z)" in describe(1, NOW)
    assert "\n" not in describe(10**30, NOW)


def test_future_stamped_frame_is_rejected_with_its_reason() -> None:
    raw = mutate(("data", "T"), YEAR_2076)
    with pytest.raises(FrameError) as info:
        parse_frame(raw, recv_ms=NOW)
    assert info.value.reason == FUTURE
    with pytest.raises(FrameError) as info:
        parse_frame(mutate(("data", "T"), 1), recv_ms=NOW)
    assert info.value.reason == BEFORE_LISTING
    with pytest.raises(FrameError) as info:
        parse_frame(mutate(("data", "a"), 2**64), recv_ms=NOW)
    assert info.value.reason == "bad a"
    listed = {"BTCUSDT": FRAME["data"]["T"] + 1}
    with pytest.raises(FrameError) as info:
        parse_frame(json.dumps(FRAME), recv_ms=NOW, listed=listed)
    assert info.value.reason == BEFORE_LISTING


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 1.0),
        ("3", 3.0),
        ("0.5", 0.5),
        ("100000", 100000.0),
        ("inf", math.inf),
        ("1e400", math.inf),
        ("-5", 1.0),
        ("nan", 1.0),
        ("soon", 1.0),
        ("²", 1.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0),  # an HTTP-date 10 s after "now"
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
    ],
)
def test_retry_after_header(header: str | None, seconds: float) -> None:
    assert retry_after_s(header, now_s=1445412470.0) == seconds


def test_clip_makes_one_short_line() -> None:
    assert clip("a\nb\r\n\tc\x1b") == "a\\nb\\r\\n\tc\\x1b"  # one line, controls visible
    assert len(clip("x" * 1000)) == 120
    assert clip(["BTCUSDT"]) == "['BTCUSDT']"


def row(a: int, t: int, p: str = "100.0", q: str = "0.1", m: bool = False) -> dict:
    return {"a": a, "p": p, "q": q, "f": a, "l": a, "T": t, "m": m}


def test_rest_rows_are_held_to_the_request() -> None:
    rest = BinanceRest("http://127.0.0.1:1")
    body = [
        row(9, NOW - 500),  # below fromId
        row(10, NOW - 400),
        row(10, NOW - 400),  # repeated
        row(12, NOW - 300),
        row(11, NOW - 300),  # out of order
        row(13, YEAR_2076),
        row(14, 1),
        {"a": "15", "p": "1", "q": "1", "T": NOW, "m": False},
        ["not", "an", "object"],
        row(16, NOW - 100, p="NaN"),
        row(17, NOW - 50),
        row(18, NOW - 40),  # beyond limit
    ]
    got = rest.parse_agg_rows("BTCUSDT", body, from_id=10, limit=11)
    assert [t.trade_id for t in got.ticks] == [10, 12, 17]
    assert got.dropped == Counter(
        {
            "outside requested ids": 1,
            "duplicate or out of order": 2,
            FUTURE: 1,
            BEFORE_LISTING: 1,
            "bad a": 1,
            "not an object": 1,
            "bad p": 1,
            "beyond limit": 1,
        }
    )
    assert rest.rejected == got.dropped
    window = rest.parse_agg_rows(
        "BTCUSDT", [row(1, NOW - 10_000), row(2, NOW - 5000), row(3, NOW)], start_ms=NOW - 6000
    )
    assert [t.trade_id for t in window.ticks] == [2, 3]
    assert window.dropped == Counter({"outside requested window": 1})
    with pytest.raises(RestError):
        rest.parse_agg_rows("BTCUSDT", {"a": 1})


def test_400000_rows_of_id_1_in_1970_give_nothing() -> None:
    rest = BinanceRest("http://127.0.0.1:1")
    got = rest.parse_agg_rows("BTCUSDT", [row(1, 1)] * 400_000, from_id=None)
    assert got.ticks == []
    assert got.dropped == Counter(
        {"beyond limit": 400_000 - AGG_TRADES_LIMIT, BEFORE_LISTING: AGG_TRADES_LIMIT}
    )


def kline(open_ms: int, **changes: object) -> list:
    k = [
        open_ms,
        "100.0",
        "101.0",
        "99.0",
        "100.5",
        "12.5",
        open_ms + 59_999,
        "1250.0",
        40,
        "6.0",
        "600.0",
        "0",
    ]
    for i, v in changes.items():
        k[int(i[1:])] = v
    return k


def test_kline_rows_skip_and_count_bad_rows() -> None:
    start = NOW - NOW % 60_000 - 10 * 60_000
    end = start + 5 * 60_000
    body = [
        kline(start - 60_000),  # before the window
        kline(start),
        kline(start + 60_000, f1=["100"]),  # a list for a price
        kline(start + 60_000, f0=True),  # a bool for the open time
        kline(start + 60_000, f8=10**30),  # trade count beyond 64 bits
        kline(start + 60_000, f2="98.0"),  # high below open
        kline(start + 90_000),  # not a minute start
        kline(start + 120_000),
        kline(start + 120_000),  # repeated
        kline(YEAR_2076 - YEAR_2076 % 60_000),
        "garbage",
        kline(start + 180_000),
        kline(start + 240_000),  # beyond limit
    ]
    rows, dropped = kline_rows("BTCUSDT", body, start, end, 12, NOW)
    assert [r[2] for r in rows] == [start, start + 120_000, start + 180_000]
    assert dropped == Counter(
        {
            "outside requested window": 1,
            "bad field type": 2,
            "bad kline": 3,
            "duplicate or out of order": 1,
            FUTURE: 1,
            "not a 12-field list": 1,
            "beyond limit": 1,
        }
    )


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["89790.10", "0", "-1", "NaN", "1e400", "BTCUSDT", "btcusdt"]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ("e", "E", "s", "a", "p", "q", "f", "l", "T", "m")


@st.composite
def frames(draw: st.DrawFn) -> str:
    """A real frame with some fields replaced, removed, or the whole thing garbled."""
    f = json.loads(json.dumps(FRAME))
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        if draw(st.booleans()):
            del f["data"][key]
        else:
            f["data"][key] = draw(json_value)
    if draw(st.booleans()):
        f["data"]["T"] = draw(st.integers(min_value=-(2**63), max_value=2**63))
    if draw(st.integers(0, 9)) == 0:
        return json.dumps(draw(json_value))
    return json.dumps(f)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_fuzzed_frames_are_a_plausible_tick_or_a_counted_reason(raw: str) -> None:
    try:
        t = parse_frame(raw, recv_ms=NOW)
    except FrameError as exc:
        assert exc.reason and "\n" not in exc.reason
        return
    if t is None:
        return
    assert time_problem(t.ts_ms, NOW) is None
    assert 0 <= t.trade_id < 2**63
    assert math.isfinite(t.price) and t.price >= 0 and math.isfinite(t.qty) and t.qty >= 0
    assert t.symbol.isascii() and t.symbol.isalnum() and t.symbol.isupper()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(
                row,
                st.integers(min_value=-5, max_value=40),
                st.one_of(
                    st.integers(min_value=NOW - 5000, max_value=NOW + 5000),
                    st.sampled_from([1, YEAR_2076, -1, 2**63]),
                ),
            ),
            json_value,
        ),
        max_size=30,
    ),
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=1, max_value=25),
)
def test_fuzzed_rest_rows_keep_only_what_was_asked(body: list, from_id: int, limit: int) -> None:
    rest = BinanceRest("http://127.0.0.1:1")
    got = rest.parse_agg_rows("ETHUSDT", body, from_id=from_id, limit=limit)
    ids = [t.trade_id for t in got.ticks]
    assert ids == sorted(set(ids)) and all(i >= from_id for i in ids)
    assert len(got.ticks) + sum(got.dropped.values()) == len(body)
    assert len(got.ticks) <= limit
    assert all(time_problem(t.ts_ms, NOW + 1000) is None for t in got.ticks)
