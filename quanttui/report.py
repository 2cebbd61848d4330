"""Human-readable rows of a `Snapshot` and of a backtest, shared by the app and the CLI.

Values are formatted here once, so the screen, `quanttui snapshot` and `quanttui
backtest` always agree. Two shapes of the metrics: `snapshot_rows` (one metric per row,
full labels: the CLI) and `compact_rows` (short labels and values that fit the screen's
two-column table at 80 columns).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from quanttui.config import TIMEFRAMES
from quanttui.model import Snapshot, iso_utc

if TYPE_CHECKING:
    from quanttui.analytics.backtest import BacktestReport

ADF_ALPHA = 0.05
SHARPE_MIN_BAR_MS = 60_000
"""Sharpe is not reported for bars shorter than this: per-bar PnL of 1 s bars is mostly
bid/ask and tick noise, and annualising it by √(31.5M bars a year) gives absurd figures
(−616 on the demo recording)."""


def _num(v: float | None, fmt: str = ".6g") -> str:
    return "—" if v is None else format(v, fmt)


def _p(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def price_text(v: float | None) -> str:
    """A price with its trailing zeros: at least 2 decimals and about 6 significant
    digits (`89,779.50`, `3,140.00`, `1.23450`, `0.012345`, `0.00001234`)."""
    if v is None or not math.isfinite(v):
        return "—"
    a = abs(v)
    if a >= 1:
        digits = len(str(int(a)))
        return f"{v:,.{max(2, 6 - digits)}f}"
    if a == 0:
        return "0.00"
    return f"{v:#.4g}" if a < 1e-4 else f"{v:.6f}"


def duration_text(seconds: float) -> str:
    """A length of time in its two largest units: `45s`, `6m48s`, `1h05m`, `2d03h`."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"


def half_life_text(s: Snapshot, short: bool = False) -> str:
    """`5.8 bars (6s)`: bars, and the time they take at the bar size."""
    if s.half_life_bars is None or s.half_life_s is None:
        return "—"
    bars = f"{s.half_life_bars:.3g}"
    dur = duration_text(s.half_life_s)
    text = f"{bars} bars ({dur})"
    if short and len(text) > 13:
        text = f"{bars}b ({dur})"
    return text


def adf_p_text(s: Snapshot, short: bool = False) -> str:
    """The ADF p-value with its verdict at 5%: `stationary`/`stat` or `not stat.`/`nonstat`."""
    if s.adf_p is None:
        return "—"
    yes = s.adf_p < ADF_ALPHA
    if short:
        return f"{s.adf_p:.4f} " + ("stat" if yes else "nonstat")
    return f"{s.adf_p:.4f} " + ("stationary" if yes else "not stationary")


def zscore_text(v: float | None) -> str:
    """z to 3 decimals with its sign: the form alerts on z are shown in too."""
    return _num(v, "+.3f")


def metric_value_text(metric: str, value: float) -> str:
    """An alert's value in the form the metrics table shows that metric."""
    if metric in ("zscore", "kalman_z"):
        return zscore_text(value)
    if metric in ("price_x", "price_y", "close_x", "close_y"):
        return price_text(value)
    return f"{value:+.4g}"


def snapshot_rows(s: Snapshot) -> list[tuple[str, str, str]]:
    """`(key, label, value)` rows in display order, one metric a row (`quanttui
    snapshot`)."""
    rb = "—"
    if s.return_beta is not None:
        rb = f"{s.return_beta:.3f} R² {_num(s.return_r2, '.2f')}"
        if "return_beta_unreliable" in s.flags:
            rb += " (unreliable)"
    z = zscore_text(s.zscore)
    if s.kalman_z is not None:
        z += f" Kalman {s.kalman_z:+.2f}"
    time_text = "—" if s.time_ms is None else iso_utc(s.time_ms)[:19].replace("T", " ")
    return [
        ("time", "Last bar (UTC)", time_text),
        ("price_x", s.symbol_x, price_text(s.close_x)),
        ("price_y", s.symbol_y, price_text(s.close_y)),
        ("beta", "Hedge b", _num(s.beta)),
        ("alpha", "Intercept a", _num(s.alpha)),
        ("r2", "R²", _num(s.r2, ".4f")),
        ("beta_se", "se(b)", _num(s.beta_se, ".3g")),
        ("spread", "Spread", _num(s.spread, ".5g")),
        ("zscore", "z-score", z),
        ("corr", "Corr (returns)", _num(s.corr, ".4f")),
        ("adf_stat", "ADF stat", _num(s.adf_stat, ".3f")),
        ("adf_p", "ADF p", adf_p_text(s)),
        ("coint_p", "Coint p", _p(s.coint_p)),
        ("half_life", "Half-life", half_life_text(s)),
        ("return_beta", "Return b", rb),
        ("bars", "Bars (window)", f"{s.bars:,} ({min(s.bars, s.window)}/{s.window})"),
    ]


COMPACT_KEYS = (
    "price_x price_y beta alpha r2 beta_se spread spread_mean zscore corr "
    "adf_stat adf_p coint_p half_life return_beta return_r2 bars kalman_z"
).split()
"""Every metric of `compact_rows`, in display order."""


def compact_rows(s: Snapshot) -> dict[str, tuple[str, str]]:
    """`{key: (label, value)}` of every metric in `COMPACT_KEYS`: labels of at most 8
    characters, values of at most 14 (prices and the regression at most 11), for the
    screen's two-column table."""
    rb = _num(s.return_beta, ".3f")
    if s.return_beta is not None and "return_beta_unreliable" in s.flags:
        rb += " (weak)"
    bars = f"{s.bars:,}"
    if s.bars < s.window:
        bars += f" ({s.bars}/{s.window})"
    return {
        "price_x": (s.symbol_x[:7], price_text(s.close_x)),
        "price_y": (s.symbol_y[:7], price_text(s.close_y)),
        "beta": ("b", _num(s.beta)),
        "alpha": ("a", _num(s.alpha)),
        "r2": ("R²", _num(s.r2, ".4f")),
        "beta_se": ("se(b)", _num(s.beta_se, ".3g")),
        "spread": ("spread", _num(s.spread, ".5g")),
        "spread_mean": ("mean", _num(s.spread_mean, ".5g")),
        "zscore": ("z", zscore_text(s.zscore)),
        "corr": ("corr", _num(s.corr, ".4f")),
        "adf_stat": ("ADF stat", _num(s.adf_stat, ".3f")),
        "adf_p": ("ADF p", adf_p_text(s, short=True)),
        "coint_p": ("coint p", _p(s.coint_p)),
        "half_life": ("halflife", half_life_text(s, short=True)),
        "return_beta": ("ret b", rb),
        "return_r2": ("ret R²", _num(s.return_r2, ".2f")),
        "bars": ("bars", bars),
        "kalman_z": ("Kalman z", zscore_text(s.kalman_z)),
    }


def countdown_text(seconds: float) -> str:
    """``h:mm:ss`` of a non-negative number of seconds (rounded down)."""
    t = max(0, int(seconds))
    return f"{t // 3600}:{t % 3600 // 60:02d}:{t % 60:02d}"


def funding_rows(s: Snapshot) -> list[tuple[str, str, str]]:
    """`(key, label, value)` rows of the perpetual-futures block, in display order:
    per leg mark price, basis (bps of index), funding rate (% per settlement, with the
    interval) and the countdown to the next funding; then the pair's carry for the
    side the z-score points to. "—" where unknown; values fit in 21 columns."""
    f = s.funding
    rows: list[tuple[str, str, str]] = []
    for name, leg in (("x", f.x if f else None), ("y", f.y if f else None)):
        tag = name.upper()
        if leg is None:
            rows += [
                (f"mark_{name}", f"Mark {tag}", "—"),
                (f"basis_{name}", f"Basis {tag}", "—"),
                (f"funding_{name}", f"Funding {tag}", "—"),
                (f"next_funding_{name}", f"Next fund. {tag}", "—"),
            ]
            continue
        rows += [
            (f"mark_{name}", f"Mark {tag}", price_text(leg.mark)),
            (f"basis_{name}", f"Basis {tag}", f"{leg.basis_bps:+.2f} bp"),
            (f"funding_{name}", f"Funding {tag}", f"{leg.rate * 100:+.4f}% /{leg.interval_h}h"),
            (f"next_funding_{name}", f"Next fund. {tag}", countdown_text(leg.countdown_s)),
        ]
    carry = "—"
    if f is not None and f.carry_bps_day is not None:
        carry = f"{f.carry_bps_day:+.2f} bp/d {f.side}"
    rows.append(("carry_bps_day", "Carry", carry))
    return rows


def compact_funding_rows(s: Snapshot) -> list[tuple[tuple[str, str, str], tuple[str, str, str]]]:
    """The funding block as pairs of `(key, label, value)` cells, X left and Y right, for
    the screen's two-column table: mark, basis, rate per settlement with the interval,
    countdown to the next funding, then the carry and the side it is for."""
    f = s.funding
    cells: dict[str, list[tuple[str, str, str]]] = {"x": [], "y": []}
    for name, leg in (("x", f.x if f else None), ("y", f.y if f else None)):
        tag = name.upper()
        if leg is None:
            values = ["—"] * 4
        else:
            values = [
                price_text(leg.mark),
                f"{leg.basis_bps:+.2f}bp",
                f"{leg.rate * 100:+.4f}%/{leg.interval_h}h",
                countdown_text(leg.countdown_s),
            ]
        for key, label, value in zip(
            ("mark", "basis", "funding", "next_funding"),
            ("mark", "basis", "fund", "next"),
            values,
            strict=True,
        ):
            cells[name].append((f"{key}_{name}", f"{label} {tag}", value))
    carry, side = "—", "—"
    if f is not None and f.carry_bps_day is not None:
        carry, side = f"{f.carry_bps_day:+.2f}bp/d", f"{f.side} spread"
    rows = list(zip(cells["x"], cells["y"], strict=True))
    rows.append((("carry_bps_day", "carry", carry), ("carry_side", "side", side)))
    return rows


# ----------------------------------------------------------------- backtest
def pnl_decimals(values: list[float]) -> int:
    """Decimals that show the smallest non-zero |PnL| with 3 significant digits (at
    least 2, at most 8): a unit of ETH against BTC over 1 s bars makes cents, and `0.00`
    would hide every trade."""
    small = min((abs(v) for v in values if v and math.isfinite(v)), default=1.0)
    return max(2, min(8, 2 - math.floor(math.log10(small))))


def sharpe_note(timeframe: str) -> str | None:
    """Why Sharpe is not shown for this bar size, or None when it is."""
    if TIMEFRAMES.get(timeframe, SHARPE_MIN_BAR_MS) >= SHARPE_MIN_BAR_MS:
        return None
    return f"sharpe not shown for {timeframe} bars: annualised per-bar PnL under 1m is noise"


def _legs(report: BacktestReport) -> str:
    p = report.params
    return f"{p.get('symbol_x', '?')} -> {p.get('symbol_y', '?')}"


def backtest_summary(report: BacktestReport) -> str:
    """The totals, a few lines that fit 80 columns, shared by `quanttui backtest` and
    the app's backtest screen: PnL with the decimals of the trades' (`pnl_decimals`),
    Sharpe only for bars of 1m and longer (`sharpe_note`)."""
    r = report.result
    d = pnl_decimals([t.pnl for t in r.trades] + [r.total_pnl, r.fees])

    def fmt(v: float | None, f: str) -> str:
        return "—" if v is None else format(v, f)

    tf = str(report.params.get("timeframe", "1m"))
    note = sharpe_note(tf)
    sharpe = "" if note else f"  sharpe {fmt(r.sharpe, '.2f')}"
    lines = [
        f"total pnl {r.total_pnl:,.{d}f}  fees {r.fees:,.{d}f}  max dd {r.max_drawdown:,.{d}f}  "
        f"return/notional {fmt(r.return_on_notional, '.4%')}",
        f"trades {len(r.trades)}  win rate {fmt(r.win_rate, '.0%')}  "
        f"exposure {r.exposure:.0%}{sharpe}",
    ]
    f = r.funding
    if f is not None:
        lines.append(f"funding {f.total:+,.{d}f}  pnl after funding {r.total_pnl + f.total:,.{d}f}")
        if f.missing:
            lines.append(
                f"funding coverage {f.coverage:.0%}: {f.missing} of {f.expected} settlements "
                f"missing, {f.missing_in_position} while in a position (not counted)"
            )
    if note:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def backtest_title(report: BacktestReport) -> str:
    """`BTCUSDT -> ETHUSDT  1s  W=60  ols  408 bars`: the legs in the order the monitor
    shows them."""
    p = report.params
    return (
        f"{_legs(report)}  {p.get('timeframe', '')}  W={p.get('window', '')}  "
        f"{p.get('hedge', '')}  {report.bars:,} bars"
    )


BACKTEST_COLUMNS = ("entry (UTC)", "exit (UTC)", "side", "b", "bars", "pnl")


def _time_format(times: list[str]) -> int:
    """How much of `YYYY-MM-DDTHH:MM:SS` to show: from the time of day when every time
    is on one day, else from the month."""
    days = {t[:10] for t in times if t}
    return 11 if len(days) <= 1 else 5


def backtest_rows(report: BacktestReport) -> list[tuple[str, str, str, str, str, str]]:
    """One row of display strings per trade, in `BACKTEST_COLUMNS` order: times without
    the date when all trades are on one day (`backtest_day` gives it), PnL with
    `pnl_decimals`."""
    trades = report.trades_json()
    times = [t["entry_time"] for t in trades] + [t["exit_time"] or "" for t in trades]
    cut = _time_format(times)
    d = pnl_decimals([t["pnl"] for t in trades])

    def when(t: str | None) -> str:
        return "open" if not t else t[cut:19].replace("T", " ")

    return [
        (
            when(t["entry_time"]),
            when(t["exit_time"]),
            t["side"],
            f"{t['beta']:.4g}",
            str(t["bars_held"]),
            f"{t['pnl']:,.{d}f}",
        )
        for t in trades
    ]


def backtest_day(report: BacktestReport) -> str | None:
    """The one UTC day of every trade (`2025-12-15`), or None when they span several."""
    trades = report.trades_json()
    days = {t["entry_time"][:10] for t in trades} | {
        t["exit_time"][:10] for t in trades if t["exit_time"]
    }
    return next(iter(days)) if len(days) == 1 else None


def basket_rows(doc: dict) -> list[tuple[str, str, str, str, str]]:
    """The basket table (`quanttui snapshot A B C`, the basket screen) from
    `quanttui.analytics.basket.metrics_json`: (metric, value, 90 %, 95 %, 99 %), the
    critical values on the Johansen rows only; "—" where undefined."""
    blank = ("", "", "")
    rows: list[tuple[str, str, str, str, str]] = [
        ("bars", f"{doc.get('bars', 0):,}", *blank),
        ("time", str(doc.get("time") or "—"), *blank),
    ]
    trace, tcv = doc.get("trace_stat"), doc.get("trace_cv")
    eig, ecv = doc.get("max_eig_stat"), doc.get("max_eig_cv")
    legs = doc.get("symbols") or []
    if trace and tcv and eig and ecv:
        for r, (v, cv) in enumerate(zip(trace, tcv, strict=True)):
            rows.append((f"trace r<={r}", _num(v, ".3f"), *(f"{c:.3f}" for c in cv)))
        for r, (v, cv) in enumerate(zip(eig, ecv, strict=True)):
            rows.append((f"max-eig r={r}", _num(v, ".3f"), *(f"{c:.3f}" for c in cv)))
    rank = doc.get("rank")
    rows.append(("rank (trace, 95%)", "—" if rank is None else str(rank), *blank))
    weights, notional, closes = doc.get("weights"), doc.get("notional"), doc.get("closes")
    for s in legs:
        rows.append((f"weight {s}", _num(weights.get(s)) if weights else "—", *blank))
    for s in legs:
        rows.append((f"notional {s}", _num(notional.get(s), ",.2f") if notional else "—", *blank))
    for s in legs:
        rows.append((f"close {s}", price_text(closes.get(s)) if closes else "—", *blank))
    rows += [
        ("spread", _num(doc.get("spread")), *blank),
        ("spread mean", _num(doc.get("spread_mean")), *blank),
        ("z-score", zscore_text(doc.get("zscore")), *blank),
    ]
    hl_b, hl_s = doc.get("half_life_bars"), doc.get("half_life_s")
    hl = "—" if hl_b is None or hl_s is None else f"{hl_b:.1f} bars ({duration_text(hl_s)})"
    rows.append(("half-life", hl, *blank))
    return rows
