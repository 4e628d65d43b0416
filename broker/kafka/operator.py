"""What the operator does to a cluster: issue and revoke credentials, plan and apply ACLs.

Everything here connects as the `operator` principal (a super user). ACLs come only from
`broker.kafka.acl.registry_acls`; a principal is granted its ACLs only while it holds a SCRAM
credential, so revoking a credential also withdraws its ACLs at once (an already open
connection can then do nothing, since Kafka authorises every request), and `apply` does not
give them back until the credential is issued again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.admin import UserScramCredentialDeletion, UserScramCredentialUpsertion
from kafka.errors import KafkaError

from broker.config import BrokerConfig
from broker.kafka import acl as acls
from broker.kafka.client import KafkaClients, KafkaUnavailable
from broker.kafka.credentials import (
    MECHANISM,
    OPERATOR,
    Credential,
    CredentialError,
    new_password,
    write_credential,
)


def operator_clients(config: BrokerConfig) -> KafkaClients:
    return KafkaClients(config.kafka, OPERATOR)


def credentialed(clients: KafkaClients) -> set[str]:
    """The principals that hold a SCRAM credential in the cluster."""
    with clients.admin() as admin:
        described = admin.describe_user_scram_credentials()
    return {user for user, info in described.items() if not info.get("error")}


def issue(clients: KafkaClients, principals: Iterable[str], out: Path) -> list[tuple[str, Path]]:
    """Give each principal a new random password (replacing any old one) and write its
    `<principal>.json` (mode 0600) into `out`."""
    made: list[tuple[str, Path]] = []
    credentials = [Credential(p, new_password()) for p in principals]
    if not credentials:
        return made
    with clients.admin() as admin:
        result = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(c.username, MECHANISM, c.password) for c in credentials]
        )
    for credential in credentials:
        error = result.get(credential.username)
        if error:
            raise CredentialError(
                f"Kafka refused the credential of {credential.username} ({error}): "
                "check the principal name"
            )
        made.append((credential.username, write_credential(out, credential)))
    return made


def revoke(clients: KafkaClients, principal: str) -> int:
    """Delete the principal's SCRAM credential and every ACL it holds; return the ACL count."""
    if principal == OPERATOR:
        raise CredentialError(
            "the operator's credential cannot be revoked with itself: issue a new one "
            "instead (`broker kafka credentials issue operator`)"
        )
    with clients.admin() as admin:
        result = admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion(principal, MECHANISM)]
        )
        error = result.get(principal)
        if error and "not found" not in error.lower() and "does not exist" not in error.lower():
            raise CredentialError(f"Kafka could not revoke {principal} ({error})")
        held = [
            binding
            for binding in _cluster_bindings(admin)
            if str(binding.principal) == f"User:{principal}"
        ]
        _delete(admin, held)
    return len(held)


@dataclass(frozen=True)
class AclPlan:
    plan: acls.Plan
    without_credential: list[str]  # principals of the registry not granted: no credential yet


def plan(
    clients: KafkaClients, config: BrokerConfig, *, issued: Iterable[str] = ()
) -> AclPlan:
    """`issued`: principals just given a credential (the cluster may not list them yet)."""
    holders = credentialed(clients) | set(issued)
    every = acls.registry_acls(config)
    wanted = [rule for rule in every if rule.principal in holders]
    waiting = sorted({rule.principal for rule in every} - holders)
    with clients.admin() as admin:
        actual = [acls.from_kafka(b) for b in _cluster_bindings(admin)]
    foreign = [rule for rule in actual if rule is None]
    diff = acls.diff(wanted, [rule for rule in actual if rule is not None])
    if foreign:
        # A DENY or host-bound rule this generator never writes: show it as stale.
        raise KafkaUnavailable(
            f"the cluster holds {len(foreign)} ACL(s) this registry never writes (DENY, "
            "host-bound or non-user principals): remove them by hand or with the Kafka tools"
        )
    return AclPlan(diff, waiting)


def apply(
    clients: KafkaClients, config: BrokerConfig, *, prune: bool = True, issued: Iterable[str] = ()
) -> AclPlan:
    """Make the cluster's ACLs match the registry: add the missing, remove the stale."""
    result = plan(clients, config, issued=issued)
    with clients.admin() as admin:
        if result.plan.missing:
            outcome = admin.create_acls([acls.to_kafka(rule) for rule in result.plan.missing])
            failed = outcome.get("failed") or []
            if failed:
                raise KafkaUnavailable(f"Kafka refused {len(failed)} ACL(s): {failed[0]}")
        if prune and result.plan.stale:
            stale = {acls.to_kafka(rule) for rule in result.plan.stale}
            _delete(admin, [b for b in _cluster_bindings(admin) if b in stale])
        _await_acls(admin, result.plan.missing)
    return result


def _await_acls(admin: Any, rules: list[acls.Acl], timeout_s: float = 15.0) -> None:
    """Wait until the cluster lists the new ACLs: they reach the brokers through the metadata
    log, and a client that connects a moment after `apply` must already be allowed."""
    deadline = time.monotonic() + timeout_s
    wanted = set(rules)
    while wanted:
        listed = {acls.from_kafka(b) for b in _cluster_bindings(admin)}
        wanted -= listed
        if not wanted:
            return
        if time.monotonic() > deadline:
            raise KafkaUnavailable(
                f"{len(wanted)} new ACL(s) were not visible after {timeout_s:.0f} s: "
                "check the brokers' logs, then run `broker acl plan`"
            )
        time.sleep(0.1)


def _cluster_bindings(admin: Any) -> list[Any]:
    try:
        bindings, error = admin.describe_acls(acls.any_filter())
    except KafkaError as exc:
        raise KafkaUnavailable(f"Kafka refused to list ACLs ({type(exc).__name__})") from None
    if error is not None and getattr(error, "errno", None):
        raise KafkaUnavailable(f"Kafka refused to list ACLs ({error})")
    return list(bindings)


def _delete(admin: Any, bindings: list[Any]) -> None:
    if bindings:
        admin.delete_acls([acls.exact_filter(b) for b in bindings])


def provision(config: BrokerConfig, *, prune: bool = False) -> list[str]:
    """Make a secured cluster ready for a deployment, as the operator: issue a credential to
    every principal of the registry that has none in `kafka.credentials_dir` (or none in the
    cluster), create the missing topics, and apply the ACLs. Returns the principals issued.

    Principals that already hold both keep their password, so deployments sharing a cluster
    and a credentials directory (the tests, the demo) do not rotate each other's.
    """
    from broker.alerts.state import alerts_topic_specs
    from broker.kafka.credentials import credential_path
    from broker.router.service import topic_specs

    if not config.kafka.secured:
        return []
    clients = operator_clients(config)
    directory = config.kafka.credentials_dir
    assert directory is not None  # a secured config names it
    holders = credentialed(clients)
    needed = [
        p
        for p in acls.principals(config)
        if p not in holders or not credential_path(directory, p).is_file()
    ]
    issue(clients, needed, directory)
    clients.ensure_topics(topic_specs(config) + alerts_topic_specs(config))
    apply(clients, config, prune=prune, issued=needed)
    return needed
