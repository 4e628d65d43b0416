"""Issue 15, part 2: the live HTTP endpoint against clients that do not play by the rules.

Slow clients, oversized or lying bodies, hostile JSON, TLS and the bind rule. Every refusal is a
JSON answer; threads do not grow with clients; unauthenticated bodies are never read.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_fakes import FakePublisher, missing_started

from broker.kafka.tls import make_local_ca
from connectors.live import COUNCIL_EVENT_TYPES, Intake, LiveError, TokenStore, new_token
from connectors.live.server import LiveHTTPServer, ServerLimits, TLSOptions

AGENCY = "council.E09000033"


@pytest.fixture
def publisher(tmp_path: Path) -> FakePublisher:
    return FakePublisher(AGENCY, tmp_path / "keys")


@pytest.fixture
def token_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "tokens.txt"
    return path, new_token(path, "mosaic")


def start(publisher: Any, token_file: tuple[Path, str], **options: Any) -> LiveHTTPServer:
    host = options.pop("host", "127.0.0.1")
    return LiveHTTPServer(
        host,
        0,
        agency_id=AGENCY,
        intake=Intake(publisher, COUNCIL_EVENT_TYPES),
        tokens=TokenStore.load(token_file[0]),
        **options,
    ).serve_in_thread()


@pytest.fixture
def small(publisher: FakePublisher, token_file: tuple[Path, str]) -> Iterator[LiveHTTPServer]:
    limits = ServerLimits(
        max_body_bytes=64 * 1024, header_timeout_s=1.0, body_timeout_s=1.0, read_timeout_s=5
    )
    server = start(publisher, token_file, limits=limits)
    try:
        yield server
    finally:
        server.stop()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=20)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """One HTTP/1.1 response: status, headers (lower-case names), the JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    assert headers.get("content-type") == "application/json", headers
    return status, headers, json.loads(rest[:length])


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (reads to EOF, within the socket timeout)."""
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def request(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, str], Any]:
    with connect(port) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        return read_response(sock)


def post_head(token: str | None, length: int | str | None, extra: str = "") -> str:
    lines = ["POST /events HTTP/1.1", "Host: x"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return "\r\n".join(lines) + "\r\n" + extra


def test_unauthenticated_bodies_are_never_read(
    publisher: FakePublisher, token_file: tuple[Path, str]
) -> None:
    """40 callers announce 8 MiB each without a valid token: each is answered 401 from the
    headers alone (no body byte sent), and the connection is closed, not drained."""
    server = start(publisher, token_file)
    try:
        socks = [connect(server.port) for _ in range(40)]
        for i, sock in enumerate(socks):
            token = None if i % 2 else "forged-token"
            sock.sendall(post_head(token, 8 * 1024 * 1024).encode() + b"\r\n")
        for sock in socks:
            status, headers, body = read_response(sock)
            assert status == 401 and "bearer token" in body["error"]
            assert headers.get("connection") == "close"
            assert closed_by_server(sock)
            sock.close()
        assert publisher.published == []
    finally:
        server.stop()


def test_lying_or_missing_lengths_get_json_errors(
    small: LiveHTTPServer, token_file: tuple[Path, str]
) -> None:
    token = token_file[1]
    # Content-Length: -1 with a valid token: refused by the HTTP parser, answered in JSON.
    status, headers, body = request(small.port, post_head(token, -1), b"[]")
    assert status == 400 and "Content-Length" in body["error"]
    assert headers["connection"] == "close"
    status, _, body = request(small.port, post_head(token, "12, 13"), b"[]")
    assert status == 400
    # No length at all: 411.
    status, _, body = request(small.port, post_head(token, None))
    assert status == 411 and "Content-Length" in body["error"]
    # Announced over the limit: 413 before a byte of the body.
    status, _, body = request(small.port, post_head(token, 64 * 1024 + 1))
    assert status == 413 and str(64 * 1024) in body["error"]
    # Chunked, growing past the limit: 413 once the limit is passed.
    with connect(small.port) as sock:
        sock.sendall(post_head(token, None, "Transfer-Encoding: chunked\r\n").encode() + b"\r\n")
        chunk = b"x" * 16384
        try:
            for _ in range(8):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = read_response(sock)
        assert status == 413
    # Headers over the limit: 431 in JSON.
    status, _, body = request(small.port, post_head(token, 2, "X-Pad: " + "a" * 40_000 + "\r\n"))
    assert status == 431 and "headers" in body["error"]
    with connect(small.port) as sock:  # still arriving when over the limit
        sock.sendall(b"POST /events HTTP/1.1\r\nX-Pad: " + b"a" * 20_000)
        status, _, body = read_response(sock)
        assert status == 431 and "headers" in body["error"]


def test_hostile_json_gets_a_json_4xx_and_no_traceback(
    publisher: FakePublisher,
    token_file: tuple[Path, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = token_file[1]
    caplog.set_level(logging.DEBUG)
    server = start(publisher, token_file)  # the default limits: 8 MiB bodies
    try:
        nested = b"[" * 100_000 + b"]" * 100_000
        digits = b'{"n": ' + b"9" * 100_000 + b"}"
        in_batch = b'[{"n": 1' + b"0" * 100_000 + b"}]"
        for body, word in ((nested, "deep"), (digits, "number"), (in_batch, "number")):
            status, _, answer = request(server.port, post_head(token, len(body)), body)
            assert status == 400 and word in answer["error"], answer
    finally:
        server.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert publisher.published == []


def test_slow_clients_are_cut_off_with_bounded_threads(
    small: LiveHTTPServer, token_file: tuple[Path, str]
) -> None:
    """300 half-sent requests hold no thread each, do not stop a well-behaved client, and are
    closed once the header time has passed."""
    before = threading.active_count()
    socks = []
    for _ in range(300):
        sock = connect(small.port)
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Le")
        socks.append(sock)
    during = threading.active_count()
    # One well-behaved client is still served while the 300 hang.
    status, _, body = request(small.port, "GET /health HTTP/1.1\r\nHost: x\r\n")
    assert status == 200 and body["status"] == "ok"
    assert threading.active_count() <= before + small.limits.workers
    assert during <= before + small.limits.workers
    for sock in socks:
        assert closed_by_server(sock)
        sock.close()
    # A body sent too slowly (headers complete, then a trickle) gets 408.
    with connect(small.port) as sock:
        sock.sendall(post_head(token_file[1], 100).encode() + b"\r\n" + b"[")
        status, _, body = read_response(sock)
        assert status == 408 and "within" in body["error"]


class BlockingPublisher(FakePublisher):
    """Publishes only once `release` is set: holds a request in flight."""

    def __init__(self, agency: str, directory: Path) -> None:
        super().__init__(agency, directory)
        self.release = threading.Event()
        self.entered = threading.Event()

    def publish(self, event: Any, *, where: str = "event") -> str:
        self.entered.set()
        self.release.wait(20)
        return super().publish(event, where=where)


def test_requests_in_flight_are_capped(tmp_path: Path, token_file: tuple[Path, str]) -> None:
    publisher = BlockingPublisher(AGENCY, tmp_path / "k")
    server = start(publisher, token_file, limits=ServerLimits(max_in_flight=1))
    token = token_file[1]
    body = json.dumps(missing_started()).encode()
    try:
        first = connect(server.port)
        first.sendall(post_head(token, len(body)).encode() + b"\r\n" + body)
        assert publisher.entered.wait(10)
        status, headers, answer = request(server.port, post_head(token, len(body)), body)
        assert status == 503 and headers["retry-after"] == "1"
        publisher.release.set()
        status, _, answer = read_response(first)
        assert status == 200 and answer["accepted"] == 1
        first.close()
    finally:
        publisher.release.set()
        server.stop()


def test_every_path_and_method_answers_json(
    small: LiveHTTPServer, token_file: tuple[Path, str]
) -> None:
    assert request(small.port, "GET /events HTTP/1.1\r\nHost: x\r\n")[0] == 405
    assert request(small.port, "DELETE /health HTTP/1.1\r\nHost: x\r\n")[0] == 405
    assert request(small.port, "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n")[0] == 404
    status, _, body = request(small.port, "GARBAGE\r\n")
    assert status == 400 and "malformed" in body["error"]


# -- binding and TLS ---------------------------------------------------------------------------


def test_plain_http_beyond_loopback_needs_the_explicit_flag(
    publisher: FakePublisher, token_file: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(LiveError, match=r"plain HTTP.*--tls-cert"):
        start(publisher, token_file, host="0.0.0.0")
    server = start(publisher, token_file, host="0.0.0.0", allow_plain_http=True)
    try:
        assert "WARNING" in capsys.readouterr().err
        status, _, _ = request(server.port, "GET /health HTTP/1.1\r\nHost: x\r\n")
        assert status == 200
    finally:
        server.stop()


def test_tls_and_client_certificates(
    publisher: FakePublisher, token_file: tuple[Path, str], tmp_path: Path
) -> None:
    files = make_local_ca(tmp_path / "ca")
    pem = files.broker_keystore  # key and certificate (for 127.0.0.1), one PEM file
    token = token_file[1]
    body = json.dumps(missing_started()).encode()

    def https(context: ssl.SSLContext, port: int) -> tuple[int, Any]:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=20) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            sock.sendall(post_head(token, len(body)).encode() + b"\r\n" + body)
            status, _, answer = read_response(sock)  # type: ignore[arg-type]
            return status, answer

    trusting = ssl.create_default_context(cafile=str(files.ca_cert))
    # Beyond loopback with TLS: allowed without the plain-HTTP flag.
    server = start(publisher, token_file, host="0.0.0.0", tls=TLSOptions(pem, pem))
    try:
        assert server.url.startswith("https://")
        status, answer = https(trusting, server.port)
        assert status == 200 and answer["accepted"] == 1
        with pytest.raises(ssl.SSLCertVerificationError):
            https(ssl.create_default_context(), server.port)  # the system CAs do not know it
        with connect(server.port) as sock:  # plain HTTP to the TLS port: no answer in clear
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"HTTP/1.1 200" not in sock.recv(4096)
    finally:
        server.stop()

    # Mutual TLS: a client without a certificate the CA signed is refused at the handshake.
    server = start(publisher, token_file, tls=TLSOptions(pem, pem, client_ca=files.ca_cert))
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https(trusting, server.port)
        with_cert = ssl.create_default_context(cafile=str(files.ca_cert))
        with_cert.load_cert_chain(str(pem))
        status, answer = https(with_cert, server.port)
        assert status == 200
    finally:
        server.stop()
    with pytest.raises(LiveError, match="not found"):
        TLSOptions(tmp_path / "none.pem", pem).check()
    with pytest.raises(LiveError, match="matching private key"):
        TLSOptions(files.ca_cert, files.ca_cert).check()


def test_stop_frees_the_port(publisher: FakePublisher, token_file: tuple[Path, str]) -> None:
    server = start(publisher, token_file)
    port = server.port
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_http_events_pass_the_shared_inbound_rules(
    publisher: FakePublisher, token_file: tuple[Path, str]
) -> None:
    """The HTTP intake validates through `broker.inbound` (the publish and drop-folder rules):
    a NUL, escape or bidi override is refused per event; the good event still goes through."""
    server = start(publisher, token_file)
    hostile_name = "Bob\u0000\u202e\u001b[31m"
    batch = [
        missing_started("C1"),
        missing_started("X\u0000'; DROP TABLE--"),
        missing_started("C3", risk_level=hostile_name),
    ]
    raw = json.dumps(batch).encode()
    try:
        status, _, answer = request(server.port, post_head(token_file[1], len(raw)), raw)
        dup = b'{"event_type": "a", "event_type": "b"}'
        dup_status, _, dup_answer = request(server.port, post_head(token_file[1], len(dup)), dup)
    finally:
        server.stop()
    assert status == 207
    assert [r["status"] for r in answer["results"]] == ["accepted", "rejected", "rejected"]
    assert answer["results"][1]["code"] == "bad_identifier"
    assert answer["results"][2]["code"] in ("bad_text", "bad_identifier")
    assert "Bob" not in json.dumps(answer) and "DROP" not in json.dumps(answer)
    assert len(publisher.published) == 1
    assert dup_status == 400 and dup_answer["code"] == "duplicate_key"


def test_open_connections_are_capped(
    publisher: FakePublisher, token_file: tuple[Path, str]
) -> None:
    limits = ServerLimits(max_connections=3, header_timeout_s=30.0, read_timeout_s=30.0)
    server = start(publisher, token_file, limits=limits)
    held = [connect(server.port) for _ in range(3)]
    try:
        for sock in held:  # each is a connection the server has taken (a partial request)
            sock.sendall(b"POST /events HTTP/1.1\r\n")
        time.sleep(0.5)
        status, headers, answer = request(server.port, post_head(None, 0))
        assert status == 503 and headers["retry-after"] == "1"
        assert "too many open connections" in answer["error"]
        held.pop().close()  # one slot frees: the next caller is served (401: no token)
        deadline = time.monotonic() + 10
        while (status := request(server.port, post_head(None, 0))[0]) == 503:
            assert time.monotonic() < deadline, "the freed connection was never released"
            time.sleep(0.1)
        assert status == 401
    finally:
        for sock in held:
            sock.close()
        server.stop()
