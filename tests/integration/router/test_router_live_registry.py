"""Issue 13, part 3 acceptance: a key revoked through the live registry (`registry.keys`) while
the router runs stops being accepted within seconds, without a restart, and `audit replay`
(which reads the same registry) agrees with every decision."""

from __future__ import annotations

import time

import pytest
from router_helpers import (
    MET,
    WESTMINSTER,
    Deployment,
    decisions,
    event,
    publish,
    read_feed,
    router_thread,
    wait_for_decisions,
)

from broker.audit import Outcome
from broker.cli import main
from broker.registry.live import follow

pytestmark = pytest.mark.integration


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_a_key_revoked_through_the_registry_is_refused_within_5_s_and_replay_agrees(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    dep = deployment
    config = str(dep.config_path)
    council = dep.id(WESTMINSTER)
    key_id = dep.key(WESTMINSTER).key_id

    status, out = _run(capsys, "keys", "publish", "--config", config)
    assert status == 0, out
    assert "published" in out

    def missing(tag: str) -> dict[str, object]:
        subject, tag = f"child-{tag}", f"{dep.suffix}-{tag}"
        return event("child.missing.started", subject, tag, missing_type="M")

    with router_thread(dep) as service:
        assert service.live_keys is not None
        publish(dep, WESTMINSTER, [missing("before")])
        wait_for_decisions(dep, 1)

        status, out = _run(capsys, "keys", "revoke", "--config", config, council, key_id)
        assert status == 0, out
        revoked = time.monotonic()
        # Signed with the revoked key after the revocation (the publisher only knows its file).
        publish(dep, WESTMINSTER, [missing(f"after-{i}") for i in range(3)])
        wait_for_decisions(dep, 4, timeout=5.0)
        took = time.monotonic() - revoked
        assert service.live_keys.applied >= 1
        assert not service.live_keys.ignored.get("bad_signature")

    assert took < 5.0, took
    records = decisions(dep)
    by_tag = {r.event_id: r for r in records}
    assert len(records) == 4
    first = [r for r in records if r.outcome == Outcome.FORWARDED]
    quarantined = [r for r in records if r.outcome == Outcome.QUARANTINED]
    assert len(first) == 1 and len(quarantined) == 3, by_tag
    assert {r.reason for r in quarantined} == {"revoked_key"}

    # The police still verify the event the router accepted before the revocation: their
    # reader follows the same registry and judges the key at that record's receipt time.
    feed = read_feed(dep, MET)
    assert len(feed) == 1 and feed[0].event is not None, feed

    # The live view, as anyone following the registry sees it.
    live = follow(dep.config, "auditor")
    entry = live.keys.get(council, key_id)
    assert entry is not None and entry.revoked_at is not None

    status, out = _run(capsys, "audit", "replay", "--config", config, "--no-progress")
    assert status == 0, out
    assert "FINDING" not in out
    assert "4 decision(s) re-evaluated and compared" in out, out

    status, out = _run(capsys, "keys", "list", "--config", config, "--agency", council)
    assert status == 0, out
    assert key_id in out and "registry.keys: position" in out
