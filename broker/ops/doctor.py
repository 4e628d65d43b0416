"""`broker doctor --config C`: what is wrong with a deployment, one line per problem.

Checks, in order: the agreements (each parses, and names a recipient and providers that are in
the registry), the keys in `keys_dir` (every agency, the router and the registry authority hold a
key of their role that is valid now and for the next `expiry_days`), the Kafka CA certificate's
expiry, then Kafka: reachable and the credential accepted, every topic of the deployment there,
the cluster's ACLs equal to what `broker.kafka.acl.registry_acls` implies (via the operator's
plan: missing, stale, principals with no credential), and this host's clock against the
brokers' (the append time Kafka gives a probe record on the `ops.clock` topic).

Kafka checks connect as the operator when `operator.json` is in `kafka.credentials_dir` (the
ACL comparison needs it); without it the ACL check says it was not done (never "ok").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from broker.config import BrokerConfig
from broker.errors import BrokerError

CLOCK_TOPIC = "ops.clock"  # one partition, LogAppendTime, an hour's retention: doctor's probe
DEFAULT_EXPIRY_DAYS = 30.0
DEFAULT_MAX_SKEW_S = 30.0


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"{'ok     ' if self.ok else 'PROBLEM'} {self.check}: {self.message}"


def diagnose(
    config: BrokerConfig,
    *,
    expiry_days: float = DEFAULT_EXPIRY_DAYS,
    max_skew_s: float = DEFAULT_MAX_SKEW_S,
    now: datetime | None = None,
) -> list[Finding]:
    now = now or datetime.now(UTC)
    findings = _agreements(config)
    findings += _keys(config, now, timedelta(days=expiry_days))
    findings += _certificate(config, now, timedelta(days=expiry_days))
    findings += _kafka(config, max_skew_s)
    return findings


def _agreements(config: BrokerConfig) -> list[Finding]:
    from broker.agreements.loader import read_dir

    sourced, problems = read_dir(config.agreements_dir)
    found = [Finding("agreement", False, str(problem)) for problem in problems]
    known = set(config.agency_ids)
    kinds = {agency.kind for agency in config.agencies}
    for one in sourced:
        agreement = one.agreement
        if agreement.recipient not in known:
            found.append(
                Finding(
                    "agreement",
                    False,
                    f"{one.file.name} ({agreement.key}): recipient {agreement.recipient} is not "
                    "in the agency registry, so nothing is forwarded under it: add the agency "
                    "to `agencies` in the config or remove the agreement",
                )
            )
        for provider in agreement.providers:
            if provider not in known and provider not in kinds:  # a kind: all of that kind
                found.append(
                    Finding(
                        "agreement",
                        False,
                        f"{one.file.name} ({agreement.key}): provider {provider} is not in the "
                        "agency registry: add it to `agencies` or remove it from the agreement",
                    )
                )
    if not found:
        found.append(Finding("agreements", True, f"{len(sourced)} agreement(s), parties known"))
    return found


def _keys(config: BrokerConfig, now: datetime, window: timedelta) -> list[Finding]:
    from broker.envelope.errors import KeyFileError
    from broker.envelope.keys import (
        ROLE_CHECKPOINT,
        ROLE_ISSUER,
        ROLE_REGISTRY_ADMIN,
        ROLE_ROUTER,
        KeyRegistry,
    )

    try:
        keys = KeyRegistry.from_dir(config.keys_dir)
    except KeyFileError as exc:
        return [Finding("key", False, f"{config.keys_dir}: {exc}")]
    needed: list[tuple[str, str]] = [(a, ROLE_ISSUER) for a in config.agency_ids]
    needed += [(config.router.id, ROLE_ROUTER), (config.router.id, ROLE_CHECKPOINT)]
    if config.registry is not None:
        needed.append((config.registry.id, ROLE_REGISTRY_ADMIN))
    found: list[Finding] = []
    for owner, role in needed:
        valid = [
            k
            for k in keys.keys(owner)
            if role in k.roles
            and k.valid_from <= now
            and (k.valid_until is None or k.valid_until > now)
            and (k.revoked_at is None or k.revoked_at > now)
        ]
        if not valid:
            found.append(
                Finding(
                    "key",
                    False,
                    f"{owner} has no {role} key valid now in {config.keys_dir}: generate one "
                    f"(`broker keys rotate --config CONFIG {owner} --out private/`)",
                )
            )
            continue
        ends = [k.valid_until for k in valid]
        last = None if None in ends else max(e for e in ends if e is not None)
        if last is not None and last - now < window:
            days = (last - now).total_seconds() / 86400
            found.append(
                Finding(
                    "key",
                    False,
                    f"the {role} key of {owner} expires at {last:%Y-%m-%dT%H:%MZ} (in "
                    f"{days:.1f} days): rotate it now (`broker keys rotate --config CONFIG "
                    f"{owner} --out private/`, docs/operations.md)",
                )
            )
    if not found:
        found.append(Finding("keys", True, f"{len(needed)} signing role(s) held by valid keys"))
    return found


def _certificate(config: BrokerConfig, now: datetime, window: timedelta) -> list[Finding]:
    if not config.kafka.secured or config.kafka.ssl_cafile is None:
        return []
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(config.kafka.ssl_cafile.read_bytes())
    except (OSError, ValueError) as exc:
        return [Finding("certificate", False, f"{config.kafka.ssl_cafile}: unreadable ({exc})")]
    found = []
    for certificate in certificates:
        ends = certificate.not_valid_after_utc
        if ends - now < window:
            found.append(
                Finding(
                    "certificate",
                    False,
                    f"the Kafka CA certificate {certificate.subject.rfc4514_string()} in "
                    f"{config.kafka.ssl_cafile} expires at {ends:%Y-%m-%dT%H:%MZ}: renew it "
                    "and hand the new ca.pem out (docs/operations.md)",
                )
            )
    return found or [Finding("certificate", True, "Kafka CA certificate valid beyond the window")]


def _kafka(config: BrokerConfig, max_skew_s: float) -> list[Finding]:
    from broker.kafka.client import KafkaClients
    from broker.kafka.credentials import OPERATOR, credential_path, principal_of

    settings = config.kafka
    as_operator = (
        not settings.secured
        or (settings.credentials_dir is not None
        and credential_path(settings.credentials_dir, OPERATOR).is_file())
    )
    principal = OPERATOR if as_operator else principal_of(config.router.id)
    try:
        clients = KafkaClients(settings, principal)
        with clients.admin() as admin:
            topics = set(admin.list_topics())
    except BrokerError as exc:
        return [
            Finding("kafka", False, str(exc)),
            Finding("kafka", False, "topics, ACLs and clock not checked: Kafka did not answer"),
        ]
    found = [Finding("kafka", True, f"reachable at {settings.bootstrap_servers} as {principal}")]
    found += _topics(config, topics)
    found += _acls(config, clients) if as_operator else [
        Finding(
            "acl",
            False,
            f"not checked: no operator.json in {settings.credentials_dir} (the ACL "
            "comparison needs the operator); run doctor where the operator's credential is",
        )
    ]
    found += _clock(clients, max_skew_s) if as_operator else []
    return found


def _topics(config: BrokerConfig, existing: set[str]) -> list[Finding]:
    from broker.router.service import topic_specs

    missing = [spec.name for spec in topic_specs(config) if spec.name not in existing]
    found = [
        Finding(
            "topic",
            False,
            f"{name} is missing: create it with `broker acl apply --config CONFIG`",
        )
        for name in missing
    ]
    return found or [Finding("topics", True, f"all {len(topic_specs(config))} topics exist")]


def _acls(config: BrokerConfig, clients: object) -> list[Finding]:
    from broker.kafka import operator
    from broker.kafka.client import KafkaClients

    assert isinstance(clients, KafkaClients)
    try:
        result = operator.plan(clients, config)
    except BrokerError as exc:
        return [Finding("acl", False, str(exc))]
    found = [
        Finding("acl", False, f"missing {rule}: run `broker acl apply --config CONFIG`")
        for rule in result.plan.missing
    ]
    found += [
        Finding(
            "acl",
            False,
            f"stale {rule} (the registry does not imply it): `broker acl apply` removes it",
        )
        for rule in result.plan.stale
    ]
    found += [
        Finding(
            "credential",
            False,
            f"{principal} has no Kafka credential, so no ACLs: `broker kafka credentials "
            f"issue --config CONFIG {principal}`",
        )
        for principal in result.without_credential
    ]
    return found or [
        Finding("acls", True, f"{len(result.plan.wanted)} ACL(s), as the registry implies")
    ]


def _clock(clients: object, max_skew_s: float) -> list[Finding]:
    """This host's clock against the brokers': the append time of a probe record, compared
    with the middle of the local send and acknowledgement times."""
    from broker.kafka.client import KafkaClients, TopicSpec

    assert isinstance(clients, KafkaClients)
    try:
        clients.ensure_topics([TopicSpec(CLOCK_TOPIC, 1, append_time=True)])
        producer = clients.producer(linger_ms=0)
        try:
            sent = time.time()
            metadata = producer.send(CLOCK_TOPIC, b"doctor").get(timeout=10)
            acked = time.time()
        finally:
            producer.close(timeout=5)
    except Exception as exc:  # any failure of the probe is a finding, not a crash
        return [Finding("clock", False, f"not measured ({type(exc).__name__})")]
    skew = metadata.timestamp / 1000 - (sent + acked) / 2
    uncertainty = (acked - sent) / 2
    if abs(skew) - uncertainty > max_skew_s:
        ahead = "behind" if skew > 0 else "ahead of"
        return [
            Finding(
                "clock",
                False,
                f"this host's clock is {abs(skew):.1f} s {ahead} Kafka's (more than "
                f"{max_skew_s:.0f} s): synchronise it (NTP); events whose issued_at is more "
                "than router.max_clock_skew_s from Kafka's time are quarantined (clock_skew)",
            )
        ]
    return [Finding("clock", True, f"within {abs(skew) + uncertainty:.2f} s of Kafka's")]


def problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not f.ok]
