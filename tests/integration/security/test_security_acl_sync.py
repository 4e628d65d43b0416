"""Acceptance (issue 12): `broker acl plan|apply` keep the cluster's ACLs equal to the registry.

After `apply`, `plan` shows the cluster in sync; an agency added to the registry gets exactly
its rights (written out here by hand, not taken from the generator) once it holds a
credential and `apply` runs; an ACL added by hand (a police force reading a council's feed)
shows up in `plan` as stale and `apply` removes it.

`apply` makes the cluster match ONE registry, so on the shared session cluster it removes the
ACLs of every other test's deployment: the `restore_acls` fixture puts them back afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import TopicPartition
from kafka.admin._acls import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)
from kafka.errors import TopicAuthorizationFailedError
from router_helpers import MET, WESTMINSTER, event, make_deployment

from broker.cli import main
from broker.config import load_config, topic_feed, topic_ingress
from broker.envelope import generate_key
from broker.kafka.acl import GROUP, LITERAL, PREFIXED, TOPIC, Acl, any_filter, from_kafka
from broker.kafka.client import KafkaClients
from broker.kafka.credentials import OPERATOR, principal_of
from broker.kafka.local import ClusterAccess
from broker.publish import Publisher

pytestmark = pytest.mark.integration


def _bindings(access: ClusterAccess) -> list[Any]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**access.operator_options())
    try:
        bindings, _ = admin.describe_acls(any_filter())
        return list(bindings)
    finally:
        admin.close()


@pytest.fixture
def restore_acls(kafka_access: ClusterAccess) -> Iterator[None]:
    """Put back the ACLs of other deployments that `apply` removes from the shared cluster."""
    from kafka import KafkaAdminClient

    before = _bindings(kafka_access)
    yield
    now = set(_bindings(kafka_access))
    gone = [b for b in before if b not in now]
    if gone:
        admin = KafkaAdminClient(**kafka_access.operator_options())
        try:
            admin.create_acls(gone)
        finally:
            admin.close()


def _broker(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run a `broker` command in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _plan(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, list[str]]:
    code, out, err = _broker(capsys, "acl", "plan", "--config", str(config))
    assert not err.strip(), err
    return code, out.splitlines()


def _apply(capsys: pytest.CaptureFixture[str], config: Path) -> str:
    code, out, err = _broker(capsys, "acl", "apply", "--config", str(config))
    assert code == 0, err
    return out


def _cluster_rules(access: ClusterAccess, principal: str) -> set[Acl]:
    rules = {from_kafka(b) for b in _bindings(access)}
    return {r for r in rules if r is not None and r.principal == principal}


def test_plan_apply_keep_the_cluster_equal_to_the_registry(
    tmp_path: Path,
    kafka_access: ClusterAccess,
    restore_acls: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dep = make_deployment(tmp_path / "deployment", kafka_access)
    config_path = dep.config_path

    # 1. After apply, plan is in sync (exit 0, nothing missing, nothing stale).
    _apply(capsys, config_path)
    code, lines = _plan(capsys, config_path)
    assert code == 0, lines
    assert lines[-1].endswith("0 missing, 0 stale"), lines[-1]
    assert not [line for line in lines if line.startswith(("+", "-"))]

    # 2. A new agency in the registry: credential, apply, and it has exactly its rights.
    new = f"police.new_{dep.suffix}"
    new_principal = principal_of(new)
    raw = yaml.safe_load(config_path.read_text())
    private, public = generate_key(new, tmp_path / "deployment" / "private")
    public.rename(tmp_path / "deployment" / "keys" / public.name)
    raw["agencies"].append(
        {
            "id": new,
            "name": "A new police force",
            "signing_key": str(private.relative_to(tmp_path / "deployment")),
        }
    )
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    code, lines = _plan(capsys, config_path)
    assert code == 0, lines  # no credential yet: nothing to grant, and it says so
    assert f"  {new_principal}: no credential, so no ACLs" in "\n".join(lines)
    code, _, err = _broker(
        capsys, "kafka", "credentials", "issue", new, "--config", str(config_path)
    )
    assert code == 0, err
    _apply(capsys, config_path)
    assert _cluster_rules(kafka_access, new_principal) == {
        Acl(new_principal, TOPIC, LITERAL, f"ingress.{new}", "write"),
        Acl(new_principal, TOPIC, LITERAL, f"ingress.{new}", "describe"),
        Acl(new_principal, TOPIC, LITERAL, f"feed.{new}", "read"),
        Acl(new_principal, TOPIC, LITERAL, f"feed.{new}", "describe"),
        Acl(new_principal, GROUP, LITERAL, f"feed-{new}", "read"),
        Acl(new_principal, GROUP, PREFIXED, f"feed-{new}.", "read"),
        Acl(new_principal, TOPIC, LITERAL, "audit.checkpoints", "read"),
        Acl(new_principal, TOPIC, LITERAL, "audit.checkpoints", "describe"),
        # Signed public keys and agreements: every agency verifies them itself.
        Acl(new_principal, TOPIC, LITERAL, "registry.keys", "read"),
        Acl(new_principal, TOPIC, LITERAL, "registry.keys", "describe"),
        Acl(new_principal, TOPIC, LITERAL, "registry.agreements", "read"),
        Acl(new_principal, TOPIC, LITERAL, "registry.agreements", "describe"),
    }
    assert _plan(capsys, config_path)[0] == 0
    with KafkaClients(load_config(config_path).kafka, OPERATOR).admin() as admin:
        assert {topic_ingress(new), topic_feed(new)} <= set(admin.list_topics())
    # ... and those rights work: it publishes to its own ingress.
    config = load_config(config_path)
    publisher = Publisher(config, new)
    try:
        missing = {"missing_type": "M", "la_child_id": "LA-N1"}
        evt = event("child.missing.started", "child-n1", "n-1", **missing)
        report = publisher.publish_all([("event 0", evt)])
    finally:
        publisher.close()
    assert not report.rejected and report.event_ids == ["evt-n-1"]

    # 3. An ACL added by hand (the police reading a council's feed): stale, then removed.
    police = principal_of(dep.id(MET))
    council_feed = topic_feed(dep.id(WESTMINSTER))
    by_hand = ACL(
        principal=f"User:{police}",
        host="*",
        operation=ACLOperation.READ,
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(
            ResourceType.TOPIC, council_feed, ACLResourcePatternType.LITERAL
        ),
    )
    with KafkaClients(config.kafka, OPERATOR).admin() as admin:
        assert not admin.create_acls([by_hand])["failed"]
    deadline = time.monotonic() + 15
    while from_kafka(by_hand) not in _cluster_rules(kafka_access, police):
        assert time.monotonic() < deadline, "the ACL added by hand is not listed"
        time.sleep(0.1)
    code, lines = _plan(capsys, config_path)
    assert code == 1
    assert f"- User:{police} read topic {council_feed}" in lines
    assert lines[-1].endswith("0 missing, 1 stale"), lines[-1]
    assert "0 added, 1 removed" in _apply(capsys, config_path)
    assert _plan(capsys, config_path)[0] == 0
    assert from_kafka(by_hand) not in _cluster_rules(kafka_access, police)
    # ... and the police read the council's feed no more.
    consumer = KafkaClients(config.kafka, police).consumer(group_id=None)
    try:
        tp = TopicPartition(council_feed, 0)
        consumer.assign([tp])
        with pytest.raises(TopicAuthorizationFailedError):
            consumer.position(tp, timeout_ms=10000)
            consumer.poll(timeout_ms=1000)
    finally:
        consumer.close(autocommit=False)
