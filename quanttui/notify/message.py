"""What a notification says.

An alert::

    title: quanttui BTCUSDT/ETHUSDT: abs(zscore) >= 2
    body:  z = +2.31 ≥ 2: short ETHUSDT, long 0.083 BTCUSDT per unit
           pair BTCUSDT/ETHUSDT, rule abs(zscore) >= 2, value +2.3100, threshold 2
           bar 2025-12-15T08:43:15.000Z (UTC), hedge 0.083 (ols)
           id qt-17-1765788195000-...

The pair X/Y regresses Y on X (y = a + b x), so the spread is y - b x: a high z says Y
is rich against X (short Y, long b units of X per unit of Y), a low z the opposite. For
the log hedge b is an elasticity, so the X leg is b times Y's notional. A rule on another
metric states the crossing without a trade. The `id` line is the delivery's idempotency
key, for a receiver that wants to drop a repeat.
"""

from __future__ import annotations

import math

from quanttui.model import Alert, iso_utc

APP = "quanttui"
_OPS = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}


def _num(v: float) -> str:
    return f"{v:g}" if math.isfinite(v) else str(v)


def _op(rule: str) -> str:
    for op in (">=", "<=", ">", "<"):
        if op in rule:
            return op
    return ">="


Legs = tuple[tuple[str, float], ...]
"""A basket's (symbol, weight) per leg, the first leg's weight 1."""


def _basket_trade(head: str, z: float, legs: Legs, method: str) -> str:
    """A basket's spread is ``sum_i w_i y_i``: a high z says it is rich, so one unit short
    holds ``-w_i`` of each leg (units of price; notional multiples of the first leg's
    with log prices), a low z the opposite."""
    side = -1.0 if z > 0 else 1.0
    parts = [
        f"{'buy' if side * w > 0 else 'sell'} {abs(w):.3g} {sym}"
        for sym, w in legs
        if math.isfinite(w)
    ]
    per = "times the first leg's notional" if method == "log" else "units per unit"
    return f"{head}: {'short' if z > 0 else 'long'} the basket: {', '.join(parts)} ({per})"


def action(alert: Alert, hedge: float | None, method: str, legs: Legs | None = None) -> str:
    """The headline: the crossing and, for a z-score rule, the trade (a pair's from its
    hedge ratio, a basket's from its weights)."""
    op = _op(alert.rule)
    sym, thr = _OPS[op], _num(alert.threshold)
    use_abs = alert.rule.replace(" ", "").startswith("abs(")
    if alert.metric == "zscore" and use_abs and alert.value < 0 and op in (">", ">="):
        head = f"z = {alert.value:+.2f} {_OPS[op.replace('>', '<')]} -{thr}"
    elif alert.metric == "zscore":
        head = f"z = {alert.value:+.2f} {sym} {thr}"
    elif use_abs:
        head = f"|{alert.metric}| = {abs(alert.value):.4g} {sym} {thr} ({alert.value:+.4g})"
    else:
        head = f"{alert.metric} = {alert.value:+.4g} {sym} {thr}"
    if alert.metric != "zscore":
        return head
    x, _, y = alert.pair.partition("/")
    closing = (
        (use_abs and op in ("<", "<="))
        or alert.value == 0
        or abs(alert.value) < abs(alert.threshold)
    )
    if closing:
        return f"{head}: spread back near its mean, close the {alert.pair} position"
    if legs is not None:
        return _basket_trade(head, alert.value, legs, method)
    short_y = alert.value > 0
    y_side, x_side = ("short", "long") if short_y else ("long", "short")
    if hedge is None or not math.isfinite(hedge):
        return f"{head}: {y_side} {y}, {x_side} {x} (hedge unknown)"
    if hedge < 0:
        x_side = y_side
    per = "times its notional" if method == "log" else "per unit"
    return f"{head}: {y_side} {y}, {x_side} {abs(hedge):.3g} {x} {per}"


def alert_message(
    alert: Alert,
    hedge: float | None,
    method: str,
    *,
    revised: bool = False,
    legs: Legs | None = None,
) -> tuple[str, str]:
    """(title, body) of an alert; the body's last line (`id`) is added at delivery.
    `legs` are a basket's weights (then `hedge` is unused)."""
    title = f"{APP} {alert.pair}: {alert.rule}" + (" (revised)" if revised else "")
    if legs is not None:
        h = "weights " + ", ".join(f"{sym} {w:.4g}" for sym, w in legs)
    else:
        h = "hedge " + ("unknown" if hedge is None or not math.isfinite(hedge) else f"{hedge:.4g}")
    body = "\n".join(
        [
            action(alert, hedge, method, legs),
            f"pair {alert.pair}, rule {alert.rule}, value {alert.value:+.4f}, "
            f"threshold {_num(alert.threshold)}",
            f"bar {iso_utc(alert.ts_ms)} (UTC), {h} ({method})",
        ]
    )
    return title, body


def retraction_message(alert: Alert, withdrawn_ms: int, reason: str) -> tuple[str, str]:
    title = f"{APP} {alert.pair}: WITHDRAWN {alert.rule}"
    body = "\n".join(
        [
            f"The alert {alert.rule} of {alert.pair} at the bar {iso_utc(alert.ts_ms)} "
            f"(value {alert.value:+.4f}) is withdrawn: {reason}.",
            f"withdrawn at {iso_utc(withdrawn_ms)} (UTC)",
        ]
    )
    return title, body


SUMMARY_LINES = 30


def summary_message(rows: list[tuple[str, str]], dest_name: str) -> tuple[str, str]:
    """One message for a backlog beyond the rate limit: every row's title and headline
    (the first `SUMMARY_LINES`, then a count of the rest)."""
    n = len(rows)
    title = f"{APP}: {n} notifications (rate limit)"
    lines = [f"{n} notifications held back by the rate limit of {dest_name}:"]
    for t, body in rows[:SUMMARY_LINES]:
        lines.append(f"- {t.removeprefix(APP + ' ')} | {body.splitlines()[0] if body else ''}")
    if n > SUMMARY_LINES:
        lines.append(
            f"... and {n - SUMMARY_LINES} more (quanttui notify status, or the alerts table)"
        )
    return title, "\n".join(lines)


def with_id(body: str, key: str) -> str:
    return f"{body}\nid {key}"
