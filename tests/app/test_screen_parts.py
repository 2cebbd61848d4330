"""The screen's pure parts: axis ticks and limits, the status line's priorities, the
compact metrics, the key bar's fitting, and `snapshot_at` against the analytics."""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import UTC, datetime

import numpy as np
import pytest
from textual_plotext.plot import Plot

from quanttui.analytics.engine import PairAnalytics
from quanttui.analytics.snapshot import build_snapshot, snapshot_at
from quanttui.app.widgets.charts import aligned_limits, nice_ticks, time_ticks
from quanttui.app.widgets.keys import KeyEntry, fit_keys
from quanttui.app.widgets.status import status_line
from quanttui.engine.events import Status
from quanttui.report import (
    compact_rows,
    duration_text,
    pnl_decimals,
    price_text,
    sharpe_note,
    snapshot_rows,
)

T0 = 1_765_788_195_000  # 2025-12-15 08:43:15 UTC


def status(**kw) -> Status:
    base = dict(
        state="live",
        detail="",
        rate=0.0,
        ticks=0,
        stored=0,
        inserted=0,
        leg_age={},
        symbols=("BTCUSDT", "ETHUSDT"),
        gaps_open=0,
        gaps_filled=0,
        malformed=0,
        db_bytes=1_500_000,
    )
    return Status(**(base | kw))


@pytest.mark.parametrize(
    ("rows", "lo", "hi"),
    [(5, -2.18, 2.0), (7, -2.18, 2.89), (6, -0.5, 0.7), (12, -6.3, 4.1), (9, -3.9, 3.9)],
)
def test_aligned_limits_put_entry_and_zero_on_evenly_spaced_rows(rows, lo, hi) -> None:
    """Rendered by plotext itself: the rows labelled -2, 0, +2 are k rows apart and each
    carries its guide line."""
    e = 2.0
    lim = aligned_limits(lo, hi, e, rows)
    assert lim is not None
    ymin, ymax, k = lim
    assert ymin <= min(lo, -e) and ymax >= max(hi, e)
    p = Plot()
    p.clear_figure()
    p.frame(False)
    p.plotsize(40, rows + 1)
    p._set_size(40, rows + 1)
    for v in (-e, 0.0, e):
        p.hline(v, "orange")
    xs = list(range(50))
    p.plot(xs, [lo + (hi - lo) * i / 49 for i in xs], marker="braille")
    p.ylim(ymin, ymax)
    p.yticks([-e, 0.0, e], ["-2", "0", "+2"])
    p.xticks([0], ["08:45"])
    lines = re.sub(r"\x1b\[[0-9;]*m", "", p.build()).split("\n")
    plot_rows = lines[:rows]  # then the time labels
    at = {
        ln[:2].strip(): i for i, ln in enumerate(plot_rows) if ln[:2].strip() in ("+2", "0", "-2")
    }
    assert at["0"] - at["+2"] == at["-2"] - at["0"] == k
    for i in at.values():
        assert lines[i][2:].count("─") >= 8


def test_aligned_limits_give_up_when_z_is_far_beyond_entry() -> None:
    assert aligned_limits(-30.0, 40.0, 2.0, 5) is None


def test_time_ticks_are_round_utc_times_in_the_bar_format() -> None:
    ts = [T0 + 1000 * i for i in range(408)]
    pos, labels = time_ticks(ts, 0, 408, "1s", 31)
    assert labels == ["08:44", "08:46", "08:48", "08:50"]
    for i, label in zip(pos, labels, strict=True):
        when = datetime.fromtimestamp(ts[i] / 1000, tz=UTC)
        assert when.strftime("%H:%M") == label and when.second == 0
    pos, labels = time_ticks(ts, 300, 360, "1s", 70)
    assert all(re.fullmatch(r"08:\d\d:\d\d", x) for x in labels) and len(labels) >= 3
    minutes = [T0 - T0 % 60_000 + 60_000 * i for i in range(600)]
    pos, labels = time_ticks(minutes, 0, 600, "1m", 70)
    assert all(re.fullmatch(r"\d\d:\d\d", x) for x in labels) and len(labels) >= 3
    five = [T0 - T0 % 300_000 + 300_000 * i for i in range(600)]  # 50 hours
    _pos, labels = time_ticks(five, 0, 600, "5m", 70)
    assert labels and all(re.fullmatch(r"12-1\d \d\d:\d\d", x) for x in labels)


def test_nice_ticks() -> None:
    ticks, labels = nice_ticks(99.94, 100.104, 4)
    assert labels == ["99.95", "100.00", "100.05", "100.10"]
    assert ticks == pytest.approx([99.95, 100.0, 100.05, 100.1])
    assert nice_ticks(1.0, 1.0, 3) == ([], [])


def test_status_line_keeps_state_reason_and_fill_first_when_narrow() -> None:
    st = status(
        state="offline",
        detail="ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 1)",
        backfill="running",
        backfill_done=130,
        backfill_total=260,
        leg_age={"BTCUSDT": 0.4, "ETHUSDT": 45.0},
        rate=12.0,
    )
    wide = status_line(st, ("BTCUSDT", "ETHUSDT"), (45, 60), 200).plain
    assert wide.index("OFFLINE") < wide.index("filling window 45/60") < wide.index("backfilling")
    assert "ETHUSDT 45s STALE" in wide and "BTCUSDT 0.4s" in wide and "12 ticks/s" in wide
    assert "DB 1.4 MB" in wide
    narrow = status_line(st, ("BTCUSDT", "ETHUSDT"), (45, 60), 80).plain
    assert len(narrow) <= 80
    assert narrow.startswith(" OFFLINE  ConnectionRefusedError")
    assert "filling window 45/60" in narrow
    assert "DB 1.4 MB" not in narrow and "BTCUSDT 0.4s" not in narrow  # the least important
    short = dataclasses.replace(st, state="reconnecting", detail="connection refused")
    middle = status_line(short, ("BTCUSDT", "ETHUSDT"), (45, 60), 90).plain
    assert middle.startswith(" RECONNECTING  connection refused  filling window 45/60  ")
    assert "backfilling 130/260 bars" in middle and "ETHUSDT 45s STALE" not in middle
    early = status_line(None, ("BTCUSDT", "ETHUSDT"), (12, 60), 80).plain
    assert early == " CONNECTING   filling window 12/60"  # a load before the first status
    assert status_line(None, ("BTCUSDT", "ETHUSDT"), None, 80).plain == " CONNECTING "
    silent = status_line(status(), ("BTCUSDT", "ETHUSDT"), (60, 60), 80).plain
    assert "no trades yet" in silent and "BTCUSDT" not in silent  # one part for both legs


def test_status_line_says_when_the_first_z_comes_after_the_window_fills() -> None:
    st = status(leg_age={"BTCUSDT": 0.4, "ETHUSDT": 0.5}, ticks=10, rate=95.0)
    legs = ("BTCUSDT", "ETHUSDT")
    assert "first z in 59 bars" in status_line(st, legs, (60, 60), 120, 59).plain
    assert "first z in 1 bar " in status_line(st, legs, (60, 60), 120, 1).plain + " "
    assert "first z" not in status_line(st, legs, (60, 60), 120, None).plain
    filling = status_line(st, legs, (30, 60), 120, None).plain
    assert "filling window 30/60" in filling and "first z" not in filling


def test_watchlist_status_says_no_trades_only_when_there_are_none() -> None:
    """The watchlist's line names no legs: `no trades yet` beside a live rate was wrong."""
    busy = status(ticks=5000, rate=95.0, leg_age={"BTCUSDT": 0.1})
    assert "no trades yet" not in status_line(busy, (), (1, 1), 120).plain
    assert "no trades yet" in status_line(status(), (), (1, 1), 120).plain


def test_status_line_shows_the_notifications_delivery_state() -> None:
    legs = ("BTCUSDT", "ETHUSDT")
    off = status(ticks=10, leg_age={"BTCUSDT": 0.1, "ETHUSDT": 0.1})
    assert "notify" not in status_line(off, legs, (60, 60), 200).plain
    sent = dataclasses.replace(off, notify=True)
    assert "notify: all sent" in status_line(sent, legs, (60, 60), 200).plain
    pending = dataclasses.replace(sent, notify_pending=3)
    assert "notify: 3 pending" in status_line(pending, legs, (60, 60), 200).plain
    failed = dataclasses.replace(pending, notify_failed=1)
    line = status_line(failed, legs, (60, 60), 80).plain
    assert "notify: 1 failed, 3 pending" in line and len(line) <= 80


def test_compact_rows_fit_the_two_column_table_and_carry_every_metric() -> None:
    rng = np.random.default_rng(5)
    eng = PairAnalytics(60)
    x = 90_000 + np.cumsum(rng.normal(0, 5, 300))
    for i, xv in enumerate(x):
        eng.update(T0 + 1000 * i, float(xv), float(3100 + 0.03 * (xv - 90_000) + rng.normal(0, 1)))
    snap = build_snapshot(eng, "BTCUSDT", "ETHUSDT", "1s")
    cells = compact_rows(snap)
    for key, (label, value) in cells.items():
        assert len(label) <= 8 and len(value) <= 14, (key, label, value)
    for key in ("price_x", "price_y", "beta", "alpha", "r2", "beta_se", "spread", "zscore"):
        assert len(cells[key][1]) <= 11 and cells[key][1] != "—"
    full = {k for k, _l, _v in snapshot_rows(snap)} - {"time"}
    assert full <= set(cells)


def test_price_and_duration_texts() -> None:
    assert price_text(3140.0) == "3,140.00" and price_text(89779.5) == "89,779.50"
    assert price_text(1.2345) == "1.23450" and price_text(0.012345) == "0.012345"
    assert price_text(0.00001234) == "1.234e-05"
    assert [duration_text(s) for s in (5.8, 408, 2998, 180_000)] == [
        "6s",
        "6m48s",
        "49m58s",
        "2d02h",
    ]


def test_pnl_decimals_show_small_trades_and_sharpe_is_left_out_under_1m() -> None:
    assert pnl_decimals([0.0043, -1.2]) == 5  # 0.00430: three significant digits
    assert pnl_decimals([12.3, -250.0]) == 2
    assert sharpe_note("1s") is not None and sharpe_note("1m") is None


def test_snapshot_at_a_bar_is_the_snapshot_built_at_that_bar() -> None:
    """The cursor's values: bar i of the last snapshot's series equals the snapshot the
    analytics gave when bar i was the newest (stationarity aside)."""
    rng = np.random.default_rng(7)
    eng = PairAnalytics(30, history=600)
    x = 100 + np.cumsum(rng.normal(0, 0.1, 200))
    y = 50 + 0.5 * x + rng.normal(0, 0.05, 200)
    then = None
    for i in range(200):
        eng.update(T0 + 1000 * i, float(x[i]), float(y[i]))
        if i == 150:
            then = build_snapshot(eng, "X", "Y", "1s", run_tests=False)
    now = build_snapshot(eng, "X", "Y", "1s", run_tests=False)
    at = snapshot_at(now, 150)
    assert at.time_ms == then.time_ms and at.bars == then.bars
    for name in (
        "close_x close_y alpha beta r2 beta_se spread spread_mean zscore corr "
        "half_life_bars half_life_s return_beta return_r2 return_beta_se kalman_z"
    ).split():
        a, b = getattr(at, name), getattr(then, name)
        assert a == b or (a is None and b is None) or (math.isnan(a) and math.isnan(b)), name
    assert at.flags == then.flags
    assert snapshot_at(now, -1).time_ms == now.time_ms
    with pytest.raises(IndexError):
        snapshot_at(now, 200)


def test_key_bar_drops_descriptions_from_the_end_never_q_or_help() -> None:
    entries = [
        KeyEntry("q", "Quit", "", True, True),
        KeyEntry("?", "Keys", "", True, True),
        *(KeyEntry(k, "Something", "", True, False) for k in "etvhspabc"),
    ]
    text = fit_keys(entries, 60).plain
    assert text.startswith(" q Quit  ? Keys  e Something  t  v  h") and len(text) <= 60
    assert text.rstrip().endswith("c")
    assert fit_keys(entries, 30).plain.startswith(" q Quit  ? Keys  e  t")
    assert fit_keys(entries, 200).plain.count("Something") == 9
