"""The monitor's one-line status: feed state and reason first, then what fits.

Built from the engine's `Status` event only. Fields are dropped from the end when the
line is narrow, so state, reason, window fill and errors show even at 80 columns.
"""

from __future__ import annotations

from rich.text import Text

from quanttui.engine.events import Status
from quanttui.model import iso_utc
from quanttui.textsafe import printable

STALE_LEG_S = 30.0
STATE_STYLE = {
    "live": "bold green",
    "replay": "bold cyan",
    "stale": "bold yellow",
    "reconnecting": "bold yellow",
    "connecting": "bold",
    "finished": "bold",
}


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def notify_text(st: Status) -> Text:
    """Push notifications' delivery state: failed and pending counts, or all sent."""
    if st.notify_failed:
        text = f"notify: {st.notify_failed:,} failed"
        if st.notify_pending:
            text += f", {st.notify_pending:,} pending"
        return Text(text, style="bold red")
    if st.notify_pending:
        return Text(f"notify: {st.notify_pending:,} pending", style="yellow")
    return Text("notify: all sent", style="dim")


def status_line(
    st: Status | None,
    legs: tuple[str, ...],
    fill: tuple[int, int] | None,
    width: int = 200,
    z_in: int | None = None,
) -> Text:
    """`fill` is (bars, window) of the shown pair, or None while it loads; `z_in` the
    bars still to close before its first z-score, once the window is full (a z needs
    2W − 1 bars: W residuals, each from a full window).

    Parts, most important first: the state with its reason, a database error, the
    window fill, the backfill and the notifications' delivery state, legs without recent trades, the replay clock, ticks/s,
    the other legs' ages, the database size. The line keeps as many as fit in `width`,
    in that order of importance, and shows them in reading order."""
    if st is None:
        line = Text(" CONNECTING ", style="reverse bold")
        if fill is not None and fill[0] < fill[1]:
            line.append(f"  filling window {fill[0]}/{fill[1]}", style="bold")
        return line
    parts: list[tuple[int, Text]] = []
    state = Text(f" {st.state.upper()} ", style=f"reverse {STATE_STYLE.get(st.state, 'bold red')}")
    if st.detail and st.state not in ("live", "replay"):
        room = max(24, min(80, width - 50))
        state.append(f" {printable(st.detail, room, one_line=True)}", style="bold")
    parts.append((0, state))
    if st.db_error:
        parts.append(
            (
                1,
                Text(
                    f"DB ERROR ({printable(st.db_error, 40, one_line=True)}) "
                    f"unsaved={st.unsaved:,}",
                    style="bold red",
                ),
            )
        )
    if fill is None:
        parts.append((2, Text("loading history…")))
    elif fill[0] < fill[1]:
        parts.append((2, Text(f"filling window {fill[0]}/{fill[1]}", style="bold")))
    elif z_in:
        parts.append((2, Text(f"first z in {z_in} bar{'s' if z_in > 1 else ''}", style="bold")))
    if st.backfill == "running":
        parts.append(
            (3, Text(f"backfilling {st.backfill_done:,}/{st.backfill_total:,} bars", style="bold"))
        )
    elif st.backfill == "skipped":
        parts.append((3, Text("backfill skipped", style="yellow")))
    if st.replay_ms:
        speed = f"{st.speed:g}x" if st.speed else "max"
        clock = iso_utc(st.replay_ms)[:19].replace("T", " ")
        parts.append((5, Text(f"{speed} {clock}Z", style="bold cyan")))
    silent = all(st.leg_age.get(sym) is None for sym in legs) if legs else st.ticks == 0
    if silent:
        parts.append((4, Text("no trades yet", style="yellow")))
    for sym in [] if silent else legs:
        age = st.leg_age.get(sym)
        if age is None:
            parts.append((4, Text(f"{sym}: no trades yet", style="yellow")))
        elif age > STALE_LEG_S:
            parts.append((4, Text(f"{sym} {age:.0f}s STALE", style="bold yellow")))
        else:
            parts.append((7, Text(f"{sym} {age:.1f}s")))
    if st.notify:
        parts.append((3, notify_text(st)))
    parts.append((6, Text(f"{st.rate:,.0f} ticks/s")))
    parts.append((8, Text(f"DB {human_bytes(st.db_bytes)}")))
    keep: set[int] = set()
    used = 0
    for i in sorted(range(len(parts)), key=lambda i: parts[i][0]):
        need = parts[i][1].cell_len + (2 if used else 0)
        if used + need <= width or not used:
            keep.add(i)
            used += need
    out = Text()
    for i, (_prio, part) in enumerate(parts):
        if i not in keep:
            continue
        if out.cell_len:
            out.append("  ")
        out.append_text(part)
    out.truncate(width)
    return out
