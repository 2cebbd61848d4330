"""Alert rules: parsing and edge-triggered evaluation with hysteresis and cooldown.

Grammar (whitespace free between tokens)::

    rule   := term OP value
    term   := METRIC | "abs(" METRIC ")"
    OP     := ">" | ">=" | "<" | "<="
    value  := number | "entry_z" | "exit_z"

METRIC is any number in the analytics snapshot (`quanttui.model.METRIC_NAMES`), the
perpetual-futures ones (``funding_x funding_y carry_bps_day basis_x basis_y``) included;
a metric that is undefined (no mark price yet) never fires a rule.

Semantics. A rule *fires* on a transition of its condition from false to true (a rule
starts out armed, as if the condition had been false). After firing it is disarmed and
re-arms only once the value has gone back past the threshold by the hysteresis margin
``h``: the condition must fail against ``threshold - h`` for ``>``/``>=`` (against
``threshold + h`` for ``<``/``<=``); with ``h = 0`` that is simply "false again".
A transition inside the cooldown (in bar time, so a replay at any speed alerts the same)
is swallowed: the rule disarms without firing. Rules are evaluated on each closed bar.

An `Alert` carries the metric's signed value, even when the rule compares ``abs()`` of
it (``abs(zscore) >= 2`` at z = -2.4 stores -2.4: the sign is the side of the trade),
and the threshold as the rule states it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from quanttui.model import METRIC_NAMES, Alert

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


class RuleError(ValueError):
    """A rule that does not parse; the message names the rule and the 1-based column."""


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    metric: str
    use_abs: bool
    op: str
    threshold: float

    def value(self, metrics: Mapping[str, float]) -> float | None:
        """The metric's own (signed) value, or None when it is undefined."""
        v = metrics.get(self.metric)
        if v is None or not math.isfinite(v):
            return None
        return v

    def term(self, v: float) -> float:
        """The left-hand side of the rule for a metric value: ``|v|`` under ``abs()``."""
        return abs(v) if self.use_abs else v

    def holds(self, v: float) -> bool:
        return OPS[self.op](self.term(v), self.threshold)

    def rearmed(self, v: float, hysteresis: float) -> bool:
        """False by at least the margin: the condition fails even against a threshold
        moved `hysteresis` towards the value."""
        shift = -hysteresis if self.op in (">", ">=") else hysteresis
        return not OPS[self.op](self.term(v), self.threshold + shift)


_TERM = re.compile(r"\s*(abs\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)|([A-Za-z_][A-Za-z0-9_]*))")
_OP = re.compile(r"\s*(>=|<=|>|<)")
_VALUE = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|entry_z|exit_z)\s*$")


def parse_rule(
    text: str,
    *,
    entry_z: float = 2.0,
    exit_z: float = 0.0,
    names: tuple[str, ...] = METRIC_NAMES,
) -> Rule:
    """Parse one rule; raise `RuleError` naming the rule and the column of the fault.
    `names` are the metrics it may name (a basket's are `BASKET_METRIC_NAMES`)."""
    src = text

    def fail(pos: int, what: str) -> RuleError:
        return RuleError(f"bad alert rule {src!r} at column {pos + 1}: {what}")

    m = _TERM.match(text)
    if not m:
        raise fail(len(text) - len(text.lstrip()), "expected a metric name or abs(metric)")
    metric = m.group(2) or m.group(3)
    if metric not in names:
        col = m.start(2) if m.group(2) else m.start(3)
        raise fail(col, f"unknown metric {metric!r} (known: {', '.join(names)})")
    pos = m.end()
    o = _OP.match(text, pos)
    if not o:
        skip = len(text[pos:]) - len(text[pos:].lstrip())
        raise fail(pos + skip, "expected one of >, >=, <, <=")
    pos = o.end()
    v = _VALUE.match(text, pos)
    if not v:
        skip = len(text[pos:]) - len(text[pos:].lstrip())
        raise fail(pos + skip, "expected a number, entry_z or exit_z, then the end")
    raw = v.group(1)
    threshold = {"entry_z": entry_z, "exit_z": exit_z}.get(raw)
    if threshold is None:
        threshold = float(raw)
    if not math.isfinite(threshold):
        raise fail(v.start(1), "threshold must be finite")
    return Rule(text.strip(), metric, m.group(2) is not None, o.group(1), threshold)


@dataclass(slots=True)
class _State:
    armed: bool = True
    last_fired_ms: int | None = None


@dataclass
class AlertEngine:
    """Evaluates rules for one pair. Pure: no I/O, the caller stores and shows alerts."""

    pair: str
    hysteresis: float = 0.25
    cooldown_ms: int = 30_000
    rules: list[Rule] = field(default_factory=list)
    _states: dict[str, _State] = field(default_factory=dict)

    def add(self, rule: Rule) -> bool:
        """Add a rule; returns False if an identical rule is already there."""
        if any(r.text == rule.text for r in self.rules):
            return False
        self.rules.append(rule)
        self._states[rule.text] = _State()
        return True

    def remove(self, text: str) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.text != text.strip()]
        self._states.pop(text.strip(), None)
        return len(self.rules) < before

    def reset(self) -> None:
        for s in self._states.values():
            s.armed, s.last_fired_ms = True, None

    def evaluate(self, metrics: Mapping[str, float], ts_ms: int) -> list[Alert]:
        fired = []
        for rule in self.rules:
            v = rule.value(metrics)
            if v is None:
                continue
            st = self._states[rule.text]
            if st.armed:
                if rule.holds(v):
                    st.armed = False
                    cooling = (
                        st.last_fired_ms is not None and ts_ms - st.last_fired_ms < self.cooldown_ms
                    )
                    if not cooling:
                        st.last_fired_ms = ts_ms
                        fired.append(
                            Alert(ts_ms, self.pair, rule.text, rule.metric, v, rule.threshold)
                        )
            elif rule.rearmed(v, self.hysteresis):
                st.armed = True
        return fired


def build_engine(
    pair: str,
    texts: Iterable[str],
    *,
    entry_z: float,
    exit_z: float,
    hysteresis: float,
    cooldown_s: float,
    default: bool = True,
    names: tuple[str, ...] = METRIC_NAMES,
) -> AlertEngine:
    """The default rule ``abs(zscore) >= entry_z`` (unless `default` is false) plus
    `texts`; raises `RuleError`."""
    eng = AlertEngine(pair, hysteresis, int(cooldown_s * 1000))
    if default:
        eng.add(parse_rule(f"abs(zscore) >= {entry_z:g}"))
    for t in texts:
        eng.add(parse_rule(t, entry_z=entry_z, exit_z=exit_z, names=names))
    return eng
