"""A loopback HTTP server on 127.0.0.1 that receives apprise's ``json://`` posts, for the
push-notification tests. It can answer 500, hang past the client's timeout, or be down
(its port closed). Its URL carries `SECRET` in its user info, which must never appear in
any output, log, database or CSV of the tests that use it."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "S3cr3tT0ken42"


class Inbox:
    """A loopback HTTP server that records JSON posts. `mode`: ok, 500 or hang."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.attempts = 0
        self.mode = "ok"
        self.hang_s = 3.0
        self.fail_next = 0
        self._lock = threading.Lock()
        self.port = port or _free_port()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Inbox:
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                with inbox._lock:
                    inbox.attempts += 1
                    mode = inbox.mode
                    if inbox.fail_next > 0:
                        inbox.fail_next -= 1
                        mode = "500"
                if mode == "hang":
                    time.sleep(inbox.hang_s)
                    return
                if mode == "500":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"boom \x1b[31m" + SECRET.encode())
                    return
                with inbox._lock:
                    inbox.received.append(json.loads(raw))
                    inbox.headers.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str = "hook") -> str:
        return f"json://user:{SECRET}@127.0.0.1:{self.port}/{path}"

    def keys(self) -> list[str]:
        return [m["idempotency_key"] for m in self.received]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
