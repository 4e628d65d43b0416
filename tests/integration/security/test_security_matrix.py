"""Acceptance (issue 12): who may do what on the real secured Kafka, cell by cell.

Every principal kind (a council, the police, the router, `auditor`, `stats`, `operator`)
attempts every operation that matters on every topic family, group and transactional id, and
each attempt must end exactly as the table below says: ALLOW (it succeeded) or DENY (Kafka
refused it with an authorization error). A timeout or any other error fails the cell too.

The table is written out from DESIGN.md ("Topics", "Security model"), not computed from
`broker.kafka.acl.registry_acls`: a rule widened in the generator makes a DENY cell here an
ALLOW, and the test fails. Clients without a valid identity (a wrong password, a CA the
client does not trust, no credentials at all) never get a session: they are checked at the
end, once per kind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError
from router_helpers import MET, STATS, WESTMINSTER, Deployment, make_deployment
from security_helpers import ALLOW, DENY, POLICY, Actor, actors, harmless_acl

from broker.config import (
    TOPIC_AUDIT,
    TOPIC_CHECKPOINTS,
    TOPIC_QUARANTINE,
    TOPIC_REGISTRY_AGREEMENTS,
    TOPIC_REGISTRY_KEYS,
    TOPIC_ROUTER_STATE,
    topic_feed,
    topic_ingress,
)
from broker.kafka import client as client_module
from broker.kafka.acl import exact_filter
from broker.kafka.client import KafkaAuthError, KafkaClients
from broker.kafka.credentials import (
    AUDITOR,
    OPERATOR,
    REGISTRY,
    Credential,
    principal_of,
    write_credential,
)
from broker.kafka.credentials import (
    STATS as STATS_PRINCIPAL,
)
from broker.kafka.local import ClusterAccess
from broker.kafka.tls import make_local_ca

pytestmark = pytest.mark.integration

# -- the contract, written out ----------------------------------------------------------------

COUNCIL, POLICE, ROUTER, AUDITORS, STATISTICS, REGISTRY_AUTHORITY, OPERATORS = (
    "council",
    "police",
    "router",
    "auditor",
    "stats",
    "registry",
    "operator",
)
ROLES = (COUNCIL, POLICE, ROUTER, AUDITORS, STATISTICS, REGISTRY_AUTHORITY, OPERATORS)

# Topic families, by the names of DESIGN.md's table, for one council, one police force and the
# national statistics agency (a `stats.*` agency whose feed the `stats` principal collects).
INGRESS_COUNCIL, INGRESS_POLICE = "ingress.<council>", "ingress.<police>"
FEED_COUNCIL, FEED_POLICE, FEED_STATS = "feed.<council>", "feed.<police>", "feed.<stats>"
TOPICS = (
    INGRESS_COUNCIL,
    INGRESS_POLICE,
    FEED_COUNCIL,
    FEED_POLICE,
    FEED_STATS,
    TOPIC_AUDIT,
    TOPIC_CHECKPOINTS,
    TOPIC_QUARANTINE,
    TOPIC_ROUTER_STATE,
    TOPIC_REGISTRY_KEYS,
    TOPIC_REGISTRY_AGREEMENTS,
)
# Registry topics are not in SHARED: the registry authority's allowed produce writes a junk
# record there, which every live view ignores (malformed) and counts; nobody else may write.
REGISTRY_TOPICS = (TOPIC_REGISTRY_KEYS, TOPIC_REGISTRY_AGREEMENTS)
SHARED = (TOPIC_AUDIT, TOPIC_CHECKPOINTS, TOPIC_QUARANTINE, TOPIC_ROUTER_STATE)

# "written by" = the only principal with write.
WRITERS: dict[str, set[str]] = {
    INGRESS_COUNCIL: {COUNCIL},
    INGRESS_POLICE: {POLICE},
    FEED_COUNCIL: {ROUTER},
    FEED_POLICE: {ROUTER},
    FEED_STATS: {ROUTER},
    TOPIC_AUDIT: {ROUTER},
    TOPIC_CHECKPOINTS: {ROUTER},
    TOPIC_QUARANTINE: {ROUTER},
    TOPIC_ROUTER_STATE: {ROUTER},  # the router's changelog (DESIGN "The routing service")
    # DESIGN: "written by registry authority".
    TOPIC_REGISTRY_KEYS: {REGISTRY_AUTHORITY},
    TOPIC_REGISTRY_AGREEMENTS: {REGISTRY_AUTHORITY},
}
# "read by" = the only principals with read.
READERS: dict[str, set[str]] = {
    # Auditors "replay ingress and re-evaluate every decision" (DESIGN "Audit").
    INGRESS_COUNCIL: {ROUTER, AUDITORS},
    INGRESS_POLICE: {ROUTER, AUDITORS},
    FEED_COUNCIL: {COUNCIL},
    FEED_POLICE: {POLICE},
    # The statistics collection reads the national statistics agency's feed on its behalf.
    FEED_STATS: {STATISTICS},
    TOPIC_AUDIT: {AUDITORS},
    # DESIGN's table: "auditors, agencies" (signed tree heads, no personal data).
    TOPIC_CHECKPOINTS: {AUDITORS, COUNCIL, POLICE},
    # DESIGN says "operators" (the operator is a super user); the audit tools also show
    # quarantine records to auditors, who may read every ingress record anyway.
    TOPIC_QUARANTINE: {AUDITORS},
    TOPIC_ROUTER_STATE: {ROUTER},
    # DESIGN says "read by router"; Security model: every recipient and auditor verifies keys
    # itself, so all of them follow the registry (and the authority reads its own topic).
    **{
        t: {REGISTRY_AUTHORITY, ROUTER, AUDITORS, STATISTICS, COUNCIL, POLICE}
        for t in REGISTRY_TOPICS
    },
}
# Groups "prefixed by their owner": (group, the topic its offsets are for) -> owner.
FEED_GROUP_COUNCIL, FEED_GROUP_POLICE = "feed-<council>", "feed-<police>"
ROUTER_GROUP, STATS_GROUP = "<router group>", "stats-<name>"
GROUPS: dict[str, tuple[str, set[str]]] = {
    FEED_GROUP_COUNCIL: (FEED_COUNCIL, {COUNCIL}),
    FEED_GROUP_POLICE: (FEED_POLICE, {POLICE}),
    ROUTER_GROUP: (INGRESS_COUNCIL, {ROUTER}),
    STATS_GROUP: (FEED_STATS, {STATISTICS}),
}
PRODUCE, CONSUME, COMMIT = "produce", "consume", "commit offsets"
GROUP_OFFSETS = "read the group's offsets"
DELETE_RECORDS, ALTER_RETENTION = "delete records", "set retention.ms=1"
CREATE_TOPIC, CREATE_ACL, DESCRIBE_ACLS = "create a topic", "create an ACL", "list ACLs"
ROUTER_TXN = "init transactions as <router group>-*"
CLUSTER = "cluster"


def expected(role: str, operation: str, resource: str) -> str:
    """The contract's answer. The operator is a super user: everything is allowed to it.
    Nobody else deletes records, alters topics, creates topics or ACLs, or touches a group
    or transactional id that is not its own."""
    if role == OPERATORS:
        if operation == DELETE_RECORDS and resource in (TOPIC_ROUTER_STATE, *REGISTRY_TOPICS):
            return POLICY  # Kafka deletes no records from a compacted topic, for anyone
        return ALLOW
    allowed = {
        PRODUCE: lambda: role in WRITERS[resource],
        CONSUME: lambda: role in READERS[resource],
        COMMIT: lambda: role in GROUPS[resource][1],
        GROUP_OFFSETS: lambda: role in GROUPS[resource][1],
        ROUTER_TXN: lambda: role == ROUTER,
    }.get(operation, lambda: False)()
    return ALLOW if allowed else DENY


def expected_table() -> dict[tuple[str, str, str], str]:
    cells: dict[tuple[str, str, str], str] = {}
    for role in ROLES:
        for topic in TOPICS:
            for operation in (PRODUCE, CONSUME, DELETE_RECORDS, ALTER_RETENTION):
                cells[(role, operation, topic)] = expected(role, operation, topic)
        for group in GROUPS:
            for operation in (COMMIT, GROUP_OFFSETS):
                cells[(role, operation, group)] = expected(role, operation, group)
        for operation in (CREATE_TOPIC, CREATE_ACL, DESCRIBE_ACLS, ROUTER_TXN):
            cells[(role, operation, CLUSTER)] = expected(role, operation, CLUSTER)
    return cells


def test_the_table_is_least_privilege() -> None:
    """The table itself, against the prose: each topic one writer, no agency reads another's
    feed or any ingress, and nothing but the operator may delete or create."""
    table = expected_table()
    for topic in TOPICS:
        writers = {r for r in ROLES if table[(r, PRODUCE, topic)] == ALLOW} - {OPERATORS}
        assert len(writers) == 1, (topic, writers)
    for agency in (COUNCIL, POLICE):
        readable = {t for t in TOPICS if table[(agency, CONSUME, t)] == ALLOW}
        own = FEED_COUNCIL if agency == COUNCIL else FEED_POLICE
        # checkpoints: signed heads, no values; registry: public keys and agreements
        assert readable == {own, TOPIC_CHECKPOINTS, *REGISTRY_TOPICS}
    for (role, operation, _), outcome in table.items():
        if operation in (DELETE_RECORDS, ALTER_RETENTION, CREATE_TOPIC, CREATE_ACL):
            assert (outcome != DENY) == (role == OPERATORS)


# -- running it --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, kafka_access: ClusterAccess) -> Deployment:
    return make_deployment(tmp_path_factory.mktemp("security-matrix") / "deployment", kafka_access)


def _names(dep: Deployment) -> dict[str, str]:
    """The deployment's real name of each family, group and role principal."""
    config = dep.config
    council, police, stats = dep.id(WESTMINSTER), dep.id(MET), dep.id(STATS)
    return {
        INGRESS_COUNCIL: topic_ingress(council),
        INGRESS_POLICE: topic_ingress(police),
        FEED_COUNCIL: topic_feed(council),
        FEED_POLICE: topic_feed(police),
        FEED_STATS: topic_feed(stats),
        **{t: t for t in (*SHARED, *REGISTRY_TOPICS)},
        FEED_GROUP_COUNCIL: f"feed-{council}",
        FEED_GROUP_POLICE: f"feed-{police}",
        ROUTER_GROUP: config.router.group_id,
        STATS_GROUP: f"stats-{dep.suffix}",
        COUNCIL: principal_of(council),
        POLICE: principal_of(police),
        ROUTER: principal_of(config.router.id),
        AUDITORS: AUDITOR,
        STATISTICS: STATS_PRINCIPAL,
        REGISTRY_AUTHORITY: REGISTRY,
        OPERATORS: OPERATOR,
    }


@pytest.fixture(scope="module")
def cast(deployment: Deployment) -> Iterator[dict[str, Actor]]:
    names = _names(deployment)
    router_txn = f"{deployment.config.router.group_id}-security-matrix"
    principals = {
        role: (names[role], f"{router_txn}-{role}" if role in (ROUTER, OPERATORS) else None)
        for role in ROLES
    }
    with actors(deployment.config.kafka, principals) as made:
        yield made


def _leaders_and_starts(operator: Actor, topics: list[str]) -> dict[str, tuple[int, int]]:
    """(leader, log start offset) of partition 0 of each topic, as the operator sees them."""
    leaders = {
        t["name"]: next(p["leader_id"] for p in t["partitions"] if p["partition_index"] == 0)
        for t in operator.admin.describe_topics(topics)
    }
    starts = operator.consumer.beginning_offsets([TopicPartition(t, 0) for t in topics])
    return {tp.topic: (leaders[tp.topic], offset) for tp, offset in starts.items()}


def _row(
    role: str,
    actor: Actor,
    operator: Actor,
    names: dict[str, str],
    where: dict[str, tuple[int, int]],
    suffix: str,
) -> dict[tuple[str, str, str], str]:
    """Every operation of one principal, each attempted once."""
    row: dict[tuple[str, str, str], str] = {}
    for topic in TOPICS:
        name = names[topic]
        leader, start = where[name]
        if topic in SHARED and actor.transactional is not None:
            # Other tests read these topics: an allowed write is aborted, never seen.
            row[(role, PRODUCE, topic)] = actor.attempt(partial(actor.produce_aborted, name))
        else:
            row[(role, PRODUCE, topic)] = actor.attempt(partial(actor.produce, name))
        row[(role, CONSUME, topic)] = actor.attempt(partial(actor.consume, name))
        row[(role, DELETE_RECORDS, topic)] = actor.attempt(
            partial(actor.delete_records, name, start, leader)
        )
        row[(role, ALTER_RETENTION, topic)] = actor.attempt(partial(actor.alter_retention, name))
    for group, (topic, _) in GROUPS.items():
        row[(role, COMMIT, group)] = actor.attempt(
            partial(actor.commit, names[group], names[topic])
        )
        row[(role, GROUP_OFFSETS, group)] = actor.attempt(
            partial(actor.read_group_offsets, names[group])
        )
    new_topic = f"ingress.security-test-{suffix}-{role}"
    row[(role, CREATE_TOPIC, CLUSTER)] = actor.attempt(partial(actor.create_topic, new_topic))
    acl = harmless_acl(f"{suffix}-{role}")
    row[(role, CREATE_ACL, CLUSTER)] = actor.attempt(partial(actor.create_acl, acl))
    if row[(role, CREATE_ACL, CLUSTER)] == ALLOW:
        operator.admin.delete_acls([exact_filter(acl)])
    row[(role, DESCRIBE_ACLS, CLUSTER)] = actor.attempt(actor.describe_acls)
    txn = f"{names[ROUTER_GROUP]}-security-test-{role}"
    row[(role, ROUTER_TXN, CLUSTER)] = actor.attempt(partial(actor.init_transactions, txn))
    return row


def test_authorisation_matrix(deployment: Deployment, cast: dict[str, Actor]) -> None:
    names = _names(deployment)
    table = expected_table()
    where = _leaders_and_starts(cast[OPERATORS], [names[t] for t in TOPICS])
    actual: dict[tuple[str, str, str], str] = {}
    began = time.monotonic()
    for role in ROLES:
        actual.update(_row(role, cast[role], cast[OPERATORS], names, where, deployment.suffix))
    took = time.monotonic() - began

    wrong = {
        cell: f"expected {want}, got {actual.get(cell)}"
        for cell, want in table.items()
        if actual.get(cell) != want
    }
    assert not wrong, "\n".join(f"{' / '.join(cell)}: {why}" for cell, why in wrong.items())
    assert set(actual) == set(table)
    slowest = sorted((t for a in cast.values() for t in a.timings), reverse=True)[:3]
    print(f"\n[{len(table)} cells in {took:.1f} s; slowest: {slowest}]")


def test_nothing_an_allowed_cell_did_is_visible(
    deployment: Deployment, cast: dict[str, Actor]
) -> None:
    """The matrix left no topic behind and no record that other tests would read."""
    names = _names(deployment)
    topics = set(cast[OPERATORS].admin.list_topics())
    assert not {t for t in topics if t.startswith("ingress.security-test-")}
    for topic in SHARED:
        name = names[topic]
        consumer = cast[OPERATORS].clients.consumer(group_id=None, consumer_timeout_ms=1500)
        try:
            parts = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or []]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            assert not [r for r in consumer if r.key == b"security-test/junk"], topic
        finally:
            consumer.close(autocommit=False)


# -- clients without a valid identity ---------------------------------------------------------


@pytest.fixture
def quick_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check each principal again, as a new process would (this one already connected as
    them), and give up on a refused bootstrap after 3 s instead of 8 (the same code path)."""
    monkeypatch.setattr(client_module, "_CHECKED", set())
    monkeypatch.setattr(client_module, "_CHECK_TIMEOUT_MS", 3000)


def test_a_wrong_password_gets_no_session(
    deployment: Deployment, tmp_path: Path, quick_check: None
) -> None:
    police = principal_of(deployment.id(MET))
    write_credential(tmp_path, Credential(police, "not-the-password"))
    settings = deployment.config.kafka.model_copy(update={"credentials_dir": tmp_path})
    began = time.monotonic()
    with pytest.raises(KafkaAuthError) as refused:
        KafkaClients(settings, police)
    assert time.monotonic() - began < 15
    message = str(refused.value)
    assert police in message and "refused the credential" in message
    assert "credentials issue" in message and "\n" not in message


def test_a_client_that_does_not_trust_the_cluster_ca_gets_no_session(
    deployment: Deployment, tmp_path: Path, quick_check: None
) -> None:
    police = principal_of(deployment.id(MET))
    other_ca = make_local_ca(tmp_path / "other-ca").ca_cert
    settings = deployment.config.kafka.model_copy(update={"ssl_cafile": other_ca})
    began = time.monotonic()
    with pytest.raises(KafkaAuthError) as refused:
        KafkaClients(settings, police)
    assert time.monotonic() - began < 15
    message = str(refused.value)
    assert "TLS" in message and "CERTIFICATE_VERIFY_FAILED" in message
    assert "ssl_cafile" in message and "\n" not in message


@pytest.mark.parametrize("protocol", ["SSL", "PLAINTEXT"])
def test_a_client_without_credentials_gets_no_session(
    deployment: Deployment, protocol: str
) -> None:
    """Anonymous access is off: TLS without SASL, or plaintext, never gets past the handshake,
    so there is no session to authorise anything in (not even listing the topics)."""
    settings = deployment.config.kafka
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "security_protocol": protocol,
        "bootstrap_timeout_ms": 3000,
    }
    if protocol == "SSL":
        options["ssl_cafile"] = str(settings.ssl_cafile)
    began = time.monotonic()
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaConsumer(topic_ingress(deployment.id(WESTMINSTER)), **options)
    assert time.monotonic() - began < 10
    # ... while the cluster answers an authenticated principal at once.
    police = principal_of(deployment.id(MET))
    with KafkaClients(settings, police).admin() as admin:
        assert topic_feed(deployment.id(MET)) in admin.list_topics()
