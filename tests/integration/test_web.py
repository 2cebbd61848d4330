"""The browser view (`quanttui web`, `quanttui serve --web`), end to end: a real headless
Chromium driven over the DevTools protocol (`tests/cdp.py`, no Playwright) against the
demo, the token on a non-loopback bind, the loopback default, bad addresses, a stalled
tab, and the processes: every one started is gone at the end."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests import cdp
from tests.webproc import ROOT, WebServer, read_output, tab, tab_apps

Z_SHOWN = re.compile(r"(?m)(^|\s)z\s+[-+−]?\d+\.\d+")
KINDS = ("alerts", "analytics", "bars", "ticks")
UNREACHABLE = ["--ws-url", "ws://127.0.0.1:9/market", "--rest-url", "http://127.0.0.1:9"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private runtime dir (sockets), config dir and TMPDIR (the demo's folder)."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "config").mkdir()
    e = dict(os.environ)
    e.update(
        XDG_RUNTIME_DIR=str(run),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        TMPDIR=str(tmp_path / "tmp"),
    )
    e.pop("QUANTTUI_WEB_TOKEN", None)
    return e


@pytest.fixture
def start(env: dict[str, str], tmp_path: Path):
    """Start `python -m quanttui ARGS` with a browser view; at the end SIGTERM it and
    require that it and every process it started are gone."""
    started: list[WebServer] = []

    def go(*args: str) -> WebServer:
        s = WebServer(list(args), env, tmp_path / f"server{len(started)}.log")
        started.append(s)
        s.wait_url()
        s.track()
        return s

    yield go
    for s in started:
        s.stop()
        left = s.leftovers()
        assert not left, f"processes left behind: {left}\n{s.text}"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(cdp.available() is not None, reason=cdp.available() or "")
def test_a_browser_tab_shows_the_demo_and_e_downloads_the_csvs(start, tmp_path: Path) -> None:
    exports, downloads = tmp_path / "exports", tmp_path / "downloads"
    server = start("web", "--demo", "--web", "127.0.0.1:0", "--export-dir", str(exports))
    assert server.url.startswith("http://127.0.0.1:") and server.token is None
    with cdp.Browser(tmp_path, downloads=downloads) as browser:
        browser.navigate(server.url)

        def shown() -> str | None:
            browser.evaluate(
                "window.__quanttuiTerminal && window.__quanttuiTerminal.refresh(0, 1e4)"
            )
            text = browser.dom_text()
            ok = "BTCUSDT" in text and "ETHUSDT" in text and Z_SHOWN.search(text)
            return text if ok and "alerts (UTC)" in text and "DEMO" in text else None

        try:
            text = cdp.wait_for(shown, 90, "the demo pair, a z-score and the alert log")
        finally:
            shot = browser.screenshot(tmp_path / "demo.png")
        assert "BTCUSDT -> ETHUSDT" in text
        w, h = png_size(shot)
        assert w >= 800 and h >= 600 and len(shot) > 20_000, (w, h, len(shot))
        server.track()

        browser.focus_terminal()
        browser.press("e")

        def exported() -> list[Path] | None:
            files = sorted(exports.glob("*.csv")) if exports.is_dir() else []
            zips = sorted(downloads.glob("*.zip"))
            return [*files, *zips] if len(files) == 4 and zips else None

        found = cdp.wait_for(exported, 60, "four CSVs in the export dir and a zip download")
        csvs, zipped = found[:4], found[4]
        assert sorted(p.name.rsplit("_", 1)[1] for p in csvs) == [f"{k}.csv" for k in KINDS]
        with zipfile.ZipFile(zipped) as zf:
            assert sorted(zf.namelist()) == [p.name for p in csvs]
            ticks = next(p for p in csvs if p.name.endswith("_ticks.csv"))
            body = zf.read(ticks.name)
        assert body == ticks.read_bytes()
        assert body.startswith(b"time,symbol,trade_id,price,qty,is_buyer_maker")
        assert body.count(b"\n") > 1000
        cdp.wait_for(  # the note, wrapped as the toast's width allows
            lambda: "(4 files)" in (browser.screen_text() or ""), 10, "the download note"
        )
        server.track()
    code, took = server.stop()
    assert code == 0 and took < 5.0, (code, took, server.text)
    assert not list((tmp_path / "tmp").glob("quanttui-replay-*")), "the demo's folder is left"


def test_off_loopback_a_request_without_the_token_is_refused(start, env) -> None:
    server = start("web", "--demo", "--web", "127.0.0.2:0")
    token, base = server.token, server.url
    assert token and base.startswith("http://127.0.0.2:"), server.text
    said = [line for line in server.lines if token in line]
    assert len(said) == 1 and "needs a token" in said[0], server.text
    # `quanttui sessions` shows where the browser view is, never its token
    listed = subprocess.run(
        [sys.executable, "-m", "quanttui", "sessions"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and f"browser view: {base}" in listed.stdout, listed
    assert token not in listed.stdout + listed.stderr

    for path in ("/", "/static/js/textual.js", "/download/x"):
        code, _, body = get(base + path.lstrip("/"))
        assert code == 403 and b"token" in body, (path, code)
    assert get(base + "?token=" + "x" * len(token))[0] == 403
    assert get(base, {"Cookie": "quanttui_web_token=" + "x" * len(token)})[0] == 403

    code, headers, body = get(f"{base}?token={token}")
    assert code == 200 and b"textual-terminal" in body
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"quanttui_web_token={token};") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and headers["Referrer-Policy"] == "no-referrer"
    assert b"fonts.googleapis.com" not in body  # no request leaves the machine
    jar = {"Cookie": f"quanttui_web_token={token}"}
    assert get(base, jar)[0] == 200
    assert get(base + "static/js/textual.js", jar)[0] == 200

    with pytest.raises(InvalidStatus) as refused:
        tab(base)
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as foreign:
        tab(base, headers={**jar, "Origin": "http://evil.example"})
    assert foreign.value.response.status_code == 403
    ws = tab(base, headers={**jar, "Origin": base.rstrip("/")})
    try:
        out = read_output(ws, 60, until=b"BTCUSDT")
        assert b"BTCUSDT" in out, out[-500:]
        server.track()
    finally:
        ws.close()


def test_serve_web_binds_loopback_by_default_and_sigterm_exits_0(start, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    server = start(
        "serve", "BTCUSDT", "ETHUSDT", "--db", str(db), *UNREACHABLE, "--backfill", "off",
        "--web", "0",
    )  # fmt: skip
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", server.url) and server.token is None
    assert get(server.url)[0] == 200
    with pytest.raises(OSError):  # a 0.0.0.0 bind would answer on every loopback address
        urllib.request.urlopen(f"http://127.0.0.2:{server.port}/", timeout=5)
    assert get(server.url, {"Host": f"evil.example:{server.port}"})[0] == 403  # DNS rebinding
    ws = tab(server.url)
    try:
        assert b"BTCUSDT" in read_output(ws, 60, until=b"BTCUSDT")
        server.track()
        assert len(server.seen) >= 2, server.seen  # the front and this tab's app
        code, took = server.stop()
    finally:
        ws.close()
    assert code == 0 and took < 5.0, (code, took, server.text)
    assert not server.leftovers(), "a process outlived the server"


def test_a_stalled_tab_never_stops_ingestion(start) -> None:
    """A tab whose app stops dead (SIGSTOP: it reads nothing from the server and writes
    nothing to its page) while the page reads nothing either: the engine keeps storing
    trades, and a second tab opens and is served meanwhile."""
    server = start("web", "--demo", "--web", "127.0.0.1:0", "--speed", "20")
    db = server.session_db()

    def stored() -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT COUNT(*) FROM ticks").fetchone()[0]

    stalled = tab(server.url, rcvbuf=4096, width=200, height=60)
    other = None
    try:
        assert b"BTCUSDT" in read_output(stalled, 60, until=b"BTCUSDT")
        server.track()
        (app,) = tab_apps(server.proc.pid)
        os.kill(app, signal.SIGSTOP)
        try:
            counts = []
            for _ in range(6):
                counts.append(stored())
                time.sleep(2.0)
            steps = [b - a for a, b in zip(counts, counts[1:], strict=False)]
            assert all(s > 0 for s in steps), f"ingestion stalled: {counts}"
            other = tab(server.url)
            assert b"BTCUSDT" in read_output(other, 60, until=b"BTCUSDT")
            server.track()
        finally:
            os.kill(app, signal.SIGCONT)
    finally:
        stalled.close()
        if other is not None:
            other.close()


BAD_WEB = ["70000", "abc", "1:2:3", "[::1]8000", "localhost:", "-1", "0.0.0.0:99999", "bad_host:80"]


@pytest.mark.parametrize("value", BAD_WEB)
@pytest.mark.parametrize("cmd", ["serve", "web"])
def test_a_bad_web_address_exits_2_with_one_line(cmd: str, value: str, env) -> None:
    args = ["serve", "BTCUSDT", "ETHUSDT"] if cmd == "serve" else ["web", "--demo"]
    out = subprocess.run(
        [sys.executable, "-m", "quanttui", *args, "--web", value],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("quanttui: error: invalid --web") and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--web", "0", "--web-token", "short"], "--web-token: expected 16-256 characters"),
        (["--web", "0", "--web-token", "x" * 15 + "!"], "--web-token: expected 16-256"),
        (["--web-token", "a" * 20], "--web-token needs --web"),
    ],
)
def test_a_bad_token_exits_2_with_one_line(extra: list[str], says: str, env) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "quanttui", "serve", "BTCUSDT", "ETHUSDT", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and says in lines[0], out.stderr


def test_a_busy_port_exits_1_with_one_line(env, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "quanttui", "serve", "BTCUSDT", "ETHUSDT",
             "--db", str(tmp_path / "b.db"), *UNREACHABLE, "--web", str(port)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert f"--web 127.0.0.1:{port}: cannot listen there" in lines[0]


def test_the_front_needs_its_parent(env) -> None:
    """Run by hand, the front process says what it is and exits 2; no traceback."""
    out = subprocess.run(
        [sys.executable, "-m", "quanttui.web.front"],
        cwd=ROOT, env=env, input=b"", capture_output=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2 and b"Traceback" not in out.stderr, out.stderr
    assert out.stderr.count(b"\n") == 1


def test_the_page_follows_the_host_it_is_asked_for(start) -> None:
    """The page's websocket URL follows the Host it was asked for (an SSH forward may use
    another local port), and its static files are served."""
    server = start("web", "--demo", "--web", "127.0.0.1:0")
    code, _, body = get(server.url, {"Host": "localhost:18000"})
    assert code == 200
    assert b'data-session-websocket-url="ws://localhost:18000/ws"' in body, body[:2000]
    status, headers, js = get(server.url + "static/js/textual.js")
    assert status == 200 and len(js) > 100_000
    assert headers["X-Frame-Options"] == "DENY"


def test_web_in_front_of_a_running_server_leaves_it_running(start, env, tmp_path) -> None:
    from quanttui.server.client import probe
    from quanttui.server.sessions import socket_path

    db = tmp_path / "r.db"
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    served = subprocess.Popen(
        [sys.executable, "-m", "quanttui", "serve", "BTCUSDT", "ETHUSDT", "--db", str(db),
         *UNREACHABLE, "--backfill", "off"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    log.close()
    try:
        sock = Path(env["XDG_RUNTIME_DIR"]) / "quanttui" / socket_path(db).name
        deadline = time.monotonic() + 30
        while probe(sock) is None:
            assert served.poll() is None and time.monotonic() < deadline, served.returncode
            time.sleep(0.1)
        front = start("web", "--db", str(db), "--web", "127.0.0.1:0")
        assert "views of the server pid" in front.text
        ws = tab(front.url)
        try:
            assert b"BTCUSDT" in read_output(ws, 60, until=b"BTCUSDT")
            front.track()
        finally:
            ws.close()
        code, took = front.stop()
        assert code == 0 and took < 5.0, (code, took, front.text)
        assert not front.leftovers()
        assert served.poll() is None and probe(sock) is not None, "the server stopped too"
    finally:
        served.terminate()
        assert served.wait(10) == 0
