"""A headless Chromium driven over the Chrome DevTools Protocol, with no Playwright.

Just enough CDP for the browser tests and `benchmarks/bench_web.py`: start Debian's
`chromium` headless on a throw-away profile, find its DevTools port, open the first
page's websocket (the `websockets` library the project already depends on), and send
commands (``{"id", "method", "params"}`` in, ``{"id", "result"|"error"}`` out, with
``{"method", "params"}`` events in between, which are kept for `events`).

How the DevTools endpoint is found: with ``--remote-debugging-port=0`` Chromium picks a
free port and writes ``<port>\\n<browser websocket path>`` to
``<user-data-dir>/DevToolsActivePort``; ``GET http://127.0.0.1:<port>/json`` lists the
targets, each page's ``webSocketDebuggerUrl`` among them.

How the screen is read: textual-serve draws the terminal with xterm.js on a WebGL (or
canvas) renderer, so the text is not in the DOM. `SCREEN_HOOK`, installed before the
page's scripts run, catches textual.js's terminal object as it is built (the first
assignment of its ``fitAddon`` property) and turns on xterm.js's ``screenReaderMode``,
which mirrors every row of the screen into the DOM (``.xterm-accessibility``) for screen
readers: the page's ``document.body.innerText`` then holds the screen's text.
`SCREEN_BUFFER` reads the same rows from xterm.js's buffer, for a diagnostic.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = Path("/usr/bin/chromium")

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-popup-blocking",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
)

SCREEN_HOOK = """
(() => {
  const key = 'fitAddon';
  Object.defineProperty(Object.prototype, key, {
    configurable: true,
    get() { return undefined; },
    set(value) {
      Object.defineProperty(this, key, {value, writable: true, configurable: true,
                                        enumerable: true});
      if (this.terminal && !window.__quanttuiTerminal) {
        window.__quanttuiTerminal = this.terminal;
        try { this.terminal.options.screenReaderMode = true; } catch (e) {}
      }
    },
  });
})();
"""
"""Catch textual.js's xterm.js `Terminal` and mirror its rows into the DOM (see the
module docstring)."""

SCREEN_BUFFER = """
(() => {
  const t = window.__quanttuiTerminal;
  if (!t) return null;
  const b = t.buffer.active, rows = [];
  for (let i = 0; i < t.rows; i++) {
    const line = b.getLine(b.viewportY + i);
    rows.push(line ? line.translateToString(true) : '');
  }
  return rows.join('\\n');
})()
"""


def available() -> str | None:
    """None when a headless Chromium can run here, else the reason it cannot."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is absent (Debian: apt-get install chromium)"
    return None


class CDPError(Exception):
    """A command answered with an error, or the browser did not answer in time."""


class Target:
    """One DevTools websocket (a page, or the browser itself)."""

    def __init__(self, url: str) -> None:
        # entered at once, as `with connect(...)` does (websockets 17.1 warns otherwise)
        self.ws: ClientConnection = connect(url, max_size=64 * 2**20, open_timeout=10).__enter__()
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive first are kept."""
        cid = next(self.ids)
        self.ws.send(json.dumps({"id": cid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"{method}: no answer within {timeout:g} s")
            try:
                msg = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            if msg.get("id") == cid:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


class Browser:
    """A headless Chromium on a temporary profile; `page` is its first tab."""

    def __init__(self, workdir: Path, downloads: Path | None = None) -> None:
        self.profile = workdir / "chromium-profile"
        self.profile.mkdir(parents=True, exist_ok=True)
        self.log = open(workdir / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its helpers share its process group: killed together
        )
        self.browser: Target | None = None
        self.page: Target | None = None
        try:
            self.port, browser_path = self._devtools_port()
            self.browser = Target(f"ws://127.0.0.1:{self.port}{browser_path}")
            if downloads is not None:
                downloads.mkdir(parents=True, exist_ok=True)
                self.browser.call(
                    "Browser.setDownloadBehavior",
                    behavior="allow",
                    downloadPath=str(downloads),
                    eventsEnabled=True,
                )
            self.page = Target(self._page_url())
            self.page.call("Page.enable")
            self.page.call("Page.addScriptToEvaluateOnNewDocument", source=SCREEN_HOOK)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, timeout: float = 30.0) -> tuple[int, str]:
        f = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CDPError(f"chromium exited with {self.proc.returncode}")
            with contextlib.suppress(OSError, ValueError):
                lines = f.read_text().split()
                if len(lines) >= 2:
                    return int(lines[0]), lines[1]
            time.sleep(0.05)
        raise CDPError(f"chromium wrote no {f.name} within {timeout:g} s")

    def targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json", timeout=5) as r:
            return json.loads(r.read())

    def _page_url(self) -> str:
        for t in self.targets():
            if t.get("type") == "page":
                return t["webSocketDebuggerUrl"]
        raise CDPError("chromium has no page target")

    def new_tab(self, url: str) -> tuple[str, Target]:
        """Open one more tab on `url` (the screen hook installed first): its target id
        and its DevTools connection; `close_tab` closes it."""
        tid = self.browser.call("Target.createTarget", url="about:blank")["targetId"]
        ws_url = next(t["webSocketDebuggerUrl"] for t in self.targets() if t.get("id") == tid)
        page = Target(ws_url)
        page.call("Page.enable")
        page.call("Page.addScriptToEvaluateOnNewDocument", source=SCREEN_HOOK)
        page.call("Page.navigate", url=url)
        return tid, page

    def close_tab(self, tid: str, page: Target) -> None:
        page.close()
        self.browser.call("Target.closeTarget", targetId=tid)

    # ------------------------------------------------------------------ the page
    def navigate(self, url: str) -> None:
        self.page.call("Page.navigate", url=url)

    def evaluate(self, expression: str, page: Target | None = None) -> Any:
        res = (page or self.page).call(
            "Runtime.evaluate", expression=expression, returnByValue=True
        )
        if "exceptionDetails" in res:
            raise CDPError(f"{expression[:60]!r}: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def dom_text(self) -> str:
        """The page's visible text (`document.body.innerText`)."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def screen_text(self, page: Target | None = None) -> str | None:
        """The terminal's rows as xterm.js holds them, or None before it exists."""
        return self.evaluate(SCREEN_BUFFER, page)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.page.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data

    def focus_terminal(self) -> None:
        """Give the terminal the keyboard focus, as a click into the page does."""
        self.evaluate("window.__quanttuiTerminal && window.__quanttuiTerminal.focus()")

    def press(self, key: str) -> None:
        """Type one printable character as a real key press (keydown, char, keyup) into
        whatever has the focus (see `focus_terminal`)."""
        code = f"Key{key.upper()}" if key.isalpha() else ""
        vk = ord(key.upper())
        base = {"key": key, "code": code, "windowsVirtualKeyCode": vk}
        self.page.call("Input.dispatchKeyEvent", type="keyDown", **base)
        self.page.call("Input.dispatchKeyEvent", type="char", text=key, **base)
        self.page.call("Input.dispatchKeyEvent", type="keyUp", **base)

    def close(self) -> None:
        """End the browser and every helper process it started; remove the profile."""
        for target in (self.page, self.browser):
            if target is not None:
                if target is self.browser:
                    with contextlib.suppress(Exception):
                        target.call("Browser.close", timeout=3)
                target.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def wait_for(probe: Any, timeout: float, what: str, every: float = 0.25) -> Any:
    """Call `probe` until it returns something truthy; its last value in the error."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what} not seen within {timeout:g} s; last: {last!r}")
