"""Feed delivery without Kafka: retries, back-off, commits only of what was delivered, targets."""

from __future__ import annotations

import io
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from broker.envelope import VerificationError
from broker.feed import FeedItem
from broker.schemas import SchemaRegistry
from connectors.subscriber import Backoff, DeliveryError, FileTarget, WebhookTarget, deliver_feed

SECRET = b"0123456789abcdef0123456789abcdef"
NO_WAIT = Backoff(initial_s=0.001, max_s=0.002)


@dataclass
class StubEvent:
    body: dict[str, Any]

    def to_json(self, registry: SchemaRegistry | None = None) -> dict[str, Any]:
        return self.body


def item(partition: int, offset: int, *, verified: bool = True) -> FeedItem:
    if not verified:
        return FeedItem(partition, offset, None, VerificationError("bad_signature", "forged"))
    body = {"event_id": f"e-{partition}-{offset}", "subject": f"s{partition}", "verified": True}
    return FeedItem(partition, offset, StubEvent(body))  # type: ignore[arg-type]


class StubFeed:
    topic = "feed.police.met"
    registry = SchemaRegistry.default()

    def __init__(self, *batches: list[FeedItem]) -> None:
        self._batches = list(batches)
        self.commits: list[dict[int, int]] = []

    def batches(self, *, follow: bool, poll_ms: int = 500) -> Iterator[list[FeedItem]]:
        yield from self._batches

    def commit(self, offsets: dict[int, int] | None = None) -> None:
        assert offsets is not None
        self.commits.append(dict(offsets))


class Flaky:
    """Fails `failures` times (retryable) before each success; refuses ids in `refuse`."""

    name = "stub"

    def __init__(self, failures: int = 0, refuse: frozenset[str] = frozenset()) -> None:
        self.failures = failures
        self.refuse = refuse
        self.delivered: list[str] = []
        self.attempts = 0
        self._left = failures

    def deliver(self, event: dict[str, Any]) -> None:
        self.attempts += 1
        if event["event_id"] in self.refuse:
            raise DeliveryError("webhook stub answered HTTP 400", retryable=False)
        if self._left:
            self._left -= 1
            raise DeliveryError("webhook stub unreachable", retryable=True)
        self._left = self.failures
        self.delivered.append(event["event_id"])

    def close(self) -> None:
        pass


def test_retries_until_delivered_then_commits_the_batch() -> None:
    feed = StubFeed([item(0, 0), item(1, 0), item(0, 1)], [item(1, 1)])
    target = Flaky(failures=2)
    stats = deliver_feed(feed, target, follow=False, backoff=NO_WAIT, log_out=io.StringIO())
    assert target.delivered == ["e-0-0", "e-1-0", "e-0-1", "e-1-1"]
    assert (stats.delivered, stats.retries) == (4, 8)
    assert feed.commits == [{0: 2, 1: 1}, {1: 2}]


def test_a_refused_event_stops_delivery_and_is_not_committed() -> None:
    feed = StubFeed([item(0, 0), item(1, 0), item(0, 1), item(0, 2)])
    target = Flaky(refuse=frozenset({"e-0-1"}))
    with pytest.raises(DeliveryError, match="HTTP 400"):
        deliver_feed(feed, target, follow=False, backoff=NO_WAIT, log_out=io.StringIO())
    assert target.delivered == ["e-0-0", "e-1-0"]
    assert feed.commits == [{0: 1, 1: 1}]  # the next run starts at the refused event


def test_unverified_events_are_reported_never_delivered() -> None:
    feed = StubFeed([item(0, 0), item(0, 1, verified=False), item(0, 2)])
    target = Flaky()
    log = io.StringIO()
    stats = deliver_feed(feed, target, follow=False, backoff=NO_WAIT, log_out=log)
    assert target.delivered == ["e-0-0", "e-0-2"]
    assert stats.failed_verification == 1
    assert "feed.police.met/0@1: bad_signature" in log.getvalue()
    assert "forged" not in log.getvalue()
    assert feed.commits == [{0: 3}]


def test_stopping_while_retrying_commits_only_what_was_delivered() -> None:
    feed = StubFeed([item(0, 0), item(0, 1)], [item(0, 2)])

    class DownAfterFirst(Flaky):
        def deliver(self, event: dict[str, Any]) -> None:
            if self.delivered:
                stop.set()
                raise DeliveryError("down", retryable=True)
            super().deliver(event)

    stop = threading.Event()
    stats = deliver_feed(
        feed, DownAfterFirst(), follow=False, backoff=NO_WAIT, stop=stop, log_out=io.StringIO()
    )
    assert stats.stopped and stats.delivered == 1
    assert feed.commits == [{0: 1}]


def test_give_up_after_a_while() -> None:
    feed = StubFeed([item(0, 0)])
    backoff = Backoff(initial_s=0.01, max_s=0.01, give_up_after_s=0.05)
    with pytest.raises(DeliveryError, match="gave up"):
        deliver_feed(
            feed, Flaky(failures=10**6), follow=False, backoff=backoff, log_out=io.StringIO()
        )
    assert feed.commits == [{}]


def test_backoff_grows_exponentially_to_its_cap() -> None:
    delays = list(itertools.islice(Backoff(initial_s=1, factor=2, max_s=5).delays(), 5))
    for got, base in zip(delays, [1, 2, 4, 5, 5], strict=True):
        assert base <= got <= base * 1.1


# -- targets ----------------------------------------------------------------------------------


def test_file_target_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "out" / "feed.jsonl"
    target = FileTarget(path)
    target.deliver({"event_id": "a"})
    target.close()
    FileTarget(path).deliver({"event_id": "b"})
    assert [json.loads(line)["event_id"] for line in path.read_text().splitlines()] == ["a", "b"]


class _Hook(BaseHTTPRequestHandler):
    statuses: ClassVar[list[int]] = []
    seen: ClassVar[list[tuple[str, str | None, str | None]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(
            (body["event_id"], self.headers["Idempotency-Key"], self.headers["Authorization"])
        )
        self.send_response(self.statuses.pop(0))
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_webhook_target_statuses() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks/secret-path?key=abc"
    try:
        target = WebhookTarget(url, secret=SECRET, token="tok")
        assert target.name == f"http://127.0.0.1:{server.server_address[1]}"
        _Hook.statuses[:] = [204, 503, 429, 400]
        target.deliver({"event_id": "e1"})
        for retryable in (True, True, False):
            with pytest.raises(DeliveryError) as error:
                target.deliver({"event_id": "e2"})
            assert error.value.retryable is retryable
            assert "secret-path" not in str(error.value)
        assert _Hook.seen[0] == ("e1", "e1", "Bearer tok")
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(DeliveryError) as down:
        WebhookTarget(url, secret=SECRET).deliver({"event_id": "e3"})
    assert down.value.retryable


def test_webhook_needs_an_http_url() -> None:
    with pytest.raises(Exception, match="http"):
        WebhookTarget("ftp://example.org/x", secret=SECRET)
