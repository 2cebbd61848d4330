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


def status_line(
    st: Status | None,
    legs: tuple[str, ...],
    fill: tuple[int, int] | None,
    width: int = 200,
) -> Text:
    """`fill` is (bars, window) of the shown pair, or None while it loads."""
    if st is None:
        return Text(" CONNECTING ", style="reverse bold")
    parts: list[Text] = []
    state = Text(f" {st.state.upper()} ", style=f"reverse {STATE_STYLE.get(st.state, 'bold red')}")
    if st.detail and st.state not in ("live", "replay"):
        state.append(
            f" {printable(st.detail, max(24, min(80, width - 40)), one_line=True)}", style="bold"
        )
    parts.append(state)
    if st.db_error:
        parts.append(
            Text(
                f"DB ERROR ({printable(st.db_error, 40, one_line=True)}) unsaved={st.unsaved:,}",
                style="bold red",
            )
        )
    if fill is None:
        parts.append(Text("loading history…"))
    elif fill[0] < fill[1]:
        parts.append(Text(f"filling window {fill[0]}/{fill[1]}", style="bold"))
    if st.replay_ms:
        speed = f"{st.speed:g}x" if st.speed else "max"
        clock = iso_utc(st.replay_ms)[:19].replace("T", " ")
        parts.append(Text(f"{speed} {clock}Z", style="bold cyan"))
    for sym in legs:
        age = st.leg_age.get(sym)
        if age is None:
            parts.append(Text(f"{sym}: no trades", style="yellow"))
        elif age > STALE_LEG_S:
            parts.append(Text(f"{sym} {age:.0f}s STALE", style="bold yellow"))
        else:
            parts.append(Text(f"{sym} {age:.1f}s"))
    parts.append(Text(f"{st.rate:,.0f} ticks/s"))
    if st.backfill == "running":
        parts.append(
            Text(f"backfilling {st.backfill_done:,}/{st.backfill_total:,} bars", style="bold")
        )
    elif st.backfill == "skipped":
        parts.append(Text("backfill skipped", style="yellow"))
    parts.append(Text(f"DB {human_bytes(st.db_bytes)}"))
    out = Text()
    for part in parts:
        sep = 2 if out.cell_len else 0
        if out.cell_len + sep + part.cell_len > width and out.cell_len:
            break
        if sep:
            out.append("  ")
        out.append_text(part)
    return out
