"""The monitor screen's promises (issue 17): the cursor reads a bar's own values, zoom
spans are in the titles, ticks/s falls to 0 when the feed stops, the key bar shows
what acts and `q`/`?` first, notifications stay off the alert log, the first frames
agree with themselves. Real parts throughout: a replay of the real recording through the
engine, the loopback fake exchange, a real SQLite file and the real export."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from textual.widgets._toast import Toast

from quanttui.app.app import QuantApp
from quanttui.app.screens.backtest import BacktestScreen
from quanttui.app.widgets.keys import KeyBar
from quanttui.engine.events import AlertEvent, AlertWithdrawn
from quanttui.feed.recordings import read_ndjson
from quanttui.feed.replay import ReplaySpec, prepare_source
from quanttui.model import FundingMetrics, LegFunding, iso_utc
from quanttui.report import zscore_text
from tests.app.conftest import RECORDING, app_config
from tests.app.test_app import until
from tests.fakes.exchange import FakeExchange, trades_from_ticks

OFFLINE = ("ws://127.0.0.1:1/market", "http://127.0.0.1:1")


def titles(app: QuantApp) -> list[str]:
    return [c.title_text for c in app.monitor.query("Chart")]


def key_bar(app: QuantApp) -> str:
    return app.screen.query_one(KeyBar).text


def status(app: QuantApp) -> str:
    return str(app.monitor.query_one("#status").render())


async def drawn(app: QuantApp, pilot) -> None:
    """Every chart shows the current frame."""
    mon = app.monitor
    await until(lambda: mon.frame() is not None)
    for _ in range(4):
        mon._draw_tick()
    await pilot.pause(0.1)
    await until(lambda: all(c.drawn(mon.frame()) for c in mon.query("Chart")))


async def move_cursor_to(app: QuantApp, pilot, target: int) -> None:
    """Drive the cursor with the keys a user has (←/→, PgUp/PgDn) onto bar `target`."""
    mon = app.monitor
    await pilot.press("left")
    for _ in range(2000):
        i = mon.cursor_index()
        assert i is not None
        if i == target:
            return
        page = max(1, mon.frame().bars // 4)
        if abs(target - i) >= page:
            await pilot.press("pageup" if target < i else "pagedown")
        else:
            await pilot.press("left" if target < i else "right")
    raise AssertionError(f"cursor never reached bar {target}")


async def test_cursor_on_an_alert_bar_shows_the_alert_value_and_the_export_row(
    real_data: Path, tmp_path: Path
) -> None:
    src = prepare_source([real_data / RECORDING], tmp_path / "source.db")
    out = tmp_path / "exports"
    cfg = app_config(tmp_path / "session.db", *OFFLINE, out)
    app = QuantApp(cfg, "BTCUSDT", "ETHUSDT", replay=ReplaySpec(src, 40.0))
    async with asyncio.timeout(90), app.run_test(size=(120, 40)) as pilot:
        mon = app.monitor
        alerts = mon.query_one("#alerts")
        # While alerts arrive, their notifications never cover the alert log.
        overlaps: list[str] = []

        def check_toasts() -> None:
            for toast in app.screen.query(Toast):
                if toast.region.overlaps(alerts.region):
                    overlaps.append(str(toast.region))

        timer = app.set_interval(0.05, check_toasts)
        await until(lambda: app.feed_state == "finished", 60)
        timer.stop()
        assert not overlaps, overlaps
        withdrawn = {
            (e.alert.ts_ms, e.alert.rule) for e in app.alerts if isinstance(e, AlertWithdrawn)
        }
        fired = [
            e.alert
            for e in app.alerts
            if isinstance(e, AlertEvent)
            and e.alert.metric == "zscore"
            and (e.alert.ts_ms, e.alert.rule) not in withdrawn
        ]
        assert fired, "the recording's z crosses ±2: alerts expected"
        await until(lambda: mon.snapshot is not None and mon.snapshot.time_ms >= fired[-1].ts_ms)
        series = mon.snapshot.series
        inside = [a for a in fired if a.ts_ms in series.ts_ms]
        alert = inside[len(inside) // 2]
        target = series.ts_ms.index(alert.ts_ms)
        await move_cursor_to(app, pilot, target)
        await pilot.pause(0.1)
        # the table shows that bar, marked, with the alert's own z
        assert "AT CURSOR" in mon.head_text and iso_utc(alert.ts_ms)[11:19] in mon.head_text
        assert mon.metric_text("zscore") == zscore_text(alert.value)
        assert mon.cursor_snapshot().zscore == alert.value
        # the alert is marked on the z chart, on the cursor's bar
        frame = mon.frame()
        assert frame.cursor == target and alert.ts_ms in frame.alerts
        await drawn(app, pilot)
        lower = mon.query_one("#chart-z")
        assert "cursor" in lower.title_text and "alert" in lower.title_text
        # ... and the analytics export has the same z on that bar's row
        await pilot.press("e")
        await until(lambda: len(list(out.glob("*_analytics.csv"))) == 1, 20)
        (path,) = out.glob("*_analytics.csv")
        rows = pd.read_csv(path)
        row = rows[rows["time"] == iso_utc(alert.ts_ms)]
        assert len(row) == 1
        exported = float(row["zscore"].iloc[0])
        assert exported == pytest.approx(alert.value, rel=1e-9)
        assert zscore_text(exported) == mon.metric_text("zscore")
        # Esc goes back to live; data kept flowing meanwhile (the snapshot is the newest)
        await pilot.press("escape")
        assert mon.cursor_ms is None and "Last bar" in mon.head_text
        await pilot.press("q")


async def test_zoom_steps_the_span_in_every_title(fixed_db: Path, tmp_path: Path) -> None:
    app = QuantApp(app_config(fixed_db, *OFFLINE, tmp_path), "BTCUSDT", "ETHUSDT")
    async with asyncio.timeout(60), app.run_test(size=(80, 24)) as pilot:
        mon = app.monitor
        await until(lambda: mon.snapshot is not None and len(mon.snapshot.series) == 408)
        await drawn(app, pilot)
        # 408 one-second bars; W = 60: spans 60, 120, 240, then all 408
        seen = []
        for key in ["plus", "plus", "plus", "plus", "minus", "minus", "minus", "minus"]:
            await pilot.press(key)
            await drawn(app, pilot)
            spans = {t.rsplit(" · ", 1)[0].split()[-1] for t in titles(app)}
            assert len(spans) == 1, titles(app)
            seen.append((spans.pop(), mon.frame().bars))
        assert seen == [
            ("4m00s", 240),
            ("2m00s", 120),
            ("1m00s", 60),
            ("1m00s", 60),
            ("2m00s", 120),
            ("4m00s", 240),
            ("6m48s", 408),
            ("6m48s", 408),
        ]
        await pilot.press("q")


async def test_ticks_per_second_reads_zero_within_5s_of_the_feed_stopping(
    fixed_db: Path, real_data: Path, tmp_path: Path
) -> None:
    trades = trades_from_ticks(read_ndjson(real_data / RECORDING))[:1500]
    async with asyncio.timeout(60), FakeExchange(trades, rate=300, restamp=True) as ex:
        app = QuantApp(
            app_config(fixed_db, ex.ws_base, ex.rest_base, tmp_path), "BTCUSDT", "ETHUSDT"
        )
        async with app.run_test(size=(120, 40)) as pilot:
            rate = re.compile(r"([\d,]+) ticks/s")

            def shown_rate() -> int | None:
                m = rate.search(status(app))
                return None if m is None else int(m.group(1).replace(",", ""))

            await until(lambda: (shown_rate() or 0) >= 100, 20)
            await asyncio.wait_for(ex.done.wait(), 30)
            stopped = time.monotonic()
            await until(lambda: shown_rate() == 0, 10)
            assert time.monotonic() - stopped <= 5.0
            await pilot.press("q")


async def test_key_bar_shows_q_and_help_first_and_only_keys_that_act(
    fixed_db: Path, tmp_path: Path
) -> None:
    app = QuantApp(app_config(fixed_db, *OFFLINE, tmp_path), "BTCUSDT", "ETHUSDT")
    async with asyncio.timeout(60), app.run_test(size=(80, 24)) as pilot:
        mon = app.monitor
        await until(lambda: mon.snapshot is not None)
        await pilot.pause(0.2)
        bar = key_bar(app)
        assert bar.startswith(" q Quit  ? Keys  ← Cursor")
        assert "→" not in bar and "Esc" not in bar  # act only in cursor mode
        await pilot.press("left")
        bar = key_bar(app)
        assert bar.startswith(" q Quit  ? Keys  ← → Cursor") and "Esc" in bar
        assert " t " not in bar  # not the cursor's business: left to `?`
        await pilot.press("question_mark")
        listed = "\n".join(e.keys for e in app.screen.entries)
        assert listed.split("\n")[:2] == ["q", "?"] and "Esc" in listed and "t" in listed
        await pilot.press("escape")
        assert app.screen is mon
        await pilot.press("escape")
        assert mon.cursor_ms is None
        # the backtest screen offers none of the monitor's keys, and they do nothing there
        await pilot.press("b")
        assert isinstance(app.screen, BacktestScreen)
        bar = key_bar(app)
        assert bar.startswith(" q Quit  ? Keys")
        for key in (" t ", " [ ", " ] ", " h ", " s "):
            assert key not in bar + " "
        before = mon.info
        await pilot.press("t", "left_square_bracket", "h", "s")
        assert mon.info == before and app.params.timeframe == "1s"
        await pilot.press("escape")
        await pilot.press("q")


async def test_first_frames_never_contradict_themselves(real_data: Path, tmp_path: Path) -> None:
    """The demo's start: a pre-filled window replayed at 5x. On every drawing tick, the
    status line's window fill is the table's, and "loading" never sits beside numbers."""
    src = prepare_source([real_data / RECORDING], tmp_path / "source.db")
    cfg = app_config(tmp_path / "s.db", *OFFLINE, tmp_path)
    app = QuantApp(cfg, "BTCUSDT", "ETHUSDT", replay=ReplaySpec(src, 5.0, prefill_ms=120_000))
    frames: list[tuple[str, str, str]] = []
    mon = app.monitor
    draw = mon._draw_tick

    def checked() -> None:
        draw()
        frames.append((status(app), mon.metric_text("bars"), mon.metric_text("zscore")))

    mon._draw_tick = checked  # before mount: the screen's timer takes this one
    async with asyncio.timeout(60), app.run_test(size=(80, 24)) as pilot:
        checked()  # the first frame, before the engine's first status or load
        await until(lambda: any(z not in ("", "—") for _s, _b, z in frames), 30)
        await pilot.pause(1.0)
        await pilot.press("q")
    fill = re.compile(r"filling window (\d+)/(\d+)")
    for line, bars, z in frames:
        m = fill.search(line)
        if m:
            assert bars.startswith(f"{m.group(1)} ("), (line, bars)
        elif bars not in ("", "—"):
            assert "(" not in bars, (line, bars)  # a full window in the table, none filling
        if "loading history" in line:
            assert z in ("", "—"), (line, z)
        assert not ("no trades yet" in line and " 0 ticks/s" not in line and "ticks/s" in line)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_screen_text_has_time_labels_guides_every_metric_and_q(
    fixed_db: Path, tmp_path: Path, size: tuple[int, int]
) -> None:
    """What the snapshot tests show, asserted on the rendered text."""
    from tests.app.test_snapshots import offline_app, screen_text, settle

    app = offline_app(fixed_db, tmp_path)
    async with asyncio.timeout(60), app.run_test(size=size) as pilot:
        await settle(pilot)
        text = screen_text(app)
        lines = text.splitlines()
        assert len(lines) == size[1]
        # time axis: UTC labels under each chart
        chart_w = app.monitor.query_one("#charts").size.width
        stamps = [
            ln[:chart_w]
            for ln in lines
            if re.fullmatch(r"[\s\d:]+", ln[:chart_w]) and re.search(r"\d\d:\d\d", ln)
        ]
        assert len(stamps) == 3, text
        assert sum("· UTC" in ln for ln in lines) == 3
        # guide lines on the rows labelled +2, 0 and -2 of the z chart
        z_top = next(i for i, ln in enumerate(lines) if "±2 entry" in ln)
        for label in ("+2", " 0", "-2"):
            row = next(ln for ln in lines[z_top:] if ln.startswith(label))
            assert row[2:6].count("─") >= 3, row
        # every metric with its value, no scrolling
        mon = app.monitor
        for key in ("price_x", "price_y", "beta", "alpha", "r2", "beta_se", "spread"):
            assert mon.metric_text(key) not in ("", "—"), key
        for key in ("zscore", "corr", "adf_stat", "adf_p", "coint_p", "half_life"):
            assert mon.metric_text(key) not in ("", "—"), key
        for key in ("return_beta", "return_r2", "bars", "ticks", "gaps"):
            assert mon.metric_text(key) not in ("", "—"), key
        for label in ("BTCUSDT", "ETHUSDT", "ADF stat", "ADF p", "coint p", "halflife", "ret b"):
            assert label in text
        assert f"{mon.metric_text('zscore')}" in text and mon.metric_text("gaps") in text
        assert lines[-1].startswith(" q Quit  ? Keys")
        assert not math.isnan(mon.snapshot.zscore)
        await pilot.press("q")


async def test_funding_rows_fit_at_80x24_beside_every_metric(
    fixed_db: Path, tmp_path: Path
) -> None:
    """A snapshot with mark-price data (as the engine publishes it) adds the funding block
    under the metrics: per leg mark, basis, rate per settlement with its interval and the
    countdown, then the carry; everything still on screen at 80x24, alert log below."""
    from tests.app.test_snapshots import offline_app, screen_text, settle

    app = offline_app(fixed_db, tmp_path)
    async with asyncio.timeout(60), app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        mon = app.monitor
        snap = app.snapshot
        t = snap.time_ms
        fx = LegFunding("BTCUSDT", 89780.1, 89775.3, 0.53, 0.0001, 8, t + 3_600_000, 3599.0, t)
        fy = LegFunding("ETHUSDT", 3138.5, 3139.2, -2.23, -0.000125, 4, t + 7_200_000, 7199.0, t)
        mon.show_snapshot(dataclasses.replace(snap, funding=FundingMetrics(fx, fy, "short", 1.234)))
        mon._draw_tick()
        await pilot.pause(0.2)
        text = screen_text(app)
        for shown in (
            "mark X   89,780.10",
            "mark Y        3,138.50",
            "basis X    +0.53bp",
            "fund X +0.0100%/8h",
            "-0.0125%/4h",
            "next X     0:59:59",
            "carry    +1.23bp/d",
            "short spread",
            "coint p",
            "gaps",
        ):
            assert shown in text, shown
        assert mon.query_one("#alerts").size.height >= 3
        await pilot.press("left")  # at the cursor the funding block is the live one, dimmed
        assert mon.metric_text("funding_x") == "+0.0100%/8h"
        await pilot.press("q")
