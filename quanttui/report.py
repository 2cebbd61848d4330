"""Human-readable rows of a `Snapshot`, shared by the app's metrics table and the CLI.

Values are formatted here once, so the screen and `quanttui snapshot` always agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quanttui.model import Snapshot, iso_utc

if TYPE_CHECKING:
    from quanttui.analytics.backtest import BacktestReport

ADF_ALPHA = 0.05


def _num(v: float | None, fmt: str = ".6g") -> str:
    return "—" if v is None else format(v, fmt)


def _p(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def snapshot_rows(s: Snapshot) -> list[tuple[str, str, str]]:
    """`(key, label, value)` rows in display order; values fit in 21 columns."""
    adf_p = _p(s.adf_p)
    if s.adf_p is not None:
        adf_p += " stationary" if s.adf_p < ADF_ALPHA else " not stat."
    hl = "—"
    if s.half_life_bars is not None and s.half_life_s is not None:
        hl = f"{s.half_life_bars:.1f} bars ({s.half_life_s:,.0f}s)"
    rb = "—"
    if s.return_beta is not None:
        rb = f"{s.return_beta:.3f} R² {_num(s.return_r2, '.2f')}"
        if "return_beta_unreliable" in s.flags:
            rb += " (?)"
    z = _num(s.zscore, "+.3f")
    if s.kalman_z is not None:
        z += f" Kalman {s.kalman_z:+.2f}"
    time_text = "—" if s.time_ms is None else iso_utc(s.time_ms)[:19].replace("T", " ")
    return [
        ("time", "Last bar (UTC)", time_text),
        ("price_x", s.symbol_x, _num(s.close_x, ",.8g")),
        ("price_y", s.symbol_y, _num(s.close_y, ",.8g")),
        ("beta", "Hedge b", _num(s.beta)),
        ("alpha", "Intercept a", _num(s.alpha)),
        ("r2", "R²", _num(s.r2, ".4f")),
        ("beta_se", "se(b)", _num(s.beta_se, ".3g")),
        ("spread", "Spread", _num(s.spread, ".5g")),
        ("zscore", "z-score", z),
        ("corr", "Corr (returns)", _num(s.corr, ".4f")),
        ("adf_stat", "ADF stat", _num(s.adf_stat, ".3f")),
        ("adf_p", "ADF p", adf_p),
        ("coint_p", "Coint p", _p(s.coint_p)),
        ("half_life", "Half-life", hl),
        ("return_beta", "Return b", rb),
        ("bars", "Bars (window)", f"{s.bars:,} ({min(s.bars, s.window)}/{s.window})"),
    ]


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
            (f"mark_{name}", f"Mark {tag}", format(leg.mark, ",.8g")),
            (f"basis_{name}", f"Basis {tag}", f"{leg.basis_bps:+.2f} bp"),
            (f"funding_{name}", f"Funding {tag}", f"{leg.rate * 100:+.4f}% /{leg.interval_h}h"),
            (f"next_funding_{name}", f"Next fund. {tag}", countdown_text(leg.countdown_s)),
        ]
    carry = "—"
    if f is not None and f.carry_bps_day is not None:
        carry = f"{f.carry_bps_day:+.2f} bp/d {f.side}"
    rows.append(("carry_bps_day", "Carry", carry))
    return rows


def backtest_summary(report: BacktestReport) -> str:
    """One line of totals, shared by `quanttui backtest` and the app's backtest screen."""
    r = report.result

    def fmt(v: float | None, f: str) -> str:
        return "—" if v is None else format(v, f)

    line = (
        f"total pnl {r.total_pnl:,.2f}  fees {r.fees:,.2f}  "
        f"return/notional {fmt(r.return_on_notional, '.4%')}  sharpe {fmt(r.sharpe, '.2f')}  "
        f"max dd {r.max_drawdown:,.2f}  win rate {fmt(r.win_rate, '.0%')}  "
        f"exposure {r.exposure:.0%}  trades {len(r.trades)}"
    )
    f = r.funding
    if f is None:
        return line
    line += f"  funding {f.total:+,.2f}  pnl after funding {r.total_pnl + f.total:,.2f}"
    if f.missing:
        line += (
            f"  funding coverage {f.coverage:.0%}: {f.missing} of {f.expected} settlements "
            f"missing, {f.missing_in_position} while in a position (not counted)"
        )
    return line


BACKTEST_COLUMNS = ("entry (UTC)", "exit (UTC)", "side", "b", "bars", "pnl")


def backtest_rows(report: BacktestReport) -> list[tuple[str, str, str, str, str, str]]:
    """One row of display strings per trade, in `BACKTEST_COLUMNS` order."""
    return [
        (
            t["entry_time"][:19],
            (t["exit_time"] or "open")[:19],
            t["side"],
            f"{t['beta']:.4g}",
            str(t["bars_held"]),
            f"{t['pnl']:,.2f}",
        )
        for t in report.trades_json()
    ]
