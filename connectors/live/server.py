"""The live HTTP endpoint: `POST /events` with a bearer token, one event or a JSON array.

Answers (JSON): `{"accepted": N, "rejected": M, "results": [{"index", "status", "event_id" |
"reason"}]}` with status 200 when every event was accepted, 207 when some were, 422 when none
were; 401 without a valid token, 400 for a body that is not JSON, 413 for a body over the limit.
`GET /health` answers 200 without a token (for load balancers). Nothing a client sends is
logged: only the client name and counts.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from connectors.live.exceptions import LiveError
from connectors.live.intake import Intake
from connectors.live.tokens import TokenStore

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: LiveHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "broker-live/1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _answer(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._answer(HTTPStatus.OK, {"status": "ok", "agency": self.server.agency_id})
        else:
            self._answer(HTTPStatus.NOT_FOUND, {"error": "not found: POST /events"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/events":
            self._drain()
            self._answer(HTTPStatus.NOT_FOUND, {"error": "not found: POST /events"})
            return
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        client = (
            self.server.tokens.client_for(token.strip()) if scheme.lower() == "bearer" else None
        )
        if client is None:
            self._drain()
            self._answer(
                HTTPStatus.UNAUTHORIZED,
                {"error": "missing or unknown bearer token"},
                {"WWW-Authenticate": 'Bearer realm="broker"'},
            )
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._answer(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            self.close_connection = True
            return
        if length > MAX_BODY_BYTES:
            self._answer(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"body over {MAX_BODY_BYTES} bytes: send smaller batches"},
            )
            self.close_connection = True
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = (
                f" (line {exc.lineno}, column {exc.colno})"
                if isinstance(exc, json.JSONDecodeError)
                else ""
            )
            self._answer(HTTPStatus.BAD_REQUEST, {"error": f"body is not valid JSON{where}"})
            return
        events = body if isinstance(body, list) else [body]
        results = self.server.intake.submit(events, client=client)
        accepted = sum(1 for r in results if r.accepted)
        if accepted == len(results):
            status = HTTPStatus.OK
        elif accepted:
            status = HTTPStatus.MULTI_STATUS
        else:
            status = HTTPStatus.UNPROCESSABLE_ENTITY
        self._answer(
            status,
            {
                "accepted": accepted,
                "rejected": len(results) - accepted,
                "results": [r.to_json() for r in results],
            },
        )

    def _drain(self) -> None:
        """Read (and discard) a small body so the connection stays usable; else close it."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if 0 <= length <= MAX_BODY_BYTES:
            self.rfile.read(length)
        else:
            self.close_connection = True


class LiveHTTPServer(ThreadingHTTPServer):
    """One agency's endpoint; `serve_in_thread` for tests and for running beside a drop folder."""

    daemon_threads = True

    def __init__(
        self, host: str, port: int, *, agency_id: str, intake: Intake, tokens: TokenStore
    ) -> None:
        self.agency_id = agency_id
        self.intake = intake
        self.tokens = tokens
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise LiveError(
                f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port"
            ) from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = self.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}/events"

    def serve_in_thread(self) -> LiveHTTPServer:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
