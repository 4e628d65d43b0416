"""The ACL generator's rules, checked against DESIGN.md's topic table (not against itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import BrokerConfig, load_config
from broker.kafka.acl import GROUP, PREFIXED, READ, TOPIC, WRITE, Acl, diff, registry_acls
from broker.kafka.credentials import AUDITOR, REGISTRY, STATS
from broker.scaffold import write_deployment


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> BrokerConfig:
    return load_config(write_deployment(tmp_path_factory.mktemp("dep"), bootstrap_servers="x:1"))


def _allowed(rules: list[Acl], principal: str, resource: str, name: str, op: str) -> bool:
    """What Kafka would decide for `principal` doing `op` on the named resource."""
    for rule in rules:
        if rule.principal != principal or rule.resource != resource:
            continue
        matches = name.startswith(rule.name) if rule.pattern == PREFIXED else name == rule.name
        # Kafka: READ and WRITE imply DESCRIBE.
        implied = rule.operation == op or (op == "describe" and rule.operation in (READ, WRITE))
        if matches and implied:
            return True
    return False


def test_every_topic_is_written_and_read_only_by_its_owners(config: BrokerConfig) -> None:
    rules = registry_acls(config)
    principals = {rule.principal for rule in rules}
    assert REGISTRY in principals
    router = config.router.id
    topics = {
        **{f"ingress.{a}": ({a.lower()}, {router, AUDITOR}) for a in config.agency_ids},
        **{
            f"feed.{a}": ({router}, {a.lower(), *([STATS] if a.startswith("stats.") else [])})
            for a in config.agency_ids
        },
        "audit.decisions": ({router}, {AUDITOR}),
        "audit.checkpoints": ({router}, {AUDITOR, *(a.lower() for a in config.agency_ids)}),
        "quarantine": ({router}, {AUDITOR}),
        "router.state": ({router}, {router}),
        # Written by the registry authority alone; read by everyone who verifies signatures.
        **{
            topic: (
                {REGISTRY},
                {REGISTRY, router, AUDITOR, STATS, *(a.lower() for a in config.agency_ids)},
            )
            for topic in ("registry.keys", "registry.agreements")
        },
    }
    for topic, (writers, readers) in topics.items():
        for principal in principals:
            assert _allowed(rules, principal, TOPIC, topic, WRITE) == (principal in writers), (
                principal,
                topic,
                "write",
            )
            assert _allowed(rules, principal, TOPIC, topic, READ) == (principal in readers), (
                principal,
                topic,
                "read",
            )
        assert not any(rule.operation not in (READ, WRITE, "describe") for rule in rules)


def test_groups_belong_to_their_owner_only(config: BrokerConfig) -> None:
    rules = registry_acls(config)
    police, met_group = "police.met", "feed-police.met"
    assert _allowed(rules, police, GROUP, met_group, READ)
    for other in {rule.principal for rule in rules} - {police}:
        assert not _allowed(rules, other, GROUP, met_group, READ), other
    # A suffixed agency id must not fall under another agency's group prefix.
    assert not _allowed(rules, police, GROUP, "feed-police.met_3fa9", READ)
    assert _allowed(rules, config.router.id, GROUP, config.router.group_id, READ)


def test_diff_names_missing_and_stale() -> None:
    a = Acl("p", TOPIC, "literal", "t", READ)
    b = Acl("p", TOPIC, "literal", "u", READ)
    plan = diff([a], [b])
    assert plan.missing == [a] and plan.stale == [b] and not plan.in_sync
    assert diff([a], [a]).in_sync


def test_two_ids_sharing_a_principal_are_refused(tmp_path: Path) -> None:
    from broker.config import ConfigError

    path = write_deployment(
        tmp_path / "d",
        bootstrap_servers="x:1",
        agencies={"police.met_a": "one", "police.met-a": "two"},
    )
    with pytest.raises(ConfigError, match=r"would connect to Kafka as police\.met-a"):
        load_config(path)
