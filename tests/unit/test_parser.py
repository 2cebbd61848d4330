from __future__ import annotations

import json
import random

import pytest

from quanttui.feed.binance import FrameError, backoff_delay, parse_frame, stream_url

FRAME = {
    "stream": "btcusdt@aggTrade",
    "data": {
        "e": "aggTrade",
        "E": 1765788195350,
        "s": "BTCUSDT",
        "a": 2983561190,
        "p": "89790.10",
        "q": "0.004",
        "nq": "0.004",
        "f": 6805063417,
        "l": 6805063417,
        "T": 1765788195300,
        "m": True,
    },
}


def test_stream_url_is_routed_and_combined() -> None:
    url = stream_url("wss://fstream.binance.com/market", ["BTCUSDT", "ETHUSDT"])
    assert (
        url == "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    )


def test_parses_trade_time_not_event_time() -> None:
    t = parse_frame(json.dumps(FRAME), recv_ms=1765788195357)
    assert (t.symbol, t.trade_id, t.ts_ms, t.price, t.qty, t.is_buyer_maker, t.recv_ms) == (
        "BTCUSDT",
        2983561190,
        1765788195300,
        89790.10,
        0.004,
        True,
        1765788195357,
    )


def test_subscription_ack_is_not_a_trade() -> None:
    assert parse_frame('{"result":null,"id":1}') is None


def mutate(path: tuple[str, ...], value: object) -> str:
    f = json.loads(json.dumps(FRAME))
    d = f
    for k in path[:-1]:
        d = d[k]
    if value is KeyError:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return json.dumps(f)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("[1,2]", "not an object"),
        ('{"foo": 1}', "not a stream frame"),
        (mutate(("data", "e"), "trade"), "unexpected event"),
        (mutate(("data", "p"), 89790.1), "bad p"),
        (mutate(("data", "p"), "NaN"), "bad p"),
        (mutate(("data", "q"), "-1"), "bad q"),
        (mutate(("data", "a"), "12"), "bad a"),
        (mutate(("data", "a"), True), "bad a"),
        (mutate(("data", "T"), KeyError), "bad T"),
        (mutate(("data", "m"), "true"), "bad m"),
        (mutate(("data", "s"), "[red]BTC[/red]"), "bad s"),
        (mutate(("stream",), "ethusdt@aggTrade"), "stream/symbol mismatch"),
    ],
)
def test_malformed_frames_are_rejected_with_reason(raw: str, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(raw)
    assert info.value.reason == reason


def test_backoff_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, 0.5, 30.0, rng) for a in range(12)]
    assert all(0 < d <= 30.0 for d in delays)
    assert delays[-1] >= 15.0
    assert 0.25 <= delays[0] <= 0.5
    assert len({round(backoff_delay(10, 0.5, 30.0, rng), 6) for _ in range(20)}) > 10
