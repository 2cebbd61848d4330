"""`quanttui serve`, `quanttui attach` and `quanttui sessions`: the engine as a server,
and the views that attach to it (`quanttui.server`)."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from quanttui.config import Config
from quanttui.errors import UserError

if TYPE_CHECKING:
    from quanttui.feed.replay import ReplaySpec
    from quanttui.web import WebSpec

SYSTEMD_UNIT = """\
# ~/.config/systemd/user/quanttui.service
#   systemctl --user daemon-reload && systemctl --user enable --now quanttui
#   loginctl enable-linger "$USER"   # keep it running while logged out, and after reboots
[Unit]
Description=quanttui engine server ({pairs})
After=network-online.target
Wants=network-online.target

[Service]
{environment}ExecStart={exe} serve {args}
ExecReload=/bin/kill -HUP $MAINPID
KillSignal=SIGTERM
TimeoutStopSec=10
Restart=on-failure
RestartSec=5

[Install]
WantedBy=default.target
"""


WEB_ENV_FILE = "%h/.config/quanttui/web.env"
"""Where the unit reads ``QUANTTUI_WEB_TOKEN`` from (``%h``: the user's home, to systemd):
a token in the unit itself would be readable by every user of the machine, as the unit
file and the process's command line are."""


def systemd_unit(
    argv: Sequence[str],
    pairs: Sequence[Sequence[str]],
    web: bool = False,
    token: str | None = None,
) -> tuple[str, str | None]:
    """A systemd user unit that runs this `serve` command line (`pairs`: the pairs and
    baskets it names, for the description; `web`: whether it has ``--web``; `token`: the
    ``--web-token`` given, in whatever spelling argparse took), and a note for the user,
    or None. The token is left out of the unit: with ``--web`` the unit reads
    $QUANTTUI_WEB_TOKEN from `WEB_ENV_FILE`, and the note says so."""
    import shlex

    from quanttui.config import entry_key

    exe = shutil.which("quanttui") or f"{sys.executable} -m quanttui"
    args: list[str] = []
    for a in argv:
        if token is not None and a == token:
            if args and args[-1].startswith("--"):
                args.pop()
        elif not (token is not None and a.startswith("--") and a.endswith(f"={token}")):
            if a != "--print-systemd-unit":
                args.append(a)
    environment = ""
    if web:
        environment = (
            f"# the browser view's token: QUANTTUI_WEB_TOKEN=... in {WEB_ENV_FILE} (chmod 600)\n"
            f"EnvironmentFile=-{WEB_ENV_FILE}\n"
        )
    note = None
    if token is not None:
        path = WEB_ENV_FILE.replace("%h", "~")
        note = (
            f"the --web-token is left out of the unit: put QUANTTUI_WEB_TOKEN=<token> in {path} "
            "(chmod 600), which the unit reads"
        )
    unit = SYSTEMD_UNIT.format(
        pairs=", ".join(entry_key(p) for p in pairs) or "the saved watchlist",
        exe=exe,
        args=" ".join(shlex.quote(a) for a in args),
        environment=environment,
    )
    return unit, note


def serve(
    load: Callable[[], Config],
    pairs: Sequence[tuple[str, str]],
    rules: Sequence[str],
    watchlist: str | None,
    *,
    web: WebSpec | None = None,
    config_path: str | None = None,
    replay: ReplaySpec | None = None,
    baskets: Sequence[Sequence[str]] = (),
) -> int:
    """Run the server until SIGTERM/SIGINT, with `pairs` and `baskets` (3+ legs each) on
    its engine; with `web`, its browser view too (`quanttui.web`): bound before the engine
    starts, started once the server answers, told to end with the server's stop and ended
    (with every tab) before this returns. Its threads run under ``SCHED_BATCH``, as the
    app's engine process does (`quanttui.sched.yield_to_screens`), so that attached
    screens on the same machine are not preempted mid-frame by its wake-ups."""
    from quanttui.sched import yield_to_screens
    from quanttui.server.server import Server, log

    yield_to_screens()
    server = Server(load, pairs, rules=rules, watchlist=watchlist, replay=replay, baskets=baskets)
    if web is None:
        return server.run()
    from quanttui.web.launch import WebFront, tab_command

    title = "quanttui " + " ".join(
        [*(f"{x}/{y}" for x, y in pairs), *("+".join(b) for b in baskets)]
    )
    front = WebFront(web, tab_command(server.cfg.db_path, config_path), title)

    def start() -> None:
        front.start()
        server.web = front.address
        log(front.describe())

    server.on_start.append(start)
    server.on_stop.append(front.stop)
    try:
        return server.run()
    finally:
        front.close()


def server_for(cfg: Config) -> Path | None:
    """The socket of the running server for this config's database, if one answers."""
    from quanttui.server.sessions import running, socket_path

    try:
        return socket_path(cfg.db_path) if running(cfg.db_path) is not None else None
    except OSError:
        return None


def attach_path(cfg: Config) -> Path:
    """The socket to attach to: the server for the database, or the only one running."""
    from quanttui.server.sessions import list_sessions

    found = server_for(cfg)
    if found is not None:
        return found
    sessions = list_sessions()
    if len(sessions) == 1:
        return Path(sessions[0].socket)
    if not sessions:
        raise UserError("no quanttui server is running ('quanttui serve PAIRS...' starts one)")
    dbs = ", ".join(s.db for s in sessions)
    raise UserError(f"several servers are running ({dbs}); choose one with --db")


def sessions() -> int:
    from quanttui.server.sessions import list_sessions
    from quanttui.textsafe import printable

    found = list_sessions()
    if not found:
        print("no quanttui server is running")
        return 0
    now = time.time()
    print(f"{'PID':>7}  {'UPTIME':>9}  {'VIEWERS':>7}  {'DB':<40}  PAIRS")
    for s in found:
        up = int(now - s.started)
        h, rem = divmod(up, 3600)
        print(
            f"{s.pid:>7}  {h:>3}h{rem // 60:02d}m{rem % 60:02d}s  {s.viewers:>7}  "
            f"{printable(s.db, 40, one_line=True):<40}  "
            f"{printable(' '.join(s.pairs), 200, one_line=True)}"
        )
        if s.web:
            print(f"{'':>7}  browser view: {printable(s.web, 200, one_line=True)}")
    return 0
