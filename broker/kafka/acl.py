"""The one generator of Kafka ACLs: from the agency registry to least-privilege rules.

The topic table of DESIGN.md is the contract: "written by" is the only principal with write,
"read by" the only principals with read; consumer groups and transactional ids belong to their
owner. Everything is denied unless a rule here allows it (the cluster runs with
`allow.everyone.if.no.acl.found=false`), and nobody but the operator (a super user) may delete
records, touch another principal's groups, or create or alter topics and ACLs.

- each agency `A`: write (idempotently) `ingress.A`; read `feed.A` and `audit.checkpoints`;
  groups `feed-A`, `feed-A.*`;
- the router: read `ingress.*`; write `feed.*`, `audit.decisions`, `audit.checkpoints`,
  `quarantine`; read and write `router.state`; its group; transactional ids `<group>-*`;
- `auditor`: read `audit.*`, `quarantine`, `ingress.*`;
- `stats`: read `feed.<s>` of each `stats.*` agency; groups `stats-*`;
- `registry` (the registry authority): read and write `registry.keys`, `registry.agreements`;
  every other principal reads them (each verifies keys itself);
- the alerts service `S` (`alerts:` in the config; an agency, so it also has the agency rules
  above, whose `feed-S.` groups hold its consumer group): read and write `state.S`; write
  `quarantine` (feed records it cannot verify); transactional ids `S-*`;
- `operator`: everything (a super user, as the brokers are).

The same rules render to Strimzi `KafkaUser` resources, so a production cluster gets exactly the
rules the local one has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from broker.config import (
    TOPIC_AUDIT,
    TOPIC_CHECKPOINTS,
    TOPIC_QUARANTINE,
    TOPIC_REGISTRY_AGREEMENTS,
    TOPIC_REGISTRY_KEYS,
    TOPIC_ROUTER_STATE,
    BrokerConfig,
    topic_feed,
    topic_ingress,
)
from broker.kafka.credentials import AUDITOR, REGISTRY, STATS, principal_of

TOPIC = "topic"
GROUP = "group"
TRANSACTIONAL_ID = "transactional-id"
LITERAL = "literal"
PREFIXED = "prefixed"

READ = "read"
WRITE = "write"
DESCRIBE = "describe"


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: `principal` may do `operation` on the resource (from any host)."""

    principal: str
    resource: str
    pattern: str
    name: str
    operation: str

    def __str__(self) -> str:
        star = "*" if self.pattern == PREFIXED else ""
        return f"User:{self.principal} {self.operation} {self.resource} {self.name}{star}"


def _topic(principal: str, name: str, *ops: str, pattern: str = LITERAL) -> list[Acl]:
    return [Acl(principal, TOPIC, pattern, name, op) for op in (*ops, DESCRIBE)]


def registry_acls(config: BrokerConfig) -> list[Acl]:
    """Every ACL the registry implies, sorted, without duplicates."""
    rules: list[Acl] = []
    for agency in config.agencies:
        me = principal_of(agency.id)
        rules += _topic(me, topic_ingress(agency.id), WRITE)
        rules += _topic(me, topic_feed(agency.id), READ)
        rules.append(Acl(me, GROUP, LITERAL, f"feed-{agency.id}", READ))
        rules.append(Acl(me, GROUP, PREFIXED, f"feed-{agency.id}.", READ))
        # Signed tree heads, no personal data: an agency checks inclusion proofs against them.
        rules += _topic(me, TOPIC_CHECKPOINTS, READ)
        if agency.kind == "stats":
            rules += _topic(STATS, topic_feed(agency.id), READ)

    router = principal_of(config.router.id)
    group = config.router.group_id
    rules += _topic(router, "ingress.", READ, pattern=PREFIXED)
    rules += _topic(router, "feed.", WRITE, pattern=PREFIXED)
    for topic in (TOPIC_AUDIT, TOPIC_CHECKPOINTS, TOPIC_QUARANTINE):
        rules += _topic(router, topic, WRITE)
    rules += _topic(router, TOPIC_ROUTER_STATE, READ, WRITE)
    rules.append(Acl(router, GROUP, LITERAL, group, READ))
    rules += [Acl(router, TRANSACTIONAL_ID, PREFIXED, f"{group}-", op) for op in (WRITE, DESCRIBE)]

    if config.alerts is not None:
        alerts = principal_of(config.alerts.id)
        rules += _topic(alerts, config.alerts.state_topic, READ, WRITE)
        # Feed records it cannot verify go to quarantine, as the router's ingress records do.
        rules += _topic(alerts, TOPIC_QUARANTINE, WRITE)
        rules += [
            Acl(alerts, TRANSACTIONAL_ID, PREFIXED, config.alerts.transactional_prefix, op)
            for op in (WRITE, DESCRIBE)
        ]

    rules += _topic(AUDITOR, "audit.", READ, pattern=PREFIXED)  # also copies made for review
    rules += _topic(AUDITOR, TOPIC_QUARANTINE, READ)
    rules += _topic(AUDITOR, "ingress.", READ, pattern=PREFIXED)

    rules.append(Acl(STATS, GROUP, PREFIXED, "stats-", READ))

    # Signed keys and agreements: written by the registry authority alone, read by everyone
    # who verifies (the router, auditors, statistics and every agency). No groups: readers
    # assign the partitions and read from the beginning.
    readers = {principal_of(a.id) for a in config.agencies} | {router, AUDITOR, STATS}
    for topic in (TOPIC_REGISTRY_KEYS, TOPIC_REGISTRY_AGREEMENTS):
        rules += _topic(REGISTRY, topic, READ, WRITE)
        for reader in sorted(readers):
            rules += _topic(reader, topic, READ)
    return sorted(set(rules))


def principals(config: BrokerConfig) -> list[str]:
    """Every principal the registry names (the operator aside)."""
    return sorted({acl.principal for acl in registry_acls(config)})


@dataclass(frozen=True)
class Plan:
    """How the cluster's ACLs differ from the registry's."""

    wanted: list[Acl]
    missing: list[Acl]
    stale: list[Acl]

    @property
    def in_sync(self) -> bool:
        return not self.missing and not self.stale


def diff(wanted: Iterable[Acl], actual: Iterable[Acl]) -> Plan:
    want, have = set(wanted), set(actual)
    return Plan(sorted(want), sorted(want - have), sorted(have - want))


# -- Kafka (kafka-python's admin types) ---------------------------------------------------------


def _kafka_types() -> Any:
    from kafka.admin import _acls

    return _acls


def to_kafka(acl: Acl) -> Any:
    k = _kafka_types()
    return k.ACL(
        principal=f"User:{acl.principal}",
        host="*",
        operation=k.ACLOperation[acl.operation.upper()],
        permission_type=k.ACLPermissionType.ALLOW,
        resource_pattern=k.ResourcePattern(
            k.ResourceType[acl.resource.upper().replace("-", "_")],
            acl.name,
            k.ACLResourcePatternType[acl.pattern.upper()],
        ),
    )


def from_kafka(binding: Any) -> Acl | None:
    """Our form of a cluster ACL; None for one this generator would never write (a DENY, a
    host restriction, a non-user principal): such a rule is always reported as stale."""
    k = _kafka_types()
    if binding.permission_type != k.ACLPermissionType.ALLOW or binding.host != "*":
        return None
    if not str(binding.principal).startswith("User:"):
        return None
    pattern = binding.resource_pattern
    return Acl(
        principal=str(binding.principal)[len("User:") :],
        resource=k.ResourceType(pattern.resource_type).name.lower().replace("_", "-"),
        pattern=k.ACLResourcePatternType(pattern.pattern_type).name.lower(),
        name=pattern.resource_name,
        operation=k.ACLOperation(binding.operation).name.lower(),
    )


def any_filter() -> Any:
    k = _kafka_types()
    return k.ACLFilter(
        principal=None,
        host=None,
        operation=k.ACLOperation.ANY,
        permission_type=k.ACLPermissionType.ANY,
        resource_pattern=k.ResourcePatternFilter(
            k.ResourceType.ANY, None, k.ACLResourcePatternType.ANY
        ),
    )


def exact_filter(binding: Any) -> Any:
    k = _kafka_types()
    pattern = binding.resource_pattern
    return k.ACLFilter(
        principal=binding.principal,
        host=binding.host,
        operation=binding.operation,
        permission_type=binding.permission_type,
        resource_pattern=k.ResourcePatternFilter(
            pattern.resource_type, pattern.resource_name, pattern.pattern_type
        ),
    )


# -- Strimzi ------------------------------------------------------------------------------------

_STRIMZI_OPS = {READ: "Read", WRITE: "Write", DESCRIBE: "Describe"}
_STRIMZI_TYPES = {TOPIC: "topic", GROUP: "group", TRANSACTIONAL_ID: "transactionalId"}
_STRIMZI_PATTERNS = {LITERAL: "literal", PREFIXED: "prefix"}  # the CRD's words, not Kafka's


def strimzi_users(config: BrokerConfig, *, cluster: str = "safeguarding") -> list[dict[str, Any]]:
    """One Strimzi `KafkaUser` (SCRAM-SHA-512, authorization type simple) per principal."""
    by_principal: dict[str, dict[tuple[str, str, str], list[str]]] = {}
    for acl in registry_acls(config):
        resources = by_principal.setdefault(acl.principal, {})
        resources.setdefault((acl.resource, acl.pattern, acl.name), []).append(
            _STRIMZI_OPS[acl.operation]
        )
    users = []
    for principal, resources in sorted(by_principal.items()):
        users.append(
            {
                "apiVersion": "kafka.strimzi.io/v1",
                "kind": "KafkaUser",
                "metadata": {"name": principal, "labels": {"strimzi.io/cluster": cluster}},
                "spec": {
                    "authentication": {"type": "scram-sha-512"},
                    "authorization": {
                        "type": "simple",
                        "acls": [
                            {
                                "resource": {
                                    "type": _STRIMZI_TYPES[resource],
                                    "name": name,
                                    "patternType": _STRIMZI_PATTERNS[pattern],
                                },
                                "operations": sorted(ops),
                                "host": "*",
                            }
                            for (resource, pattern, name), ops in sorted(resources.items())
                        ],
                    },
                },
            }
        )
    return users
