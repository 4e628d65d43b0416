"""Issue 6, acceptance 6: feed delivery to a webhook that is down for a while, then up.

Every event arrives, in order per subject, none skipped; the consumer offset is committed only
after delivery, so a later run resumes exactly at the first event not delivered.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from connect_helpers import route
from router_helpers import MET, WESTMINSTER, Deployment, event, publish
from webhook_receiver import WebhookReceiver, serving

from broker.cli import main
from broker.feed import FeedReader
from connectors.subscriber import Backoff, DeliveryError, WebhookTarget, deliver_feed

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SECRET = b"0123456789abcdef0123456789abcdef"
FAST = Backoff(initial_s=0.05, factor=2.0, max_s=0.4)


def publish_missing(
    dep: Deployment, subjects: list[str], per_subject: int, tag: str
) -> dict[str, list[str]]:
    """Interleaved events of several subjects; returns each subject's event ids in order."""
    order: dict[str, list[str]] = defaultdict(list)
    events = []
    for n in range(per_subject):
        for subject in subjects:
            e = event("child.missing.started", subject, f"{tag}-{subject}-{n}", missing_type="M")
            events.append(e)
            order[subject].append(e["event_id"])
    publish(dep, WESTMINSTER, events)
    return order


def deliver(dep: Deployment, url: str, backoff: Backoff = FAST) -> Any:
    reader = FeedReader(dep.config, dep.id(MET))
    try:
        return deliver_feed(
            reader, WebhookTarget(url, secret=SECRET, timeout_s=5), follow=False, backoff=backoff
        )
    finally:
        reader.close()


def per_subject(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for e in events:
        out[e["subject"]].append(e["event_id"])
    return dict(out)


def test_target_down_then_up_gets_every_event_in_order(deployment: Deployment) -> None:
    dep = deployment
    order = publish_missing(dep, ["A-1", "B-2", "C-3"], 8, "w")
    total = sum(len(ids) for ids in order.values())
    route(dep, total)

    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(deliver(dep, url)))
    worker.start()
    time.sleep(1.5)  # the target is down: connections refused, retried with back-off
    # Then up, but failing at first (503).
    with serving(WebhookReceiver(200, port=port, fail_first=3)) as target:
        worker.join(timeout=120)
        assert not worker.is_alive()
        (stats,) = outcome
        assert stats.delivered == total
        assert stats.retries >= 4  # refused at least once, then three 503s
        assert per_subject(target.received) == dict(order)
        assert len({e["event_id"] for e in target.received}) == total  # no repeats
        assert target.keys == [e["event_id"] for e in target.received]
        assert all(e["verified"] is True for e in target.received)

        # The offsets were committed: nothing is delivered twice; new events follow.
        assert deliver(dep, url).delivered == 0
        more = publish_missing(dep, ["A-1", "D-4"], 2, "x")
        route(dep, 4)
        assert deliver(dep, url).delivered == 4
        assert per_subject(target.received[total:]) == dict(more)


def test_refused_event_is_not_skipped(deployment: Deployment, tmp_path: Path) -> None:
    dep = deployment
    order = publish_missing(dep, ["A-1"], 6, "r")["A-1"]
    route(dep, len(order))
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    with serving(WebhookReceiver(200, port=port, refuse_at=3)) as target:
        with pytest.raises(DeliveryError, match="HTTP 400"):
            deliver(dep, url)  # the target refuses the third event for good: stop there
        assert [e["event_id"] for e in target.received] == order[:2]
        stats = deliver(dep, url)  # the next run starts at the refused event
        assert stats.delivered == 4
        assert [e["event_id"] for e in target.received] == order

    # `broker feed --to-file` delivers the same feed (its own offsets: a fresh group).
    out = tmp_path / "feed.jsonl"
    argv = [
        "feed",
        "--config",
        str(dep.config_path),
        "--agency",
        dep.id(MET),
        "--to-file",
        str(out),
    ]
    assert main([*argv, "--from-beginning"]) == 0
    assert [json.loads(line)["event_id"] for line in out.read_text().splitlines()] == order


def test_redirecting_webhook_is_not_followed_and_nothing_is_counted(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15: a 302 used to be followed (the bearer token sent to the redirect target, as a
    GET without the event) and reported as delivered."""
    dep = deployment
    order = publish_missing(dep, ["R-1"], 3, "redirect")["R-1"]
    route(dep, len(order))
    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    monkeypatch.setenv("HOOK_TOKEN", "bearer-token-value")
    with (
        serving(WebhookReceiver(200)) as elsewhere,
        serving(WebhookReceiver(302, elsewhere.url)) as hook,
    ):
        argv = ["feed", "--config", str(dep.config_path), "--agency", dep.id(MET)]
        argv += ["--to-webhook", hook.url, "--webhook-token-env", "HOOK_TOKEN"]
        assert main([*argv, "--from-beginning"]) == 2  # no signing secret: refused
        assert "--webhook-secret-env" in capsys.readouterr().err
        argv += ["--webhook-secret-env", "HOOK_SECRET", "--retry-max-s", "0.2"]
        status = main([*argv, "--from-beginning", "--give-up-after", "1"])
        err = capsys.readouterr().err
        assert status == 2
        assert "HTTP 302" in err and "not followed" in err
        assert "event(s) delivered" not in err
        assert elsewhere.requests == []
        assert len(hook.requests) >= 2  # retried
        assert all(r[0] == "POST" for r in hook.requests)
    # Nothing was committed: pointed at the real receiver, every event arrives.
    with serving(WebhookReceiver(200)) as good:
        argv[argv.index(hook.url)] = good.url
        assert main([*argv, "--from-beginning"]) == 0
        assert [json.loads(r[3])["event_id"] for r in good.requests][-3:] == order
        assert f"{len(good.requests)} event(s) delivered" in capsys.readouterr().err
