from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanttui.alerts import AlertEngine, RuleError, build_engine, parse_rule


@pytest.mark.parametrize(
    ("text", "metric", "absv", "op", "thr"),
    [
        ("zscore > 2", "zscore", False, ">", 2.0),
        ("zscore < -2", "zscore", False, "<", -2.0),
        ("abs(zscore) >= 2.5", "zscore", True, ">=", 2.5),
        ("corr<0.6", "corr", False, "<", 0.6),
        ("adf_p > 0.05", "adf_p", False, ">", 0.05),
        ("price_y > 3500", "price_y", False, ">", 3500.0),
        ("abs(zscore) >= entry_z", "zscore", True, ">=", 2.2),
        ("half_life_bars <= 1e3", "half_life_bars", False, "<=", 1000.0),
        ("abs(kalman_z) > 1.5", "kalman_z", True, ">", 1.5),
        ("kalman_q < 1e-4", "kalman_q", False, "<", 1e-4),
    ],
)
def test_parse(text, metric, absv, op, thr) -> None:
    r = parse_rule(text, entry_z=2.2)
    assert (r.metric, r.use_abs, r.op, r.threshold) == (metric, absv, op, thr)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("zscor > 2", "at column 1: unknown metric 'zscor'"),
        ("zscore >> 2", "at column 9: expected a number, entry_z or exit_z, then the end"),
        ("zscore = 2", "at column 8: expected one of >, >=, <, <="),
        ("zscore > two", "at column 10: expected a number"),
        ("", "at column 1: expected a metric name"),
        ("abs(corr > 1", "unknown metric 'abs'"),
        ("zscore > 2 extra", "at column 10: expected a number"),
    ],
)
def test_bad_rules_name_rule_and_column(text: str, needle: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(text)
    assert needle in str(info.value)
    assert repr(text) in str(info.value)


def fire_times(values: list[float], rule: str, h: float, cooldown_ms: int) -> list[int]:
    eng = AlertEngine("X/Y", h, cooldown_ms)
    eng.add(parse_rule(rule))
    out = []
    for i, v in enumerate(values):
        out += [a.ts_ms for a in eng.evaluate({"zscore": v}, i * 1000)]
    return out


values_st = st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=200)


@settings(max_examples=200)
@given(values=values_st)
def test_without_hysteresis_or_cooldown_fires_on_each_rising_edge(values: list[float]) -> None:
    got = fire_times(values, "zscore > 2", 0.0, 0)
    prev = False
    want = []
    for i, v in enumerate(values):
        cond = v > 2
        if cond and not prev:
            want.append(i * 1000)
        prev = cond
    assert got == want


@settings(max_examples=200)
@given(values=values_st, h=st.floats(0, 2))
def test_hysteresis_needs_a_full_retreat_between_alerts(values: list[float], h: float) -> None:
    got = [t // 1000 for t in fire_times(values, "zscore >= 2", h, 0)]
    for a, b in zip(got, got[1:], strict=False):
        assert any(v < 2 - h for v in values[a + 1 : b]), (a, b)
    for i in got:
        assert values[i] >= 2
    # and every retreat-then-cross is caught
    armed = True
    count = 0
    for v in values:
        if armed and v >= 2:
            armed, count = False, count + 1
        elif not armed and v < 2 - h:
            armed = True
    assert len(got) == count


@settings(max_examples=200)
@given(values=values_st, cool=st.integers(0, 20_000))
def test_cooldown_spaces_alerts(values: list[float], cool: int) -> None:
    got = fire_times(values, "abs(zscore) > 1", 0.0, cool)
    assert all(b - a >= cool for a, b in zip(got, got[1:], strict=False))
    assert got == sorted(set(got))


def test_default_rule_and_extra_rules() -> None:
    eng = build_engine(
        "BTCUSDT/ETHUSDT", ["corr < 0.6"], entry_z=2.0, exit_z=0.0, hysteresis=0.5, cooldown_s=0
    )
    assert [r.text for r in eng.rules] == ["abs(zscore) >= 2", "corr < 0.6"]
    a = eng.evaluate({"zscore": -2.4, "corr": 0.9}, 1000)
    assert [(x.rule, x.value, x.threshold) for x in a] == [("abs(zscore) >= 2", -2.4, 2.0)]
    assert eng.evaluate({"zscore": -1.9}, 2000) == []
    assert eng.evaluate({"zscore": 2.1}, 3000) == []  # never went below 1.5
    assert eng.evaluate({"zscore": 1.4}, 4000) == []
    assert len(eng.evaluate({"zscore": 2.0}, 5000)) == 1
    assert eng.remove("corr < 0.6") and not eng.remove("corr < 0.6")


@pytest.mark.parametrize("z", [-2.024, 2.024])
def test_an_abs_rule_stores_the_signed_value(z: float) -> None:
    eng = AlertEngine("AVAXUSDT/NEARUSDT", 0.25, 0)
    eng.add(parse_rule("abs(zscore) >= 2"))
    (a,) = eng.evaluate({"zscore": z}, 1_706_745_600_000)
    assert (a.metric, a.value, a.threshold, a.rule) == ("zscore", z, 2.0, "abs(zscore) >= 2")
    assert a.as_json() == {
        "time": "2024-02-01T00:00:00.000Z",
        "pair": "AVAXUSDT/NEARUSDT",
        "rule": "abs(zscore) >= 2",
        "metric": "zscore",
        "value": z,
        "threshold": 2.0,
    }


def test_abs_rules_rearm_on_the_magnitude_on_either_side() -> None:
    eng = AlertEngine("X/Y", 0.5, 0)
    eng.add(parse_rule("abs(zscore) >= entry_z", entry_z=2.0))
    seen = []
    for t, z in enumerate([-2.4, -1.9, 1.8, -1.4, 2.1, 1.0, -3.0]):
        seen += [(a.ts_ms, a.value) for a in eng.evaluate({"zscore": z}, t)]
    assert seen == [(0, -2.4), (4, 2.1), (6, -3.0)]


def test_signed_rules_keep_their_value() -> None:
    eng = AlertEngine("X/Y", 0.0, 0)
    eng.add(parse_rule("zscore < -2"))
    eng.add(parse_rule("kalman_z > 1.5"))
    got = eng.evaluate({"zscore": -2.5, "kalman_z": 1.75}, 0)
    assert [(a.metric, a.value, a.threshold) for a in got] == [
        ("zscore", -2.5, -2.0),
        ("kalman_z", 1.75, 1.5),
    ]
