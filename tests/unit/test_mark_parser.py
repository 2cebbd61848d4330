"""The strict markPrice@1s parser on a frame recorded from Binance, and its rejections."""

from __future__ import annotations

import copy
import json

import pytest

from quanttui.feed.binance import (
    FrameError,
    parse_mark_frame,
    parse_mark_price,
    parse_market_frame,
)
from quanttui.model import MarkPrice, Tick
from tests.unit.test_parser import FRAME as AGG_FRAME

# Recorded from Binance (see `MarkPrice`'s docstring).
REAL = (
    '{"stream":"eosusdt@markPrice@1s","data":{"e":"markPriceUpdate","E":1616555105001,'
    '"s":"EOSUSDT","p":"4.11998561","P":"4.11278428","i":"4.11519211","r":"0.00030438",'
    '"T":1616572800000}}'
)


def test_real_frame() -> None:
    m = parse_mark_frame(REAL, recv_ms=5)
    assert m == MarkPrice(
        "EOSUSDT", 1616555105001, 4.11998561, 4.11519211, 4.11278428, 0.00030438,
        1616572800000, 5,
    )  # fmt: skip
    assert parse_market_frame(REAL.encode(), 5) == m
    assert parse_market_frame(REAL, 5) == m


def test_routing_keeps_trades_on_the_aggtrade_parser() -> None:
    t = parse_market_frame(json.dumps(AGG_FRAME), AGG_FRAME["data"]["E"] + 10)
    assert isinstance(t, Tick) and t.trade_id == 2983561190
    assert parse_market_frame('{"result":null,"id":1}') is None
    assert parse_mark_frame('{"result":null,"id":1}') is None


def test_negative_rate_and_missing_settle_estimate_are_fine() -> None:
    d = json.loads(REAL)["data"]
    d["r"] = "-0.00012000"
    del d["P"]
    m = parse_mark_price(d)
    assert m.rate == -0.00012 and m.settle_estimate is None


def _frame(**changes: object) -> str:
    f = copy.deepcopy(json.loads(REAL))
    for k, v in changes.items():
        if k == "stream":
            f["stream"] = v
        elif v is None:
            del f["data"][k]
        else:
            f["data"][k] = v
    return json.dumps(f)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("<not json>", "not JSON"),
        ("[1]", "not an object"),
        ('{"stream":"eosusdt@markPrice@1s"}', "not a stream frame"),
        (_frame(e="aggTrade"), "unexpected event"),
        (_frame(s=None), "bad s"),
        (_frame(s="EOS-USDT"), "bad s"),
        (_frame(E="1616555105001"), "bad E"),
        (_frame(E=0), "bad E"),
        (_frame(T=None), "bad T"),
        (_frame(T=1.6e12), "bad T"),
        (_frame(T=True), "bad T"),
        (_frame(p="0"), "bad p"),
        (_frame(p="-4.1"), "bad p"),
        (_frame(p=4.11998561), "bad p"),
        (_frame(p="nan"), "bad p"),
        (_frame(i=None), "bad i"),
        (_frame(i="abc"), "bad i"),
        (_frame(r=None), "bad r"),
        (_frame(r="1.5"), "bad r"),
        (_frame(r="inf"), "bad r"),
        (_frame(r=0.0003), "bad r"),
        (_frame(r=""), "bad r"),
        (_frame(P="-1"), "bad P"),
        (_frame(stream="btcusdt@markPrice@1s"), "stream/symbol mismatch"),
        (_frame(stream="eosusdt@aggTrade@markPrice"), "stream/symbol mismatch"),
    ],
)
def test_malformed_frames_are_rejected_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(FrameError) as exc:
        parse_market_frame(raw)
    assert exc.value.reason == reason


def test_premium_index_rows_parse_as_mark_updates() -> None:
    from quanttui.feed.binance import RestError
    from quanttui.feed.funding import parse_premium_index

    good = {
        "symbol": "BTCUSDT",
        "markPrice": "11793.63104562",
        "indexPrice": "11781.80495970",
        "estimatedSettlePrice": "11781.16138815",
        "lastFundingRate": "-0.00038246",
        "interestRate": "0.00010000",
        "nextFundingTime": 1597392000000,
        "time": 1597370495002,
    }
    delivery = good | {"symbol": "BTCUSDT_260327", "lastFundingRate": "", "nextFundingTime": 0}
    bad = [good | {"markPrice": "-1"}, good | {"lastFundingRate": 0.1}, good | {"time": "1"}, 7]
    marks, skipped = parse_premium_index([good, delivery, *bad])
    assert skipped == 4
    (m,) = marks
    assert (m.symbol, m.event_ms, m.next_funding_ms) == ("BTCUSDT", 1597370495002, 1597392000000)
    assert (m.mark, m.index, m.rate) == (11793.63104562, 11781.80495970, -0.00038246)
    with pytest.raises(RestError):
        parse_premium_index({"code": -1, "msg": "x"})
