"""Issue 13, part 3 acceptance: a key revoked through the live registry (`registry.keys`) while
the router runs stops being accepted within seconds, without a restart, and `audit replay`
(which reads the same registry) agrees with every decision."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from router_helpers import (
    MET,
    WESTMINSTER,
    Deployment,
    copy_to_audit_topic,
    decisions,
    event,
    produce_raw,
    publish,
    read_audit,
    read_feed,
    router_thread,
    wait_for_decisions,
)

from broker.audit import Outcome
from broker.cli import main
from broker.config import TOPIC_REGISTRY_KEYS, topic_ingress
from broker.envelope import issue
from broker.envelope.keys import generate_key, load_public_key, load_signing_key
from broker.kafka.client import KafkaClients
from broker.kafka.credentials import principal_of
from broker.registry.live import (
    FETCH_MAX_WAIT_MS,
    LiveAgreements,
    LiveKeys,
    RegistryFollower,
    follow,
)
from broker.registry.records import KeyRecord
from broker.router.service import RouterService

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

    with capsys.disabled():
        print(f"\n[revocation -> 3 events quarantined in {took:.2f} s]")
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

    # Replayed on a copy of this deployment's own chains: other tests' decisions share the
    # session cluster's audit topic, with ingress topics this config does not name.
    audit = copy_to_audit_topic(dep, read_audit(dep), "decisions")
    status, out = _run(
        capsys, "audit", "replay", "--config", config, "--audit-topic", audit, "--no-progress"
    )
    assert status == 0, out
    assert "FINDING" not in out
    assert "4 decision(s) re-evaluated and compared" in out, out

    status, out = _run(capsys, "keys", "list", "--config", config, "--agency", council)
    assert status == 0, out
    assert key_id in out and "registry.keys: position" in out

    # Export: the files carry the revocation the registry holds.
    exported = dep.directory / "export"
    status, out = _run(capsys, "keys", "export", "--config", config, "--out", str(exported))
    assert status == 0, out
    revoked_file = load_public_key(exported / f"{council}.{key_id}.pub.json")
    assert revoked_file.revoked_at == entry.revoked_at


def _ignored(service: RouterService, reason: str) -> float:
    value = service.metrics.registry.get_sample_value(
        "broker_registry_ignored_total", {"reason": reason}
    )
    return value or 0.0


def test_a_registry_record_forged_with_an_issuer_key_adds_no_key(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Someone who can write `registry.keys` (here the operator, a super user; the ACLs stop
    everyone else) adds a key for Westminster, signed with the police's issuer key. The router
    ignores and counts it; an event signed with that key is quarantined as `unknown_key`."""
    dep = deployment
    council = dep.id(WESTMINSTER)
    private, public = generate_key(council, tmp_path, key_id="stolen")
    forged = KeyRecord.sign(load_public_key(public), dep.key(MET))
    # Names the authority's real key, but carries no signature of it.
    assert dep.config.registry is not None and dep.config.registry.signing_key is not None
    admin = load_signing_key(dep.config.registry.signing_key)
    unsigned = dataclasses.replace(
        forged, signer=admin.agency_id, signer_key_id=admin.key_id, signature=bytes(64)
    )
    produce_raw(
        dep,
        TOPIC_REGISTRY_KEYS,
        [(forged.kafka_key, forged.to_bytes()), (unsigned.kafka_key, unsigned.to_bytes())],
    )
    evt = event("child.missing.started", "child-forged", f"{dep.suffix}-forged", missing_type="M")
    envelope = issue(evt, issuer=council, key=load_signing_key(private))

    with router_thread(dep) as service:
        produce_raw(dep, topic_ingress(council), [(b"child-forged", envelope.to_bytes())])
        wait_for_decisions(dep, 1)
        assert service.live_keys is not None
        assert service.live_keys.keys.get(council, "stolen") is None
        assert _ignored(service, "unknown_signer") >= 1
        assert _ignored(service, "bad_signature") >= 1

    (record,) = decisions(dep)
    assert record.outcome == Outcome.QUARANTINED and record.reason == "unknown_key"


def test_rotate_publishes_a_new_key_with_the_same_roles(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dep = deployment
    council = dep.id(WESTMINSTER)
    old = dep.key(WESTMINSTER)
    status, out = _run(
        capsys, "keys", "rotate", "--config", str(dep.config_path), council, "--out", str(tmp_path)
    )
    assert status == 0, out
    key_id = out.split("key id:", 1)[1].split()[0]
    assert key_id != old.key_id
    assert "private key: " + str(tmp_path) in out
    live = follow(dep.config, "auditor")
    new = live.keys.get(council, key_id)
    assert new is not None and new.roles == ("issuer",)
    assert live.applied >= 1
    assert (dep.keys_dir / f"{council}.{key_id}.pub.json").is_file()


def test_the_registry_followers_fetches_are_held_briefly_and_a_sync_after_a_poll_confirms(
    deployment: Deployment,
) -> None:
    """`sync_for` (once per routed batch) asks for the registry's end offsets on the connection
    where the last `poll` left a fetch; a broker answers a connection's requests in order, so a
    fetch held for Kafka's default 500 ms delayed every batch by up to that (p50 449 ms at 200
    events/s, docs/performance.md). The follower's consumers, the first and a renewed one, ask
    Kafka to hold a fetch at most `FETCH_MAX_WAIT_MS`; and a sync right after a poll still reads
    to the end and confirms the view."""
    config = deployment.config
    follower = RegistryFollower(
        KafkaClients(config.kafka, principal_of(config.router.id)),
        LiveKeys.from_config(config),
        LiveAgreements.from_config(config),
    )
    try:
        assert FETCH_MAX_WAIT_MS <= 50
        assert follower._consumer.config["fetch_max_wait_ms"] == FETCH_MAX_WAIT_MS
        follower.catch_up()
        first = follower.confirmed_at
        assert first is not None
        follower._last_poll = 0.0
        follower.confirmed_at = time.monotonic()  # so that `poll` only fetches
        follower.poll()
        follower.confirmed_at = first
        follower.sync_for(int(time.time() * 1000))  # newer than the last confirmation
        assert follower.confirmed_at is not None and follower.confirmed_at > first
        follower._failed_since = time.monotonic() - 3600  # reads failing for an hour: renew
        follower._renew_if_stuck()
        assert follower._consumer.config["fetch_max_wait_ms"] == FETCH_MAX_WAIT_MS
        follower.catch_up()
        assert follower.stale_for() < 60
    finally:
        follower.close()
