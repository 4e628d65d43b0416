"""A webhook target for the subscriber tests (unit and integration): an HTTP server on 127.0.0.1
that records what it is sent and answers as the test asks.

Importable from any test: `tests/` is on the path, as for `ops_tools`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar


class WebhookReceiver(ThreadingHTTPServer):
    """Records each request (method, path, headers, raw body) in `requests`; answers 503 to the
    first `fail_first`, 400 to request number `refuse_at`, and `status` to the rest (with a
    `Location` when `location` is set). The JSON body and `Idempotency-Key` of each POST
    answered 2xx go to `received` and `keys`. On `port`, or a free one."""

    daemon_threads = True

    def __init__(
        self,
        status: int = 204,
        location: str | None = None,
        *,
        port: int = 0,
        fail_first: int = 0,
        refuse_at: int | None = None,
    ) -> None:
        self.status = status
        self.location = location
        self.fail_first = fail_first
        self.refuse_at = refuse_at
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.received: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        server = self.server
        with server.lock:
            server.requests.append((self.command, self.path, dict(self.headers), body))
            n = len(server.requests)
            if n <= server.fail_first:
                status = 503
            elif server.refuse_at is not None and n == server.refuse_at:
                status = 400
            else:
                status = server.status
                if 200 <= status < 300 and self.command == "POST":
                    server.received.append(json.loads(body))
                    server.keys.append(self.headers["Idempotency-Key"])
        self.send_response(status)
        if server.location:
            self.send_header("Location", server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _any


Server = TypeVar("Server", bound=ThreadingHTTPServer)


@contextmanager
def serving(server: Server) -> Iterator[Server]:
    """`server` answering in a thread until the block ends, then shut down and closed."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
