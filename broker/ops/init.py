"""`broker init DIR`: a working deployment for a set of agencies, in one directory.

Builds on `broker.scaffold.ensure_deployment` (keys with their roles, secrets, config) and adds
what an operator needs to run it on a secured Kafka: the cluster's CA certificate and the
operator's credential copied in, a credential per principal issued as the operator
(`broker.kafka.operator.provision`, which also creates the topics and applies the registry's
ACLs), the example agreements that concern these agencies, their example events, the
Prometheus alert rules and, when the agencies include the alerts service (`alerts.main`, one of
the defaults), its safeguarding alert rules and agreements (docs/alerts.md). Re-running never
overwrites a key, a secret, a credential or the config.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from broker.errors import BrokerError
from broker.kafka.credentials import OPERATOR, credential_path
from broker.kafka.local import ClusterAccess
from broker.scaffold import (
    ALERT_AGREEMENTS,
    ALERTS_ID,
    DEMO_AGENCIES,
    EXAMPLE_AGREEMENTS,
    REPO_ROOT,
    ensure_deployment,
)
from broker.scaffold import (
    ALERT_RULES as SAFEGUARDING_RULES,
)

EXAMPLE_EVENTS = REPO_ROOT / "examples" / "events"
ALERT_RULES = REPO_ROOT / "deploy" / "monitoring" / "alerts.yml"
DEFAULT_METRICS_PORT = 9464
DEFAULT_ALERTS_METRICS_PORT = 9465


class InitError(BrokerError):
    """`broker init` was given something it cannot build a deployment from."""


@dataclass
class InitReport:
    config: Path
    made: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    provision_error: str | None = None
    example_agency: str | None = None
    feed_agency: str | None = None
    alerts: bool = False


def parse_agencies(values: list[str]) -> dict[str, str]:
    """`ID=NAME` pairs (or a bare ID, named after itself); the demo agencies and the alerts
    service when none."""
    if not values:
        return {**DEMO_AGENCIES, ALERTS_ID: "Safeguarding alerts service"}
    agencies: dict[str, str] = {}
    for value in values:
        agency_id, _, name = value.partition("=")
        agencies[agency_id.strip()] = name.strip() or agency_id.strip()
    return agencies


def local_kafka_access(data_dir: Path) -> ClusterAccess:
    """How to reach a cluster `broker kafka start` runs from `data_dir`."""
    from broker.kafka.local import LocalKafka

    kafka = LocalKafka(data_dir)
    if kafka.load_state() is None:
        raise InitError(
            f"no local Kafka in {data_dir}: start one with `broker kafka start --data-dir "
            f"{data_dir}`, or give --bootstrap, --kafka-ca and --kafka-operator"
        )
    return kafka.access()


def init_deployment(
    directory: Path,
    access: ClusterAccess,
    *,
    agencies: dict[str, str],
    partitions: int = 3,
    replication: int = 1,
    metrics_port: int = DEFAULT_METRICS_PORT,
    provision: bool = True,
) -> InitReport:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    kept: list[Path] = []
    deployment_access = ClusterAccess(access.bootstrap_servers)
    if access.secured:
        assert access.ca_file is not None and access.credentials_dir is not None
        ca = directory / "kafka" / "ca.pem"
        _copy_once(access.ca_file, ca, 0o644, made, kept)
        credentials = directory / "credentials"
        credentials.mkdir(exist_ok=True)
        credentials.chmod(0o700)
        source = credential_path(access.credentials_dir, OPERATOR)
        if not source.is_file():
            raise InitError(
                f"no operator credential at {source}: give --kafka-operator (the operator.json "
                "of the cluster; for the local Kafka, <data_dir>/client/operator.json)"
            )
        _copy_once(source, credential_path(credentials, OPERATOR), 0o600, made, kept)
        deployment_access = ClusterAccess(access.bootstrap_servers, ca, credentials)
    agreements = directory / "agreements"
    agreements.mkdir(exist_ok=True)
    alerts: dict[str, object] | None = None
    examples = sorted(EXAMPLE_AGREEMENTS.glob("*.yaml"))
    if ALERTS_ID in agencies:
        # The safeguarding alerts service: its rules (copied once, to be edited here) and the
        # example agreements that feed it and carry its alerts.
        for rule in sorted(SAFEGUARDING_RULES.glob("*.yaml")):
            _copy_once(rule, directory / "alerts" / "rules" / rule.name, 0o644, made, kept)
        examples += sorted(ALERT_AGREEMENTS.glob("*.yaml"))
        alerts = {
            "id": ALERTS_ID,
            "rules_dir": "alerts/rules",
            "metrics_port": DEFAULT_ALERTS_METRICS_PORT,
        }
    for source in examples:
        # A provider may be a kind (`council`: every council), the recipient is one agency.
        known = set(agencies) | {agency_id.split(".", 1)[0] for agency_id in agencies}
        if _parties(source) <= known:
            _copy_once(source, agreements / source.name, 0o644, made, kept)
    if not any(agreements.glob("*.yaml")):
        # No example concerns these agencies: a template to start from, not loaded (its name
        # does not end in .yaml) because a default that shares data would be wrong.
        _write_once(agreements / "TEMPLATE.yaml.example", _template(agencies), made, kept)
    events = directory / "events"
    for source in sorted(EXAMPLE_EVENTS.glob("*.jsonl")):
        if source.stem in agencies:
            events.mkdir(exist_ok=True)
            _copy_once(source, events / source.name, 0o644, made, kept)
    if ALERT_RULES.is_file():
        _copy_once(ALERT_RULES, directory / "monitoring" / "alerts.yml", 0o644, made, kept)
    written = ensure_deployment(
        directory,
        bootstrap_servers=deployment_access,
        agencies=agencies,
        agreements_dir=Path("agreements"),
        partitions=partitions,
        replication=replication,
        router={"metrics_port": metrics_port},
        alerts=alerts,
        keep_config=True,
    )
    report = InitReport(written.config, made + written.made, kept + written.kept)
    report.alerts = alerts is not None
    publishers = sorted(p.stem for p in events.glob("*.jsonl")) if events.is_dir() else []
    report.example_agency = publishers[0] if publishers else None
    report.feed_agency = _a_recipient(agreements, report.example_agency, agencies)
    if provision and deployment_access.secured:
        from broker.config import load_config
        from broker.kafka.operator import provision as provision_cluster

        try:
            report.issued = provision_cluster(load_config(written.config))
        except BrokerError as exc:
            report.provision_error = str(exc)
    return report


def _parties(agreement: Path) -> set[str]:
    """The providers and the recipient an agreement file names."""
    import yaml

    data = yaml.safe_load(agreement.read_text()) or {}
    return {*map(str, data.get("providers") or []), str(data.get("recipient", ""))}


def _a_recipient(agreements: Path, provider: str | None, agencies: dict[str, str]) -> str | None:
    import yaml

    for path in sorted(agreements.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        if provider in (data.get("providers") or []) and data.get("recipient") in agencies:
            return str(data["recipient"])
    return None


def _copy_once(source: Path, target: Path, mode: int, made: list[Path], kept: list[Path]) -> None:
    """Copy `source` to `target` unless `target` exists (then it is kept as it is)."""
    if target.exists():
        kept.append(target)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle, source.open("rb") as original:
        shutil.copyfileobj(original, handle)
    made.append(target)


def _template(agencies: dict[str, str]) -> str:
    ids = list(agencies)
    provider = ids[0]
    recipient = ids[1] if len(ids) > 1 else "RECIPIENT.ID"
    return f"""\
# A data-sharing agreement to start from: fill in every field, rename to <name>.v1.yaml, check
# with `broker agreements check agreements/`, and `broker agreements explain` an event.
# docs/agreements.md explains each field. Nothing is shared without an agreement in force.
id: dsa.{provider.split(".", 1)[0]}-{recipient.split(".", 1)[0]}.example
version: 1
title: WHAT IS SHARED, BY WHOM, WITH WHOM
providers: [{provider}]
recipient: {recipient}
purpose: >
  WHY the recipient needs it.
lawful_basis:
  - "UK GDPR Art 6(1)(e): public task (THE STATUTE)"
valid_from: 2026-01-01
retention: P6Y
contacts:
  - role: Data Protection Officer
    agency: {provider}
    email: dpo@example.org
rules:
  - name: missing-children
    event_types: [child.missing.started]
    when: missing_type == "M"
    share: [subject, missing_type, missing_since, age_band]
"""


def _write_once(target: Path, text: str, made: list[Path], kept: list[Path]) -> None:
    if target.exists():
        kept.append(target)
        return
    target.write_text(text)
    made.append(target)


def next_commands(report: InitReport) -> list[str]:
    """The three commands that take the new deployment to routed events."""
    config = report.config
    commands = [f"broker doctor --config {config}", f"broker route --config {config} &"]
    if report.example_agency is not None:
        events = config.parent / "events" / f"{report.example_agency}.jsonl"
        commands.append(
            f"broker publish --config {config} --agency {report.example_agency} {events}"
        )
    return commands
