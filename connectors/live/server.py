"""The live HTTP endpoint: `POST /events` with a bearer token, one event or a JSON array.

Answers (JSON): `{"accepted": N, "rejected": M, "results": [{"index", "status", "event_id" |
"reason"}]}` with status 200 when every event was accepted, 207 when some were, 422 when none
were; 401 without a valid token, 400 for a body that is not JSON (or nested too deeply, or with
a number too long), 408 when the body is not sent in time, 411 without a length, 413 for a body
over the limit, 431 for headers over the limit, 503 when too many requests are in flight.
`GET /health` answers 200 without a token (for load balancers). Every answer, error or not, is
a JSON object. Nothing a client sends is logged: only the client name and counts.

The HTTP work is Hypercorn's (an asyncio ASGI server; why it, in docs/security.md "HTTP
intake"): header parsing and its size limit, the time allowed to send complete headers, TLS.
This module is the ASGI application and the limits around it; what a body may hold (JSON depth,
number length, control characters) is `broker.inbound.parse_body`'s, the same rules as
`broker publish` and the drop folder:

- **Before the body is read**: the token is resolved from the headers alone; an unknown caller
  gets 401 and the connection is closed without a byte of its body being read. A known caller
  announcing more than `max_body_bytes` gets 413 the same way.
- **While it is read**: at most `max_body_bytes` (a chunked body is counted as it arrives) within
  `body_timeout_s` in all, else 413 / 408 and the connection is closed.
- **Concurrency**: at most `max_in_flight` requests read or processed at once (else 503 with
  `Retry-After`); decoding and publishing run on a pool of `workers` threads, so threads do not
  grow with clients. A connection that has not sent complete headers within `header_timeout_s`
  is closed (it has sent no request to answer).
- **Connections**: at most `max_connections` open at once, idle keep-alive ones included (else
  the new connection gets a JSON 503 with `Retry-After` at its first bytes and is closed), so
  file descriptors and per-connection buffers stay bounded; a flood beyond that is the
  listen backlog's, then the firewall's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from itertools import chain
from pathlib import Path
from typing import Any, cast

import h11
import hypercorn.protocol
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.utils import wrap_app

from broker.inbound import DEFAULT_LIMITS, TOO_LARGE, Limits, Rejection, parse_body
from connectors.live.exceptions import LiveError
from connectors.live.intake import Intake
from connectors.live.tokens import TokenStore

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what one client can make the endpoint hold, and for how long."""

    max_body_bytes: int = MAX_BODY_BYTES
    max_header_bytes: int = 16 * 1024  # request line and headers together
    header_timeout_s: float = 10.0  # to send complete headers (also the keep-alive idle time)
    body_timeout_s: float = 30.0  # to send the whole body
    read_timeout_s: float = 10.0  # any single read (TLS handshake included)
    max_in_flight: int = 32  # requests being read or processed at once
    max_connections: int = 512  # open connections (idle keep-alive ones included)
    workers: int = 4  # threads that decode and publish
    # JSON depth, number length and text rules: the one validation path of every inbound event
    inbound: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class TLSOptions:
    """The endpoint's certificate and key (PEM); `client_ca`: require client certificates
    signed by that CA (mutual TLS), on top of the bearer token."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def check(self) -> None:
        for what, path in (("certificate", self.cert), ("key", self.key)):
            if not path.is_file():
                raise LiveError(f"TLS {what} file {path} not found: give a PEM file")
        if self.client_ca is not None and not self.client_ca.is_file():
            raise LiveError(f"client CA file {self.client_ca} not found: give a PEM file")
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.cert), str(self.key))
            if self.client_ca is not None:
                context.load_verify_locations(str(self.client_ca))
        except (ssl.SSLError, ValueError) as exc:
            raise LiveError(
                f"cannot use TLS certificate {self.cert} with key {self.key} "
                f"({type(exc).__name__}: {getattr(exc, 'reason', None) or 'unreadable'}): "
                "give a PEM certificate and its matching private key"
            ) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tls: TLSOptions | None, *, allow_plain_http: bool) -> None:
    """Refuse plain HTTP beyond loopback unless explicitly allowed; check the TLS files."""
    if tls is not None:
        tls.check()
    elif not is_loopback(host) and not allow_plain_http:
        raise LiveError(
            f"refusing to listen on {host} over plain HTTP: bearer tokens and events "
            "would cross the network in the clear. Give --tls-cert and --tls-key, or "
            "listen on 127.0.0.1 behind a TLS-terminating proxy, or pass "
            "--allow-plain-http if the network is protected some other way"
        )


# -- JSON error answers for requests Hypercorn refuses before our application sees them ---------

# Workaround for hypercorn 0.18 (pinned): a request h11 cannot parse (a `Content-Length` that is
# not a non-negative integer, headers over `h11_max_incomplete_size`, a malformed request line)
# is answered by `H11Protocol._send_error_response` with an empty body. Every answer of this
# endpoint is JSON, so the protocol class Hypercorn instantiates is replaced by this subclass,
# which sends the same status and `Connection: close` with a JSON error.
_PROTOCOL_ERRORS = {
    400: "malformed HTTP request (request line, headers or Content-Length): "
    "send HTTP/1.1 with a non-negative Content-Length",
    431: "request headers over the limit: send fewer or shorter headers",
}


class _ConnectionCap:
    """Open connections of one server (its event loop alone touches it: no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0


class _IntakeConfig(Config):
    """Hypercorn's config and our connection cap, which reaches each connection's protocol."""

    def __init__(self, max_connections: int) -> None:
        super().__init__()
        self.connections = _ConnectionCap(max_connections)


def _json_response(status: int, message: str, extra: bytes = b"") -> bytes:
    body = json.dumps({"error": message}).encode()
    reason = {503: b"Service Unavailable"}.get(status, b"Error")
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n%s\r\n%s" % (status, reason, len(body), extra, body)
    )


class _JSONErrorsH11Protocol(H11Protocol):
    # One of these per connection. Over `max_connections` open ones, a new connection gets a
    # JSON 503 at its first bytes and is closed (hypercorn has no connection limit of its own).
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cap = getattr(self.config, "connections", None)
        self._cap: _ConnectionCap | None = None
        if isinstance(cap, _ConnectionCap) and cap.open < cap.limit:
            cap.open += 1
            self._cap = cap
        self._refused = isinstance(cap, _ConnectionCap) and self._cap is None

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.open -= 1
            self._cap = None

    async def handle(self, event: Event) -> None:
        if isinstance(event, Closed):
            self._release()
        elif self._refused and isinstance(event, RawData):
            self._refused = False
            message = "too many open connections: retry shortly"
            await self.send(RawData(data=_json_response(503, message, b"retry-after: 1\r\n")))
            await self.send(Closed())
            return
        await super().handle(event)

    async def _send_error_response(self, status_code: int) -> None:
        message = _PROTOCOL_ERRORS.get(status_code, "malformed HTTP request")
        body = json.dumps({"error": message}).encode()
        await self._send_h11_event(
            h11.Response(
                status_code=status_code,
                headers=list(
                    chain(
                        [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                        self.config.response_headers("h11"),
                    )
                ),
            )
        )
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


hypercorn.protocol.H11Protocol = _JSONErrorsH11Protocol  # type: ignore[attr-defined]


# -- the application ----------------------------------------------------------------------------


class _Refusal(Exception):
    """A request ends here with this status and JSON error; `close`: do not reuse the
    connection (its body was not read)."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        close: bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.close = close
        self.headers = headers or {}


class IntakeApp:
    """The ASGI application: routing, authentication, limits, then `Intake.submit` on a thread."""

    def __init__(
        self, *, agency_id: str, intake: Intake, tokens: TokenStore, limits: ServerLimits
    ) -> None:
        self.agency_id = agency_id
        self.intake = intake
        self.tokens = tokens
        self.limits = limits
        self.pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="intake")
        self._in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: not offered
            await send({"type": "websocket.close", "code": 1003})
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._handle(scope, receive, tracked)
        except _Refusal as refusal:
            if not started:
                await _answer(
                    tracked,
                    refusal.status,
                    {"error": refusal.error},
                    refusal.headers,
                    close=refusal.close,
                )
        except Exception as exc:  # a bug: the client still gets an answer, the log no value
            log.error("live endpoint fault: %s", type(exc).__name__)
            if not started:
                await _answer(
                    tracked,
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    {"error": "internal error: retry later, and report it if it persists"},
                    close=True,
                )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        # h11 bounds headers still arriving; headers that came complete in one read are
        # measured here.
        size = len(scope.get("raw_path", b"")) + sum(
            len(name) + len(value) + 4 for name, value in scope.get("headers", [])
        )
        if size > self.limits.max_header_bytes:
            raise _Refusal(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, _PROTOCOL_ERRORS[431])
        headers = _headers(scope)
        if path == "/health":
            if method not in ("GET", "HEAD"):
                raise _Refusal(HTTPStatus.METHOD_NOT_ALLOWED, "GET /health")
            await _answer(send, HTTPStatus.OK, {"status": "ok", "agency": self.agency_id})
            return
        if path != "/events":
            raise _Refusal(HTTPStatus.NOT_FOUND, "not found: POST /events")
        if method != "POST":
            raise _Refusal(HTTPStatus.METHOD_NOT_ALLOWED, "POST /events", headers={"Allow": "POST"})
        # Authentication from the headers alone: an unknown caller's body is never read.
        scheme, _, token = headers.get("authorization", "").partition(" ")
        client = self.tokens.client_for(token.strip()) if scheme.lower() == "bearer" else None
        if client is None:
            raise _Refusal(
                HTTPStatus.UNAUTHORIZED,
                "missing or unknown bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="broker"'},
            )
        limit = self.limits.max_body_bytes
        length_header = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if length_header is None and not chunked:
            raise _Refusal(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if length_header is not None and int(length_header) > limit:  # h11 checked the digits
            raise _Refusal(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body over {limit} bytes: send smaller batches",
            )
        if self._in_flight >= self.limits.max_in_flight:
            raise _Refusal(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "too many requests in progress: retry shortly",
                headers={"Retry-After": "1"},
            )
        self._in_flight += 1
        try:
            raw = await self._read_body(receive, limit)
            loop = asyncio.get_running_loop()
            status, answer = await loop.run_in_executor(self.pool, self._process, raw, client)
        finally:
            self._in_flight -= 1
        await _answer(send, status, answer)

    async def _read_body(self, receive: Receive, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0

        async def read_all() -> None:
            nonlocal size
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Refusal(HTTPStatus.BAD_REQUEST, "client went away")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _Refusal(
                        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"body over {limit} bytes: send smaller batches",
                    )
                parts.append(chunk)
                if not message.get("more_body", False):
                    return

        try:
            await asyncio.wait_for(read_all(), self.limits.body_timeout_s)
        except TimeoutError:
            raise _Refusal(
                HTTPStatus.REQUEST_TIMEOUT,
                f"body not received within {self.limits.body_timeout_s:g} s: send it at once",
            ) from None
        return b"".join(parts)

    def _process(self, raw: bytes, client: str) -> tuple[int, dict[str, Any]]:
        """Decode and publish (on a worker thread): the status and the JSON answer."""
        decoded = parse_body(raw, self.limits.inbound, max_bytes=self.limits.max_body_bytes)
        if isinstance(decoded, Rejection):
            status = (
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE
                if decoded.code == TOO_LARGE
                else HTTPStatus.BAD_REQUEST
            )
            return status, {"error": f"body: {decoded.message}", "code": decoded.code}
        results = self.intake.submit(decoded, client=client)
        accepted = sum(1 for r in results if r.accepted)
        if accepted == len(results):
            status = HTTPStatus.OK
        elif accepted:
            status = HTTPStatus.MULTI_STATUS
        else:
            status = HTTPStatus.UNPROCESSABLE_ENTITY
        return status, {
            "accepted": accepted,
            "rejected": len(results) - accepted,
            "results": [r.to_json() for r in results],
        }


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        headers[name.decode("latin-1").lower()] = value.decode("latin-1")
    return headers


async def _answer(
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    close: bool = False,
) -> None:
    data = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
    ]
    if close:
        raw_headers.append((b"connection", b"close"))
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": int(status), "headers": raw_headers})
    await send({"type": "http.response.body", "body": data})


# -- the server ---------------------------------------------------------------------------------


class LiveHTTPServer:
    """One agency's endpoint; `serve_in_thread` for tests and for running beside a drop folder.

    Listens on loopback over plain HTTP, or anywhere over TLS; plain HTTP beyond loopback only
    with `allow_plain_http=True`, which prints a warning.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        agency_id: str,
        intake: Intake,
        tokens: TokenStore,
        tls: TLSOptions | None = None,
        allow_plain_http: bool = False,
        limits: ServerLimits | None = None,
    ) -> None:
        self.agency_id = agency_id
        self.limits = limits or ServerLimits()
        self.tls = tls
        check_bind(host, tls, allow_plain_http=allow_plain_http)
        if tls is None and not is_loopback(host):
            warning = (
                f"WARNING: listening on {host} over plain HTTP (--allow-plain-http): tokens "
                "and events cross the network unencrypted"
            )
            log.warning("%s", warning)
            print(warning, file=sys.stderr, flush=True)
        self.app = IntakeApp(agency_id=agency_id, intake=intake, tokens=tokens, limits=self.limits)
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._socket = socket.socket(family, socket.SOCK_STREAM)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
            self._socket.listen(128)
            self._socket.setblocking(False)
        except OSError as exc:
            self._socket.close()
            raise LiveError(
                f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port"
            ) from None
        self.host = host
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._ready = threading.Event()

    def _config(self) -> Config:
        limits = self.limits
        config = _IntakeConfig(limits.max_connections)
        config.h11_max_incomplete_size = limits.max_header_bytes
        config.keep_alive_timeout = limits.header_timeout_s
        config.read_timeout = int(max(1, limits.read_timeout_s))
        config.ssl_handshake_timeout = limits.read_timeout_s
        config.graceful_timeout = 5.0
        config.alpn_protocols = ["http/1.1"]
        config.include_server_header = False
        config.accesslog = None  # request lines could carry a query string: none logged
        config.errorlog = logging.getLogger("connectors.live.http")
        if self.tls is not None:
            config.certfile = str(self.tls.cert)
            config.keyfile = str(self.tls.key)
            if self.tls.client_ca is not None:
                config.ca_certs = str(self.tls.client_ca)
                config.verify_mode = ssl.CERT_REQUIRED
        return config

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/events"

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        self._ready.set()
        sock = self._socket
        sockets = Sockets(
            secure_sockets=[sock] if self.tls is not None else [],
            insecure_sockets=[] if self.tls is not None else [sock],
            quic_sockets=[],
        )
        await worker_serve(
            wrap_app(cast(Any, self.app), 0, "asgi"),
            self._config(),
            sockets=sockets,
            shutdown_trigger=self._shutdown.wait,
        )

    def serve_forever(self) -> None:
        asyncio.run(self._serve())

    def serve_in_thread(self) -> LiveHTTPServer:
        self._thread = threading.Thread(target=self.serve_forever, name="live-http", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._shutdown is not None:
            self._loop.call_soon_threadsafe(self._shutdown.set)
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.app.pool.shutdown(wait=False, cancel_futures=True)
        self._socket.close()
