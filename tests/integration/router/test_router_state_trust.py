"""Issue 13: the router's changelog (`router.state`) cannot be poisoned by whoever can write to it.

Each attack of the issue is replayed against a real router on the real Kafka: records are written
to `router.state` as an intruder would (the earlier unsealed form, or sealed with a secret that is
not the router's), then a router starts, replays the changelog and routes real events. None of the
injected records may change what it does, and each is counted in
`broker_router_state_ignored_total`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
from collections.abc import Iterator

import pytest
from router_helpers import (
    GUARDIAN,
    MET,
    WESTMINSTER,
    Deployment,
    decisions,
    event,
    produce_raw,
    publish,
    read_audit,
    read_checkpoints,
    read_feed,
    read_quarantine,
    route_all,
    wait_for_decisions,
)
from service_helpers import running_service

from broker.agreements import SubjectContext
from broker.audit import Outcome, verify_log
from broker.audit.chain import chain_id
from broker.audit.cli import key_lookup
from broker.config import TOPIC_ROUTER_STATE, topic_ingress
from broker.envelope import KeyRegistry
from broker.router.changelog import MAGIC, ChangelogSeal
from broker.router.service import IGNORED_LOGGED, RouterService
from broker.router.state import encode_subject, seen_batch, subject_key

pytestmark = pytest.mark.integration

# An intruder's seal: right format, wrong secret.
FORGER = ChangelogSeal.from_secret(b"an intruder's guess at the router's secret")


def _chains(dep: Deployment, base: str) -> list[str]:
    """Every audit chain of an agency's ingress topic (one per partition)."""
    return [chain_id(topic_ingress(dep.id(base)), p) for p in range(3)]


def _ignored(service: RouterService, reason: str) -> float:
    value = service.metrics.registry.get_sample_value(
        "broker_router_state_ignored_total", {"reason": reason}
    )
    return value or 0.0


def test_injected_seen_record_does_not_make_the_real_event_a_duplicate(
    deployment: Deployment,
) -> None:
    dep = deployment
    issuer = dep.id(WESTMINSTER)
    evt = event("child.missing.started", "child-s", f"{dep.suffix}-seen", missing_type="M")
    seen = [(issuer, evt["event_id"])]
    injected: list[tuple[bytes | None, bytes | None]] = []
    for chain in _chains(dep, WESTMINSTER):
        key, value = seen_batch(chain, 0, seen)
        injected.append((key, value))  # as the router wrote it before issue 13
        injected.append((key, FORGER.seal(key, value)))  # sealed, with the wrong secret
    produce_raw(dep, TOPIC_ROUTER_STATE, injected)

    publish(dep, WESTMINSTER, [evt])
    service = route_all(dep, 1)

    [record] = decisions(dep)
    assert (record.outcome, record.reason) == (Outcome.FORWARDED, None)
    police = read_feed(dep, MET)
    assert [item.event.event_id for item in police if item.event] == [evt["event_id"]]
    assert read_quarantine(dep) == []
    assert _ignored(service, "unauthenticated") >= 3
    assert _ignored(service, "bad_mac") >= 3


def test_injected_guardian_relationship_sends_nothing_to_the_guardian(
    deployment: Deployment,
) -> None:
    dep = deployment
    guardian = dep.id(GUARDIAN)
    known = {"la_child_id": "LA-H", "age_band": "13-15"}
    # A real appointment, routed by a first router: its sealed relationship is committed.
    appointed = event(
        "guardian.appointed", "child-h", f"{dep.suffix}-ga", guardian_service=guardian, **known
    )
    publish(dep, WESTMINSTER, [appointed])
    route_all(dep, 1)

    # An intruder "appoints" the guardian to another child on every chain.
    forged = encode_subject(SubjectContext(guardians=frozenset({guardian})))
    injected: list[tuple[bytes | None, bytes | None]] = []
    for chain in _chains(dep, WESTMINSTER):
        key = subject_key(chain, "child-x")
        injected += [(key, forged), (key, FORGER.seal(key, forged))]
    produce_raw(dep, TOPIC_ROUTER_STATE, injected)

    # A second router rebuilds its state from the changelog, then routes both children's events.
    unappointed = event(
        "child.missing.started", "child-x", f"{dep.suffix}-mx", missing_type="M", la_child_id="X"
    )
    appointed_child = event(
        "child.missing.started", "child-h", f"{dep.suffix}-mh", missing_type="M", **known
    )
    publish(dep, WESTMINSTER, [unappointed, appointed_child])
    service = route_all(dep, 3)

    to_guardian = [item for item in read_feed(dep, GUARDIAN)]
    assert all(item.event is not None for item in to_guardian)
    assert sorted(item.event.event_id for item in to_guardian if item.event) == sorted(
        [appointed["event_id"], appointed_child["event_id"]]
    ), "only the real appointment entitles the guardian (and it survived the restart)"
    police = sorted(item.event.event_id for item in read_feed(dep, MET) if item.event)
    assert police == sorted([unappointed["event_id"], appointed_child["event_id"]])
    by_event = {r.event_id: r for r in decisions(dep)}
    recipients = {r.recipient for r in by_event[unappointed["event_id"]].recipients}
    assert dep.id(GUARDIAN) not in recipients
    assert _ignored(service, "unauthenticated") >= 3
    assert _ignored(service, "bad_mac") >= 3


def test_junk_in_router_state_neither_stops_nor_slows_a_start(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys that are not UTF-8, tombstones, values of every wrong shape, and many of
    them: the router starts, routes, and logs one summary line (never a key or a value). (A
    record without a key cannot be written: Kafka refuses it on a compacted topic.)"""
    dep = deployment
    rng = random.Random(13)
    secret_ref = "Jane-Doe-2011-05-01"  # stands for personal data an intruder put in a key
    junk: list[tuple[bytes | None, bytes | None]] = [
        (b"\xff\xfe\x80", b"a key that is not UTF-8"),
        (b"\xc3\x28|x", None),
    ]
    for chain in _chains(dep, WESTMINSTER):
        for kind in "cbkp":
            key = f"{kind}|{chain}|{secret_ref}".encode()
            bare = f"{kind}|{chain}".encode()
            junk += [
                (bare, None),  # a tombstone
                (bare, b""),
                (bare, MAGIC + os.urandom(40)),  # looks sealed, is not
                (bare, MAGIC + b"\x01" + b"{}" + os.urandom(32)),
                (key, os.urandom(rng.randrange(1, 300))),
                (key, b'{"guardians": ["x"], "nrm_referrers": []}'),
                (bare + b"\xff", os.urandom(20)),
            ]
    aimed = [f"{k}|{c}" for c in _chains(dep, WESTMINSTER) for k in "cbkp"]
    for i in range(10_000):  # bulk: half aimed at our chains, half anywhere
        if i % 2:
            key: bytes = f"{rng.choice(aimed)}|{i}".encode()
        else:
            key = os.urandom(rng.randrange(1, 40))
        junk.append((key, os.urandom(rng.randrange(0, 200)) if i % 7 else None))
    produce_raw(dep, TOPIC_ROUTER_STATE, junk)

    evt = event("child.missing.started", "child-j", f"{dep.suffix}-junk", missing_type="M")
    publish(dep, WESTMINSTER, [evt])
    with caplog.at_level(logging.INFO, logger="broker.router.service"):
        service = route_all(dep, 1)

    [record] = decisions(dep)
    assert record.outcome == Outcome.FORWARDED
    assert [i.event.event_id for i in read_feed(dep, MET) if i.event] == [evt["event_id"]]

    messages = [r.getMessage() for r in caplog.records if r.name == "broker.router.service"]
    summaries = [m for m in messages if re.match(r"ignored \d+ router\.state record\(s\)", m)]
    assert len(summaries) == 1, messages
    ignored = int(summaries[0].split()[1])
    assert ignored >= 4 * 3 * 7 + 5_000, summaries[0]
    one_by_one = [m for m in messages if "ignored, not applied" in m]
    assert len(one_by_one) <= IGNORED_LOGGED
    assert all(re.search(r"partition \d+ offset \d+", m) for m in one_by_one)
    assert secret_ref not in caplog.text
    total = sum(
        _ignored(service, reason)
        for reason in ("bad_key", "tombstone", "unauthenticated", "bad_mac", "bad_value")
    )
    assert total == ignored
    # Not slowed unduly: the whole changelog (junk and every other test's state) replays fast.
    [recovered] = [m for m in messages if m.startswith("recovered ")]
    seconds = float(re.search(r"in ([\d.]+) s", recovered).group(1))  # type: ignore[union-attr]
    assert seconds < 20.0, recovered


@contextlib.contextmanager
def _router(dep: Deployment, **options: bool) -> Iterator[RouterService]:
    """A router running in this process until the block ends (with service options)."""
    service = RouterService(dep.config, instance_id="t0", **options)
    with running_service(service, "router-t0"):
        yield service


def test_state_from_before_sealing_is_adopted_once_on_request(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upgrade: a router that wrote its changelog unsealed (as before issue 13), then
    `--adopt-unsealed-state` once, then ordinary starts: nothing is forgotten on the way."""
    dep = deployment
    guardian = dep.id(GUARDIAN)
    first = [
        event("guardian.appointed", "child-u", f"{dep.suffix}-ga", guardian_service=guardian),
        event("child.missing.started", "child-u", f"{dep.suffix}-m1", missing_type="M"),
    ]
    publish(dep, WESTMINSTER, first)
    with monkeypatch.context() as patch:  # the router before sealing
        patch.setattr(
            RouterService,
            "_send_state",
            lambda self, producer, key, payload: producer.send(
                TOPIC_ROUTER_STATE, key=key, value=payload
            ),
        )
        with _router(dep):
            wait_for_decisions(dep, 2)

    # Adopting: the repeated event is still a duplicate, the appointment still counts.
    second = event("child.missing.started", "child-u", f"{dep.suffix}-m2", missing_type="M")
    publish(dep, WESTMINSTER, [first[1], second])
    with _router(dep, adopt_unsealed_state=True):
        wait_for_decisions(dep, 4)
    # An ordinary start afterwards needs no adoption: the state was written back sealed.
    third = event("child.missing.started", "child-u", f"{dep.suffix}-m3", missing_type="M")
    publish(dep, WESTMINSTER, [first[1], third])
    with _router(dep) as service:
        wait_for_decisions(dep, 6)

    outcomes = [(r.event_id, r.outcome) for r in decisions(dep)]
    assert outcomes == [
        (first[0]["event_id"], Outcome.FORWARDED),
        (first[1]["event_id"], Outcome.FORWARDED),
        (first[1]["event_id"], Outcome.DUPLICATE),
        (second["event_id"], Outcome.FORWARDED),
        (first[1]["event_id"], Outcome.DUPLICATE),
        (third["event_id"], Outcome.FORWARDED),
    ]
    to_guardian = sorted(i.event.event_id for i in read_feed(dep, GUARDIAN) if i.event)
    assert to_guardian == sorted(e["event_id"] for e in (*first, second, third))
    # One chain, continued across the upgrade, every record under a signed checkpoint.
    keys = KeyRegistry.from_dir(dep.keys_dir)
    report = verify_log(
        [(r.partition, r.offset, r.value or b"") for r in read_audit(dep)],
        [(r.partition, r.offset, r.value or b"") for r in read_checkpoints(dep)],
        key_lookup(keys, dep.config.router.id),
    )
    assert report.ok, report.findings
    assert _ignored(service, "unauthenticated") >= 1  # the unsealed originals, until compacted
