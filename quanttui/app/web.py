"""The export's files, offered for download when the app runs in a browser tab.

In a browser tab (`quanttui web`, `quanttui serve --web`: Textual's web driver, so
`App.is_web`) the CSVs that `e` writes are on the server's disk, out of the user's
reach. Once the tab's own export command has answered (`QuantApp.command` adds
`offer_export` to its future; another tab's export is not offered here), its files are
packed into one zip and delivered with `App.deliver_binary`: textual-serve tells the
page, which opens ``/download/<key>`` and the browser saves the zip. One zip rather than
four files: a page may open one download per key press, and browsers block the rest as
pop-ups. The zip is built in a thread, in an unnamed temporary file (gone once
delivered, or when the tab's process ends), never in memory.

When the files cannot be read from here (a server in another working directory, with a
relative export dir), the notification says where they were written, as in a terminal.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

_SUFFIX = " ("


def exported_paths(lines: tuple[str, ...] | list[str]) -> list[Path]:
    """The paths of an `ExportDone`: its lines are ``PATH (N rows)`` for a pair's files
    and ``FOLDER (N pairs, M CSV files)`` for a watchlist's folder."""
    out = []
    for line in lines:
        path = line.rsplit(_SUFFIX, 1)[0] if line.endswith(")") else line
        out.append(Path(path))
    return out


def zip_name(paths: list[Path]) -> str:
    """``<X>_<Y>_<tf>_<stamp>.zip`` for a pair's four files (their common stem), or the
    watchlist folder's name."""
    if len(paths) == 1:
        return f"{paths[0].name}.zip"
    stem = os.path.commonprefix([p.name for p in paths]).rstrip("_") or "quanttui_export"
    return f"{stem}.zip"


def pack(paths: list[Path], out: Any) -> int:
    """Write the files (a folder: its CSVs, under its name) into the zip `out`; the
    number of files packed."""
    n = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in paths:
            if p.is_dir():
                for f in sorted(p.rglob("*.csv")):
                    zf.write(f, f"{p.name}/{f.relative_to(p)}")
                    n += 1
            else:
                zf.write(p, p.name)
                n += 1
    return n


def offer_export(app: Any, fut: concurrent.futures.Future) -> None:
    """Done-callback of this tab's export command: deliver its files (see the module
    docstring). Runs on whichever thread answered; the work moves to a thread of its
    own, and the widgets are touched only through `App.call_from_thread`."""
    if fut.cancelled() or fut.exception() is not None:
        return
    done = fut.result()
    lines = getattr(done, "paths", ())
    if getattr(done, "error", None) or not lines:
        return
    threading.Thread(
        target=_deliver, args=(app, exported_paths(lines)), name="quanttui-web-export", daemon=True
    ).start()


def _deliver(app: Any, paths: list[Path]) -> None:
    def on_app(fn: Any, *args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the app has ended meanwhile
            app.call_from_thread(fn, *args, **kwargs)

    missing = [p for p in paths if not p.exists()]
    if missing:
        on_app(
            app.notify,
            f"not offered for download: {missing[0]} is not readable from this tab "
            "(the server writes in its own working directory)",
            severity="warning",
            markup=False,
        )
        return
    name = zip_name(paths)
    fh = tempfile.TemporaryFile(prefix="quanttui-export-", suffix=".zip")
    try:
        n = pack(paths, fh)
        fh.seek(0)
    except OSError as exc:
        fh.close()
        on_app(app.notify, f"cannot pack the export: {exc}", severity="error", markup=False)
        return
    on_app(app.deliver_binary, fh, save_filename=name, mime_type="application/zip")
    on_app(app.notify, f"{name} ({n} files) sent to the browser", title="Download", markup=False)
