"""Shared helpers of the router acceptance tests (issue 5).

Isolation on one session broker: topic names are a contract (`ingress.<agency>`, `feed.<agency>`),
so each test gets its own *agencies*: every demo agency id with a random suffix
(`police.met` -> `police.met_3fa9c1`), the example agreements rewritten for those ids, keys, a
config and a consumer group of its own. Ingress and feed topics are then private to the test; the
shared topics (`audit.decisions`, `audit.checkpoints`, `quarantine`, `router.state`) are keyed by
ingress topic or chain id, and the readers here keep only the records of the test's own chains.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from kafka import TopicPartition
from service_helpers import running_service

from broker.audit import DecisionRecord, Outcome, verify_log
from broker.audit.reader import Message, TopicNotFound, TopicReader
from broker.config import (
    TOPIC_AUDIT,
    TOPIC_CHECKPOINTS,
    TOPIC_QUARANTINE,
    BrokerConfig,
    load_config,
    topic_ingress,
)
from broker.envelope import Envelope, KeyRegistry, SigningKey, issue
from broker.feed import FeedItem, FeedReader
from broker.kafka.client import KafkaClients, TopicSpec
from broker.kafka.credentials import OPERATOR
from broker.kafka.local import ClusterAccess
from broker.kafka.operator import provision
from broker.publish import Publisher, agency_key
from broker.router.service import RouterService, topic_specs
from broker.scaffold import DEMO_AGENCIES, EXAMPLE_AGREEMENTS, REPO_ROOT, write_deployment
from broker.schemas import SchemaRegistry

# The demo agencies plus one that no agreement names: it must never receive anything.
BASE_AGENCIES: dict[str, str] = {
    **DEMO_AGENCIES,
    "police.btp": "British Transport Police (no data-sharing agreement)",
}
WESTMINSTER = "council.E09000033"
LAMBETH = "council.E09000022"
SOUTHWARK = "council.E09000028"
MET = "police.met"
BTP = "police.btp"
NRM = "nrm.sca"
GUARDIAN = "guardian.ictg"
STATS = "stats.national"

_ID_RE = re.compile(r"(?<![\w.])(" + "|".join(re.escape(a) for a in BASE_AGENCIES) + r")(?![\w-])")


@dataclass
class Deployment:
    """One test's private deployment: agencies with a suffix, keys, agreements and config."""

    directory: Path
    config_path: Path
    suffix: str

    @property
    def config(self) -> BrokerConfig:
        return load_config(self.config_path)

    def id(self, base: str) -> str:
        """This test's id of a demo agency (`police.met` -> `police.met_<suffix>`)."""
        return f"{base}_{self.suffix}"

    def base(self, agency_id: str) -> str:
        return agency_id.removesuffix(f"_{self.suffix}")

    @property
    def agency_ids(self) -> list[str]:
        return [self.id(a) for a in BASE_AGENCIES]

    @property
    def ingress_topics(self) -> list[str]:
        return [topic_ingress(a) for a in self.agency_ids]

    def key(self, base: str) -> SigningKey:
        return agency_key(self.config, self.id(base))

    @property
    def keys_dir(self) -> Path:
        return self.directory / "keys"


def make_deployment(
    directory: Path,
    access: ClusterAccess,
    *,
    partitions: int = 3,
    router: Mapping[str, object] | None = None,
    replication: int = 1,
) -> Deployment:
    """Write a deployment whose agencies and consumer group no other test uses.

    `replication` is the replication factor of the topics it creates (3 on a three-node
    cluster, so that losing a node loses no partition)."""
    suffix = uuid.uuid4().hex[:8]
    agreements = directory / "agreements"
    agreements.mkdir(parents=True)
    for source in sorted(EXAMPLE_AGREEMENTS.glob("*.yaml")):
        text = _ID_RE.sub(lambda m: f"{m.group(1)}_{suffix}", source.read_text())
        (agreements / source.name).write_text(text)
    config_path = write_deployment(
        directory,
        bootstrap_servers=access,
        agencies={f"{a}_{suffix}": name for a, name in BASE_AGENCIES.items()},
        agreements_dir=agreements,
        partitions=partitions,
        router={"group_id": f"router-{suffix}", "checkpoint_interval_s": 2.0, **(router or {})},
    )
    if replication != 1:
        raw = yaml.safe_load(config_path.read_text())
        raw["kafka"]["topics"]["replication_factor"] = replication
        config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    provision(load_config(config_path))  # credentials, topics and ACLs, as the operator
    return Deployment(directory, config_path, suffix)


# -- events -------------------------------------------------------------------------------------

_REGISTRY = SchemaRegistry.default()


def event_fields(event_type: str, tag: str, **overrides: Any) -> dict[str, Any]:
    """Every field of `event_type` set to a valid, recognisable JSON value, then `overrides`."""
    values: dict[str, Any] = {}
    for name, info in _REGISTRY.fields(event_type).items():
        kind = info.item_kind if info.is_array else info.kind
        allowed = info.allowed_values
        value: Any
        if allowed:
            value = allowed[len(name) % len(allowed)]
        elif kind == "string":
            value = f"{name}-{tag}"
        elif kind == "date":
            value = (date(2012, 1, 1) + timedelta(days=len(name))).isoformat()
        elif kind == "timestamp":
            value = f"2026-11-24T17:{len(name):02d}:00Z"
        elif kind == "bool":
            value = True
        else:
            value = 2012
        values[name] = [value] if info.is_array else value
    unknown = set(overrides) - set(values)
    assert not unknown, f"no such field(s) of {event_type}: {unknown}"
    values.update(overrides)
    return values


def event(event_type: str, subject: str, tag: str, **overrides: Any) -> dict[str, Any]:
    """An EVENTS.md JSON event with a fixed event id derived from `tag`."""
    return {
        "event_type": event_type,
        "event_id": f"evt-{tag}",
        "subject": subject,
        "occurred_at": "2026-11-24T18:05:00Z",
        "fields": event_fields(event_type, tag, **overrides),
    }


def publish(dep: Deployment, issuer_base: str, events: Iterable[Mapping[str, Any]]) -> list[str]:
    """Sign and publish events as one agency; every one must be accepted."""
    publisher = Publisher(dep.config, dep.id(issuer_base))
    try:
        report = publisher.publish_all((f"event {i}", e) for i, e in enumerate(events))
    finally:
        publisher.close()
    assert not report.rejected, report.rejected
    return report.event_ids


def signed(dep: Deployment, issuer_base: str, evt: Mapping[str, Any]) -> Envelope:
    return issue(evt, issuer=dep.id(issuer_base), key=dep.key(issuer_base))


def create_topics(dep: Deployment) -> None:
    """Every topic of the deployment, as the router would create them."""
    KafkaClients(dep.config.kafka, OPERATOR).ensure_topics(topic_specs(dep.config))


def produce_raw(
    dep: Deployment, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]
) -> None:
    """Produce `(key, value)` records as they are (for input no publisher would make)."""
    create_topics(dep)
    producer = KafkaClients(dep.config.kafka, OPERATOR).producer()
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


# -- reading topics (read_committed) ---------------------------------------------------------


def read_topic(dep: Deployment, topic: str, *, key_prefixes: Iterable[str] = ()) -> list[Message]:
    """Every committed record of `topic` up to its current end, in partition then offset order."""
    prefixes = tuple(p.encode() for p in key_prefixes)
    with TopicReader(KafkaClients(dep.config.kafka, OPERATOR)) as reader:
        try:
            records = [
                r
                for r in reader.read_topic(topic)
                if not prefixes or (r.key or b"").startswith(prefixes)
            ]
        except TopicNotFound:
            return []
    return sorted(records, key=lambda r: (r.partition, r.offset))


def our_chains(dep: Deployment) -> list[str]:
    """Key prefixes of this deployment's audit chains and quarantine records."""
    return [f"{t}/" for t in dep.ingress_topics]


def read_audit(dep: Deployment) -> list[Message]:
    return read_topic(dep, TOPIC_AUDIT, key_prefixes=our_chains(dep))


def read_checkpoints(dep: Deployment) -> list[Message]:
    return read_topic(dep, TOPIC_CHECKPOINTS, key_prefixes=our_chains(dep))


def read_quarantine(dep: Deployment) -> list[Message]:
    return read_topic(dep, TOPIC_QUARANTINE, key_prefixes=our_chains(dep))


def decisions(dep: Deployment) -> list[DecisionRecord]:
    return [DecisionRecord.from_bytes(r.value or b"") for r in read_audit(dep)]


def ingress_counts(dep: Deployment) -> dict[tuple[str, int], int]:
    """End offset of every ingress partition of the deployment (records published)."""
    consumer = KafkaClients(dep.config.kafka, OPERATOR).consumer(group_id=None)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in dep.ingress_topics
            for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        ends = consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): n for tp, n in ends.items()}
    finally:
        consumer.close(autocommit=False)


def read_feed(dep: Deployment, base: str) -> list[FeedItem]:
    """Everything committed to an agency's feed, each verified end to end by `FeedReader`."""
    reader = FeedReader(dep.config, dep.id(base), from_beginning=True)
    try:
        return [item for batch in reader.batches(follow=False, poll_ms=200) for item in batch]
    finally:
        reader.close()


def feeds(dep: Deployment) -> dict[str, list[FeedItem]]:
    return {base: read_feed(dep, base) for base in BASE_AGENCIES}


class AuditTail:
    """Counts this deployment's audit decisions as they are committed (reads each record once)."""

    def __init__(self, dep: Deployment) -> None:
        self.prefixes = tuple(f"{t}/".encode() for t in dep.ingress_topics)
        create_topics(dep)
        self.consumer = KafkaClients(dep.config.kafka, OPERATOR).consumer(group_id=None)
        parts = self.consumer.partitions_for_topic(TOPIC_AUDIT) or set()
        self.consumer.assign([TopicPartition(TOPIC_AUDIT, p) for p in sorted(parts)])
        self.count = 0

    def poll(self) -> int:
        for records in self.consumer.poll(timeout_ms=100).values():
            self.count += sum(1 for r in records if (r.key or b"").startswith(self.prefixes))
        return self.count

    def drain(self) -> int:
        """Count everything committed so far (after a kill nothing more will come)."""
        while True:
            before = self.count
            if self.poll() == before and self.poll() == before:
                return self.count

    def wait_beyond(self, count: int, timeout: float, router: RouterProcess | None = None) -> None:
        """Wait until more than `count` decisions were committed."""
        deadline = time.monotonic() + timeout
        while self.poll() <= count:
            output = router.output() if router is not None else ""
            assert router is None or router.running, f"the router stopped:\n{output}"
            assert time.monotonic() < deadline, (
                f"{self.count} decisions, waiting for {count + 1}, in {timeout:.0f} s\n{output}"
            )

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def wait_for_decisions(
    dep: Deployment,
    count: int,
    *,
    timeout: float = 120.0,
    router: RouterProcess | None = None,
) -> None:
    """Wait until the audit log holds `count` decisions of this deployment's chains."""
    tail = AuditTail(dep)
    try:
        tail.wait_beyond(count - 1, timeout, router)
    finally:
        tail.close()


# -- running the router --------------------------------------------------------------------


@contextlib.contextmanager
def router_thread(dep: Deployment, *, instance: str = "t0") -> Iterator[RouterService]:
    """A router running in this process until the block ends."""
    service = RouterService(dep.config, instance_id=instance)
    with running_service(service, f"router-{instance}"):
        yield service


def route_all(dep: Deployment, expected_decisions: int) -> RouterService:
    """Run an in-process router until it has decided `expected_decisions` ingress records."""
    with router_thread(dep) as service:
        wait_for_decisions(dep, expected_decisions)
    return service


@dataclass
class RouterProcess:
    """`python -m broker.cli route` as a child process (output kept in a log file)."""

    config: Path
    instance: str
    log: Path
    idle_exit: float | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> RouterProcess:
        args = [sys.executable, "-m", "broker.cli", "route", "--config", str(self.config)]
        args += ["--instance", self.instance]
        if self.idle_exit is not None:
            args += ["--idle-exit", str(self.idle_exit)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=dict(os.environ)
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics_port(self, timeout: float = 60) -> int:
        """The port the router serves metrics on (configured as 0: it picks a free one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"metrics at http://127\.0\.0\.1:(\d+)/metrics", self.output())
            if found:
                return int(found.group(1))
            assert self.running, f"the router stopped:\n{self.output()}"
            time.sleep(0.1)
        raise AssertionError(f"the router did not serve metrics:\n{self.output()}")


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text exposition as {(name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    line_re = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$")
    label_re = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = line_re.match(line)
        assert match, f"not a Prometheus sample line: {line}"
        labels = frozenset(label_re.findall(match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def metric(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def decisions_by_ingress(
    records: Iterable[DecisionRecord],
) -> dict[tuple[str, int, int], list[DecisionRecord]]:
    out: dict[tuple[str, int, int], list[DecisionRecord]] = defaultdict(list)
    for r in records:
        out[(r.ingress_topic, r.ingress_partition, r.ingress_offset)].append(r)
    return out


# -- exactly once ---------------------------------------------------------------------------

# (issuer, event type, overrides, recipients) of each kind of event in the stream.
Kind = tuple[str, str, dict[str, Any], set[str]]


def event_kinds(dep: Deployment) -> list[Kind]:
    """One event of each kind the example agreements treat differently, with its recipients."""
    return [
        (WESTMINSTER, "child.missing.started", {"missing_type": "M"}, {MET, STATS}),
        (WESTMINSTER, "child.care.started", {"home_postcode": "SW1P 4DR"}, {STATS}),
        (MET, "police.missing_report.opened", {"local_authority": dep.id(WESTMINSTER)},
         {WESTMINSTER}),
        (MET, "police.missing_report.opened", {"local_authority": dep.id(LAMBETH)}, set()),
        (NRM, "nrm.decision.made", {"first_responder": dep.id(LAMBETH)}, {LAMBETH, STATS}),
    ]  # fmt: skip


def event_stream(
    dep: Deployment, count: int, duplicates: int, seed: int
) -> tuple[list[tuple[str, bytes, bytes]], Counter[tuple[str, str]]]:
    """`count` signed events (plus re-sent copies) as (topic, key, value), and the
    (event id, recipient) pairs the agreements permit."""
    rng = random.Random(seed)
    kinds = event_kinds(dep)
    out: list[tuple[str, bytes, bytes]] = []
    permitted: Counter[tuple[str, str]] = Counter()
    for i in range(count):
        issuer, event_type, overrides, recipients = kinds[i % len(kinds)]
        subject = f"s{rng.randrange(200)}"
        evt = event(event_type, subject, f"{dep.suffix}-{i}", **overrides)
        value = signed(dep, issuer, evt).to_bytes()
        out.append((topic_ingress(dep.id(issuer)), subject.encode(), value))
        for recipient in recipients:
            permitted[(evt["event_id"], recipient)] += 1
    # Re-sent envelopes (same bytes) come after their originals, on the same partition.
    for topic, key, value in rng.sample(out, duplicates):
        out.append((topic, key, value))
    return out, permitted


def check_exactly_once(
    dep: Deployment,
    permitted: Counter[tuple[str, str]],
    ingress_records: int,
    duplicates: int,
    bad: int = 0,
) -> None:
    """Every permitted (event, recipient) pair in the feeds exactly once, each verified end to
    end; one decision per ingress record (`duplicates` of them duplicates, `bad` quarantined,
    all of those in the quarantine topic); unbroken, checkpointed audit chains."""
    delivered: Counter[tuple[str, str]] = Counter()
    for base, items in feeds(dep).items():
        for item in items:
            assert item.event is not None, f"{base}: {item.error}"
            delivered[(item.event.event_id, base)] += 1
    assert delivered == permitted, (
        f"missing {sum((permitted - delivered).values())}, "
        f"extra {sum((delivered - permitted).values())}"
    )

    # One decision per ingress record, and unbroken, checkpointed audit chains.
    ends = ingress_counts(dep)
    assert sum(ends.values()) == ingress_records
    by_ingress = decisions_by_ingress(decisions(dep))
    expected_keys = {(t, p, o) for (t, p), end in ends.items() for o in range(end)}
    assert set(by_ingress) == expected_keys
    assert all(len(v) == 1 for v in by_ingress.values())
    outcomes = Counter(r[0].outcome for r in by_ingress.values())
    assert outcomes[Outcome.DUPLICATE] == duplicates, outcomes
    assert outcomes[Outcome.QUARANTINED] == bad, outcomes
    assert len(read_quarantine(dep)) == duplicates + bad
    keys = KeyRegistry.from_dir(dep.keys_dir)
    report = verify_log(
        [(r.partition, r.offset, r.value or b"") for r in read_audit(dep)],
        [(r.partition, r.offset, r.value or b"") for r in read_checkpoints(dep)],
        lambda agency, key_id, at: keys.lookup(agency, key_id, at, role="checkpoint").public_key,
    )
    assert report.ok, report.findings[:5]
    assert report.records == ingress_records


def now_utc() -> datetime:
    return datetime.now(UTC)


def dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def copy_to_audit_topic(dep: Deployment, messages: list[Message], name: str) -> str:
    """This deployment's records of a shared topic, copied partition by partition (with their
    keys and times) into `audit.<name>-<suffix>`, which auditors may read."""
    clients = KafkaClients(dep.config.kafka, OPERATOR)
    topic = f"audit.{name}-{dep.suffix}"
    clients.ensure_topics([TopicSpec(topic, max([m.partition for m in messages] + [0]) + 1)])
    producer = clients.producer()
    try:
        for m in messages:
            producer.send(
                topic, key=m.key, value=m.value, partition=m.partition, timestamp_ms=m.timestamp
            )
        producer.flush()
    finally:
        producer.close()
    return topic
