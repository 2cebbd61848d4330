"""Core value types shared by every layer.

They are frozen and slotted: a `Tick` crosses tasks and threads (feed, writer, bar
builder, analytics worker), and immutability is what makes that sharing safe without
locks. Times are integer epoch milliseconds in UTC everywhere; conversion to text happens
only at the edges (`iso_utc`).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime


def iso_utc(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with millisecond precision, e.g. `2025-12-15T08:43:15.300Z`."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso_ms(text: str) -> int:
    """Parse ISO-8601 text to epoch ms; a text without an offset is taken as UTC."""
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Tick:
    """One aggregated trade. `ts_ms` is the trade time `T`, never the event time `E`."""

    symbol: str
    trade_id: int
    ts_ms: int
    price: float
    qty: float
    is_buyer_maker: bool
    recv_ms: int = 0


DEFAULT_FUNDING_INTERVAL_H = 8
"""Binance USD-M settles funding every 8 h (00:00, 08:00, 16:00 UTC) for every symbol
that ``GET /fapi/v1/fundingInfo`` does not list with another interval."""


@dataclass(frozen=True, slots=True)
class MarkPrice:
    """One ``<symbol>@markPrice@1s`` update of a USD-M perpetual.

    A frame recorded from Binance (quoted in geometrybase/hft-micro's ``common`` tests)::

        {"stream": "eosusdt@markPrice@1s",
         "data": {"e": "markPriceUpdate", "E": 1616555105001, "s": "EOSUSDT",
                  "p": "4.11998561", "P": "4.11278428", "i": "4.11519211",
                  "r": "0.00030438", "T": 1616572800000}}

    ``p`` mark price, ``i`` index price, ``P`` estimated settle price (meaningful only in
    the last hour before a settlement), ``r`` the funding rate that will settle at ``T``
    (a fraction: 0.00030438 = 0.030438%), ``T`` the next funding time, ``E`` event time.
    """

    symbol: str
    event_ms: int
    mark: float
    index: float
    settle_estimate: float | None
    rate: float
    next_funding_ms: int
    recv_ms: int = 0


@dataclass(frozen=True, slots=True)
class Bar:
    """OHLCV of one leg over `[ts_ms, ts_ms + timeframe)`. `filled` marks a bucket with no
    trade, whose OHLC is the previous close carried forward and whose volume is 0."""

    ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    filled: bool = False


@dataclass(frozen=True, slots=True)
class PairBar:
    """Both legs' bars for one bucket of the shared grid."""

    ts_ms: int
    x: Bar
    y: Bar


@dataclass(frozen=True, slots=True)
class Alert:
    """A rule that fired at the bar of `ts_ms`. `value` is the metric's signed value at
    that bar (not ``|value|`` for an ``abs()`` rule, whose text keeps the ``abs``), and
    `threshold` is the rule's own, with ``entry_z``/``exit_z`` resolved."""

    ts_ms: int
    pair: str
    rule: str
    metric: str
    value: float
    threshold: float

    def as_json(self) -> dict[str, object]:
        return {
            "time": iso_utc(self.ts_ms),
            "pair": self.pair,
            "rule": self.rule,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
        }


@dataclass(frozen=True, slots=True)
class LegFunding:
    """One leg's latest mark-price update as the metrics table shows it: `basis_bps`
    is ``1e4 * (mark - index) / index``, `rate` the predicted funding rate (a fraction),
    `countdown_s` the time to `next_funding_ms` when the metrics were taken, and
    `updated_ms` the update's event time."""

    symbol: str
    mark: float
    index: float
    basis_bps: float
    rate: float
    interval_h: int
    next_funding_ms: int
    countdown_s: float
    updated_ms: int

    def as_json(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "mark": self.mark,
            "index": self.index,
            "basis_bps": self.basis_bps,
            "funding_rate": self.rate,
            "interval_h": self.interval_h,
            "next_funding": iso_utc(self.next_funding_ms),
            "countdown_s": self.countdown_s,
            "updated": iso_utc(self.updated_ms),
        }


@dataclass(frozen=True, slots=True)
class FundingMetrics:
    """Both legs (None until a leg's first update) and the pair's carry, in bps of gross
    notional per day, for the side the z-score points to (`side` None when it points
    nowhere; then `carry_bps_day` is None). Definitions: `quanttui.analytics.funding`."""

    x: LegFunding | None
    y: LegFunding | None
    side: str | None
    carry_bps_day: float | None

    def rule_metrics(self) -> dict[str, float]:
        """``funding_x funding_y basis_x basis_y carry_bps_day`` (rates as fractions,
        basis and carry in bps), leaving out what is undefined."""
        out: dict[str, float] = {}
        for name, leg in (("x", self.x), ("y", self.y)):
            if leg is not None:
                out[f"funding_{name}"] = leg.rate
                out[f"basis_{name}"] = leg.basis_bps
        if self.carry_bps_day is not None:
            out["carry_bps_day"] = self.carry_bps_day
        return out


FUNDING_METRIC_NAMES: tuple[str, ...] = (
    "funding_x",
    "funding_y",
    "carry_bps_day",
    "basis_x",
    "basis_y",
)


def _times() -> array[int]:
    return array("q")


def _floats() -> array[float]:
    return array("d")


@dataclass(frozen=True, slots=True)
class Series:
    """The recent history the charts draw and the screen's cursor reads, oldest first, one
    entry per bar in every field; `nan` where a metric is undefined. The values are the
    bar's own (`quanttui.analytics.engine.BarMetrics`), the ones alerts were evaluated on.

    Each field is an `array` (`q` for the times, `d` for the rest), not a tuple: an array
    holds its numbers unboxed, so the cyclic GC neither tracks it nor visits its items,
    and it pickles as one buffer. The screen receives 16 fields of 600 bars per pair each
    bar; as tuples, 20 pairs made 192,000 float objects a second for the UI process to
    unpickle, and every collection, of any generation, visited the 600 items of each
    tuple still young (full collections of 2,500 objects took 2-9 ms;
    `benchmarks/bench_watchlist.py`). Treat them as read-only.
    """

    ts_ms: array[int] = field(default_factory=_times)
    close_x: array[float] = field(default_factory=_floats)
    close_y: array[float] = field(default_factory=_floats)
    spread: array[float] = field(default_factory=_floats)
    spread_mean: array[float] = field(default_factory=_floats)
    zscore: array[float] = field(default_factory=_floats)
    alpha: array[float] = field(default_factory=_floats)
    beta: array[float] = field(default_factory=_floats)
    r2: array[float] = field(default_factory=_floats)
    beta_se: array[float] = field(default_factory=_floats)
    corr: array[float] = field(default_factory=_floats)
    return_beta: array[float] = field(default_factory=_floats)
    return_r2: array[float] = field(default_factory=_floats)
    return_beta_se: array[float] = field(default_factory=_floats)
    half_life_bars: array[float] = field(default_factory=_floats)
    kalman_z: array[float] = field(default_factory=_floats)

    def __len__(self) -> int:
        return len(self.ts_ms)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every metric at the last closed bar, plus the series for the charts.

    A metric is `None` while its window is not yet full. `flags` holds warnings such as
    `return_beta_unreliable` or `insufficient_data`.
    """

    symbol_x: str
    symbol_y: str
    timeframe: str
    window: int
    hedge: str
    bars: int
    time_ms: int | None = None
    close_x: float | None = None
    close_y: float | None = None
    alpha: float | None = None
    beta: float | None = None
    r2: float | None = None
    beta_se: float | None = None
    spread: float | None = None
    spread_mean: float | None = None
    zscore: float | None = None
    corr: float | None = None
    adf_stat: float | None = None
    adf_p: float | None = None
    adf_lag: int | None = None
    adf_crit: dict[str, float] | None = None
    coint_p: float | None = None
    half_life_bars: float | None = None
    half_life_s: float | None = None
    return_beta: float | None = None
    return_r2: float | None = None
    return_beta_se: float | None = None
    kalman_q: float | None = None
    kalman_z: float | None = None
    flags: tuple[str, ...] = ()
    series: Series = field(default_factory=Series)
    funding: FundingMetrics | None = None

    @property
    def pair(self) -> str:
        return f"{self.symbol_x}/{self.symbol_y}"

    def metrics(self) -> dict[str, float]:
        """The numeric metrics that alert rules may name; undefined ones are left out."""
        out: dict[str, float] = {}
        if self.funding is not None:
            out.update(self.funding.rule_metrics())
        for name in METRIC_NAMES:
            if name in FUNDING_METRIC_NAMES:
                continue
            value = getattr(self, _METRIC_ALIASES.get(name, name))
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                out[name] = float(value)
        return out

    def as_json(self) -> dict[str, object]:
        keys = (
            "symbol_x symbol_y timeframe window hedge bars time close_x close_y alpha beta r2 "
            "beta_se spread zscore corr adf_stat adf_p coint_p half_life_bars return_beta "
            "return_r2 kalman_q kalman_z flags"
        ).split()
        data = asdict(self)
        data["time"] = iso_utc(self.time_ms) if self.time_ms is not None else None
        data["flags"] = list(self.flags)
        out = {k: data[k] for k in keys}
        f = self.funding
        fm = f.rule_metrics() if f is not None else {}
        out.update({k: fm.get(k) for k in FUNDING_METRIC_NAMES})
        out["carry_side"] = f.side if f is not None else None
        out["funding"] = (
            None if f is None else {"x": f.x and f.x.as_json(), "y": f.y and f.y.as_json()}
        )
        return out


_METRIC_ALIASES = {"price_x": "close_x", "price_y": "close_y"}
METRIC_NAMES: tuple[str, ...] = (
    "price_x",
    "price_y",
    "close_x",
    "close_y",
    "alpha",
    "beta",
    "r2",
    "beta_se",
    "spread",
    "spread_mean",
    "zscore",
    "corr",
    "adf_stat",
    "adf_p",
    "coint_p",
    "half_life_bars",
    "half_life_s",
    "return_beta",
    "return_r2",
    "return_beta_se",
    "kalman_q",
    "kalman_z",
    "bars",
    *FUNDING_METRIC_NAMES,
)


@dataclass(frozen=True, slots=True)
class BasketSnapshot:
    """A basket's metrics at its last closed bar (`quanttui.analytics.basket`), plus the
    z-score and spread series for a chart (arrays, as `Series`, oldest first).

    Per-leg tuples follow `symbols`; the Johansen tuples have one entry per row r =
    0..m-1 (critical values as (90 %, 95 %, 99 %)); they are empty, and the numbers None,
    while undefined."""

    key: str
    symbols: tuple[str, ...]
    timeframe: str
    window: int
    det_order: int
    k_ar_diff: int
    log_prices: bool
    bars: int = 0
    time_ms: int | None = None
    closes: tuple[float, ...] = ()
    trace: tuple[float, ...] = ()
    trace_cv: tuple[tuple[float, float, float], ...] = ()
    max_eig: tuple[float, ...] = ()
    max_cv: tuple[tuple[float, float, float], ...] = ()
    eig: tuple[float, ...] = ()
    rank: int | None = None
    weights: tuple[float, ...] = ()
    notional: tuple[float, ...] = ()
    spread: float | None = None
    spread_mean: float | None = None
    zscore: float | None = None
    half_life_bars: float | None = None
    half_life_s: float | None = None
    series_ts: array[int] = field(default_factory=_times)
    series_zscore: array[float] = field(default_factory=_floats)
    series_spread: array[float] = field(default_factory=_floats)

    def as_json(self) -> dict[str, object]:
        """`quanttui snapshot A B C --json` (and headless mode's last line per basket):
        per-leg values as objects keyed by symbol, undefined numbers null."""

        def per_leg(vals: tuple[float, ...]) -> dict[str, float | None] | None:
            if not vals:
                return None
            return {
                s: (v if math.isfinite(v) else None)
                for s, v in zip(self.symbols, vals, strict=True)
            }

        def rows(vals: tuple) -> list | None:
            return [list(v) if isinstance(v, tuple) else v for v in vals] or None

        return {
            "basket": self.key,
            "symbols": list(self.symbols),
            "timeframe": self.timeframe,
            "window": self.window,
            "det_order": self.det_order,
            "k_ar_diff": self.k_ar_diff,
            "log_prices": self.log_prices,
            "bars": self.bars,
            "time": iso_utc(self.time_ms) if self.time_ms is not None else None,
            "closes": per_leg(self.closes),
            "rank": self.rank,
            "trace_stat": rows(self.trace),
            "trace_cv": rows(self.trace_cv),
            "max_eig_stat": rows(self.max_eig),
            "max_eig_cv": rows(self.max_cv),
            "eigenvalues": rows(self.eig),
            "weights": per_leg(self.weights),
            "notional": per_leg(self.notional),
            "spread": self.spread,
            "spread_mean": self.spread_mean,
            "zscore": self.zscore,
            "half_life_bars": self.half_life_bars,
            "half_life_s": self.half_life_s,
        }


BASKET_METRIC_NAMES: tuple[str, ...] = (
    "zscore",
    "spread",
    "spread_mean",
    "half_life_bars",
    "half_life_s",
    "rank",
    "trace_stat",
    "trace_cv95",
    "trace_margin",
    "max_eig_stat",
    "max_eig_cv95",
    "max_eig_margin",
    "eig1",
    "bars",
)
"""What a basket's alert rules may name (`quanttui.analytics.basket.basket_metrics`):
the r = 0 rows of the Johansen test (``trace_stat``, ``max_eig_stat``, their 95 %
critical values and the margins stat - cv95), the rank, the largest eigenvalue, and the
spread's z-score, mean and half-life."""
