"""Assemble a `Snapshot` from the streaming estimator and the stationarity tests.

The same function serves the app's analytics worker, `quanttui snapshot` and the tests,
so there is one definition of every reported number.
"""

from __future__ import annotations

import math

from quanttui.analytics.bars import PairBars
from quanttui.analytics.engine import PairAnalytics
from quanttui.analytics.stationarity import Stationarity, stationarity
from quanttui.config import TIMEFRAMES
from quanttui.model import Series, Snapshot

RETURN_BETA_MAX = 3.0
RETURN_R2_MIN = 0.3


def _f(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def return_beta_unreliable(beta: float, r2: float, se: float) -> bool:
    """The return beta is flagged when |b| > 3, R^2 < 0.3 or se(b) > |b|."""
    return abs(beta) > RETURN_BETA_MAX or r2 < RETURN_R2_MIN or se > abs(beta)


def build_snapshot(
    engine: PairAnalytics,
    symbol_x: str,
    symbol_y: str,
    timeframe: str,
    stat: Stationarity | None = None,
    *,
    run_tests: bool = True,
    chart_points: int | None = None,
) -> Snapshot:
    """Snapshot of `engine` as of its last bar. With `run_tests`, ADF and coint run here
    (so call this from a worker thread); otherwise `stat` is used as given."""
    m = engine.last
    base = {
        "symbol_x": symbol_x,
        "symbol_y": symbol_y,
        "timeframe": timeframe,
        "window": engine.window,
        "hedge": engine.hedge,
        "bars": engine.bars,
    }
    if m is None:
        return Snapshot(**base, flags=("insufficient_data",))
    flags: list[str] = []
    if run_tests and stat is None and len(engine.window_spread) == engine.window:
        stat = stationarity(
            list(engine.window_spread), list(engine.window_x), list(engine.window_y)
        )
    stat = stat or Stationarity()
    if stat.error:
        flags.append("stationarity_failed")
    if not math.isfinite(m.zscore):
        flags.append("insufficient_data")
    rb, rr2, rse = m.return_beta, m.return_r2, m.return_beta_se
    if math.isfinite(rb) and return_beta_unreliable(rb, rr2, rse):
        flags.append("return_beta_unreliable")
    hl = _f(m.half_life_bars)
    hist = list(engine.history)
    if chart_points is not None:
        hist = hist[-chart_points:]
    series = Series(
        ts_ms=tuple(h.ts_ms for h in hist),
        close_x=tuple(h.x for h in hist),
        close_y=tuple(h.y for h in hist),
        spread=tuple(h.spread for h in hist),
        spread_mean=tuple(h.spread_mean for h in hist),
        zscore=tuple(h.zscore for h in hist),
    )
    return Snapshot(
        **base,
        time_ms=m.ts_ms,
        close_x=m.x,
        close_y=m.y,
        alpha=_f(m.alpha),
        beta=_f(m.beta),
        r2=_f(m.r2),
        beta_se=_f(m.beta_se),
        spread=_f(m.spread),
        spread_mean=_f(m.spread_mean),
        zscore=_f(m.zscore),
        corr=_f(m.corr),
        adf_stat=stat.adf_stat,
        adf_p=stat.adf_p,
        adf_lag=stat.adf_lag,
        adf_crit=stat.adf_crit,
        coint_p=stat.coint_p,
        half_life_bars=hl,
        half_life_s=hl * TIMEFRAMES[timeframe] / 1000 if hl is not None else None,
        return_beta=_f(rb),
        return_r2=_f(rr2),
        return_beta_se=_f(rse),
        kalman_q=_f(m.kalman_q),
        kalman_z=_f(m.kalman_z),
        flags=tuple(flags),
        series=series,
    )


def run_bars(engine: PairAnalytics, bars: PairBars) -> None:
    """Feed every bar's closes to `engine`, oldest first."""
    ts = bars.ts_ms.tolist()
    xs = bars.x.close.tolist()
    ys = bars.y.close.tolist()
    for t, x, y in zip(ts, xs, ys, strict=True):
        engine.update(t, x, y)
