"""Replay: re-read the ingress topics, re-decide every event, compare with the recorded decision.

The auditor's independent re-check that the router did exactly what the agreements allowed. For
each ingress partition, in offset order (as the router saw it): decode the envelope, check that
its issuer owns the ingress topic, verify the issuer's signature and key, de-duplicate event ids,
rebuild the per-subject relationships earlier events created (guardians appointed, NRM
referrers), and evaluate the agreements **in force at the recorded decision time** (`decided_at`;
agreement versions are never overwritten, so old decisions re-evaluate under the old versions).
Keys and agreements are those of the registry **at the position the decision records**
(`registry_keys`, `registry_agreements`: how far the router had read `registry.keys` and
`registry.agreements`), rebuilt from the registry's history, not the registry as it is now; a
version 1 record (no position) is judged with the registry as it is now.
The result is compared with the decision in `audit.decisions`: outcome, reason code, header
values, digests, and per recipient the fields forwarded and withheld, derived value names and
agreements. Any difference is a finding naming the decision's audit offset and the ingress record.

Replay needs no private key and no pseudonym secret: it compares the *names* of derived values,
which do not depend on the key. It does not check the chain (that is `verify`).
"""

from __future__ import annotations

import queue
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from broker.agreements import AgreementSet, SubjectContext
from broker.audit.findings import Finding, FindingCode, report_order
from broker.audit.record import Outcome, decode_fields, read_header
from broker.config import TOPIC_AUDIT, agency_of_ingress
from broker.dedup import DedupPolicy, DedupWindow
from broker.envelope import KeyRegistry
from broker.ids import SUBJECT_FIELD
from broker.ingress import (
    DEFAULT_MAX_SKEW,
    DUPLICATE,
    INTERNAL_ERROR,
    IngressCheck,
    check_ingress,
    deliverable,
    event_view,
    issued_subject,
    learn_relationships,
    record_time,
)
from broker.registry.live import RegistryHistory, RegistryPosition
from broker.schemas import SchemaRegistry

NO_AGREEMENT = "no_agreement"

_PLACEHOLDER_KEY = bytes(32)


def _placeholder_key(recipient: str) -> bytes:
    """Derived values are compared by name only, so any fixed key will do (see the module doc)."""
    return _PLACEHOLDER_KEY


@dataclass(frozen=True, slots=True)
class Recorded:
    """One decision as stored: where it is in the audit topic, and its decoded fields."""

    partition: int
    offset: int
    fields: Mapping[str, Any]

    @property
    def decided_at(self) -> datetime:
        value: datetime = self.fields["decided_at"]
        return value


Location = tuple[str, int, int]
"""(ingress topic, partition, offset)."""


def index_decisions(
    values: Iterable[tuple[int, int, bytes | None]],
) -> dict[Location, list[Recorded]]:
    """Index audit records ``(partition, offset, value)`` by the ingress record they decide.

    Unreadable records are skipped here: `verify` reports them.
    """
    index: dict[Location, list[Recorded]] = defaultdict(list)
    for partition, offset, value in values:
        if value is None:
            continue
        try:
            d = decode_fields(value)
        except Exception:  # verify's business: any damage is reported there
            continue
        loc = (d["ingress_topic"], d["ingress_partition"], d["ingress_offset"])
        index[loc].append(Recorded(partition, offset, d))
    return index


@dataclass(frozen=True, slots=True)
class _Expected:
    outcome: Outcome
    reason: str | None
    header: dict[str, Any]
    digests: list[bytes]
    recipients: list[dict[str, Any]]
    condition_errors: list[dict[str, str]]


class Judge:
    """The re-evaluation, configured like the router but with public keys only."""

    def __init__(
        self,
        *,
        keys: KeyRegistry,
        agreements: AgreementSet,
        agencies: Collection[str],
        registry: SchemaRegistry | None = None,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        history: RegistryHistory | None = None,
        dedup: DedupPolicy | None = None,
    ) -> None:
        self.keys = keys
        self.agreements = agreements
        self.agencies = frozenset(agencies)
        self.registry = registry or SchemaRegistry.default()
        self.max_skew = max_skew
        # With a history, each decision is judged with the registry at its recorded position.
        self.history = history
        # The router's de-duplication window: a re-sent event is judged as the router did.
        self.dedup = dedup or DedupPolicy()


class PartitionReplay:
    """Replays one ingress partition in offset order, keeping the router's per-partition state."""

    def __init__(self, judge: Judge, topic: str) -> None:
        self.judge = judge
        self.topic = topic
        self.agency = agency_of_ingress(topic)  # the only issuer this topic accepts
        self.seen = DedupWindow(judge.dedup)
        self.subjects: dict[str, SubjectContext] = {}
        self.cursor = judge.history.cursor() if judge.history is not None else None
        self.keys, self.agreements = judge.keys, judge.agreements

    def _at(self, recorded: Recorded) -> None:
        """Judge with the registry as the decision records it stood (keys and agreements)."""
        keys, agreements = recorded.fields.get("registry_keys"), recorded.fields.get(
            "registry_agreements"
        )
        if self.cursor is None or keys is None or agreements is None:
            self.keys, self.agreements = self.judge.keys, self.judge.agreements
            return
        self.keys, self.agreements = self.cursor.at(RegistryPosition(keys, agreements))

    def _check(self, value: bytes | None, received_at: datetime | None) -> IngressCheck:
        judge = self.judge
        self.seen.expire(_ms(received_at))
        return check_ingress(
            value,
            topic=self.topic,
            agency=self.agency,
            seen=self.seen,
            keys=self.keys,
            registry=judge.registry,
            received_at=received_at,
            max_skew=judge.max_skew,
        )

    def learn(
        self, value: bytes | None, received_at: datetime | None = None, offset: int = -1
    ) -> None:
        """Take one record into the state without comparing (before the replay window); keys
        are judged at `received_at` (None, a record without a timestamp: at its issued_at)."""
        self._after(self._check(value, received_at), offset, received_at)

    def _after(self, checked: IngressCheck, offset: int, received_at: datetime | None) -> None:
        event = checked.event
        if event is None:
            return
        header = event.header
        received = _ms(received_at)
        self.seen.add((header.issuer, header.event_id), offset, received or 0)
        subject = issued_subject(event)
        context = self.subjects.get(subject) or SubjectContext()
        updated = learn_relationships(context, header.event_type, event.fields)
        if updated != context:
            self.subjects[subject] = updated

    def step(
        self,
        offset: int,
        value: bytes | None,
        recorded: Recorded,
        received_at: datetime | None = None,
    ) -> list[str]:
        """Re-decide one record at its recorded time; return the differences (names only).

        Keys are judged at `received_at`, the record's Kafka timestamp, as the router judged
        them (the decision time when the record has none, as the router used its clock)."""
        self._at(recorded)
        received = received_at or recorded.decided_at
        checked = self._check(value, received)
        legacy = recorded_before_subject(recorded.fields)
        expected = self._expected(checked, recorded.decided_at, legacy=legacy)
        self._after(checked, offset, received)
        return _differences(expected, recorded.fields)

    def _expected(self, checked: IngressCheck, now: datetime, *, legacy: bool) -> _Expected:
        envelope = checked.envelope
        header: dict[str, Any] = {
            "event_id": None,
            "issuer": None,
            "event_type": None,
            "subject": None,
            "occurred_at": None,
        }
        digests: list[bytes] = []
        if envelope is not None:
            h = envelope.header
            header = {
                "event_id": h.event_id,
                "issuer": h.issuer,
                "event_type": h.event_type,
                "subject": envelope.subject,
                "occurred_at": h.occurred_at,
            }
            digests = sorted(envelope.digests)
        if checked.event is None:
            reason = checked.reason or INTERNAL_ERROR
            outcome = Outcome.DUPLICATE if reason == DUPLICATE else Outcome.QUARANTINED
            return _Expected(outcome, reason, header, digests, [], [])
        event = checked.event
        decision = self.agreements.decide(
            event_view(event),
            now=now,
            context=self.subjects.get(issued_subject(event)) or SubjectContext(),
            pseudonym_key=_placeholder_key,
        )
        # A legacy decision forwarded v1 events to every recipient and named no subject.
        drop = {SUBJECT_FIELD} if legacy else set()
        recipients = [
            {
                "recipient": recipient,
                "fields_forwarded": sorted(grant.fields_shared - drop),
                "fields_withheld": sorted(grant.fields_withheld - drop),
                "derived": sorted(grant.derived),
                "agreements": sorted(grant.agreements),
            }
            for recipient, grant in sorted(decision.grants.items())
            if recipient in self.judge.agencies
            and (legacy or deliverable(grant.fields_shared, event.header.version))
        ]
        errors = sorted({(e.rule.agreement, e.stage) for e in decision.errors})
        return _Expected(
            Outcome.FORWARDED if recipients else Outcome.DENIED,
            None if recipients else NO_AGREEMENT,
            header,
            digests,
            recipients,
            [{"agreement": a, "code": c} for a, c in errors],
        )


def _ms(when: datetime | None) -> int | None:
    """A time in ms since the epoch, as the router keeps receipt times in its window."""
    return None if when is None else int(when.timestamp() * 1000)


def recorded_before_subject(recorded: Mapping[str, Any]) -> bool:
    """Whether a decision was recorded by a router that predates the subject as a grantable item
    (wire format v2): it forwarded to recipients yet names the subject in no field list. Such a
    decision is re-checked as that router decided, so upgrading raises no false findings."""
    recipients = recorded.get("recipients") or []
    return bool(recipients) and not any(
        SUBJECT_FIELD in r["fields_forwarded"] or SUBJECT_FIELD in r["fields_withheld"]
        for r in recipients
    )


def _names(diff_plus: Iterable[str], diff_minus: Iterable[str]) -> str:
    parts = [f"+{n}" for n in sorted(diff_plus)] + [f"-{n}" for n in sorted(diff_minus)]
    return " ".join(parts)


def _differences(expected: _Expected, recorded: Mapping[str, Any]) -> list[str]:
    """What differs, in words naming fields, recipients and agreements only (never a value)."""
    out: list[str] = []
    if recorded["outcome"] != expected.outcome.value:
        out.append(f"outcome recorded {recorded['outcome']}, agreements give {expected.outcome}")
    if recorded["reason"] != expected.reason:
        out.append(f"reason recorded {recorded['reason']}, re-check gives {expected.reason}")
    for name, value in expected.header.items():
        if recorded[name] != value:
            out.append(f"{name} differs from the ingress envelope")
    if recorded["digests"] != expected.digests:
        out.append("digests differ from the ingress envelope")
    got = {r["recipient"]: r for r in recorded["recipients"]}
    want = {r["recipient"]: r for r in expected.recipients}
    for recipient in sorted(got.keys() - want.keys()):
        out.append(f"recipient {recipient} recorded but no agreement in force allows it")
    for recipient in sorted(want.keys() - got.keys()):
        out.append(f"recipient {recipient} allowed by the agreements but not recorded")
    for recipient in sorted(got.keys() & want.keys()):
        g, w = got[recipient], want[recipient]
        for key in ("fields_forwarded", "fields_withheld", "derived", "agreements"):
            if g[key] != w[key]:
                extra, missing = set(g[key]) - set(w[key]), set(w[key]) - set(g[key])
                out.append(
                    f"{recipient} {key}: recorded {_names(extra, missing)} against the agreements"
                )
    if list(recorded["condition_errors"]) != expected.condition_errors:
        out.append("condition errors differ from re-evaluation")
    return out


@dataclass
class ReplayReport:
    """What a replay found: counts and findings (empty findings: every decision re-checks)."""

    ingress_records: int = 0
    compared: int = 0
    learned: int = 0
    """Records before the window, read only to rebuild state (seen ids, relationships)."""
    pending: int = 0
    """Ingress records after the last decision of their partition: not routed yet."""
    decisions: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    first_decided_at: datetime | None = None
    last_decided_at: datetime | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def merge(self, other: ReplayReport) -> None:
        """Add the counts and findings of a replay of other partitions."""
        self.ingress_records += other.ingress_records
        self.compared += other.compared
        self.learned += other.learned
        self.pending += other.pending
        self.decisions += other.decisions
        for outcome, n in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        firsts = [t for t in (self.first_decided_at, other.first_decided_at) if t is not None]
        lasts = [t for t in (self.last_decided_at, other.last_decided_at) if t is not None]
        self.first_decided_at = min(firsts, default=None)
        self.last_decided_at = max(lasts, default=None)
        self.findings.extend(other.findings)
        self.findings.sort(key=report_order)


class Replay:
    """Drives `PartitionReplay`s over ingress records and matches them with decisions.

    Feed `record(...)` with every ingress record of a partition from its first offset, in offset
    order (partitions may interleave); then `finish(...)` reports decisions nobody matched.
    """

    def __init__(
        self,
        judge: Judge,
        decisions: dict[Location, list[Recorded]],
        *,
        audit_topic: str = TOPIC_AUDIT,
    ) -> None:
        self.judge = judge
        self.decisions = decisions
        self.audit_topic = audit_topic
        self.report = ReplayReport(decisions=sum(len(v) for v in decisions.values()))
        self.partitions: dict[tuple[str, int], PartitionReplay] = {}
        self.last_decided: dict[tuple[str, int], int] = defaultdict(lambda: -1)
        for topic, partition, offset in decisions:
            key = (topic, partition)
            self.last_decided[key] = max(self.last_decided[key], offset)
        self._matched: set[Location] = set()

    def _finding(self, code: FindingCode, message: str, recorded: Recorded | None) -> None:
        self.report.findings.append(
            Finding(
                code,
                message,
                recorded.offset if recorded else None,
                topic=self.audit_topic,
                partition=recorded.partition if recorded else None,
            )
        )

    def record(self, topic: str, partition: int, offset: int, value: bytes | None, *,
               compare: bool = True, timestamp: int | None = None) -> None:  # fmt: skip
        """One ingress record; with `compare` false it only rebuilds state (before `--from`).

        `timestamp` is the record's Kafka timestamp (ms): the time of receipt keys are judged at.
        """
        report = self.report
        received_at = record_time(timestamp)
        report.ingress_records += 1
        replay = self.partitions.get((topic, partition))
        if replay is None:
            replay = self.partitions[(topic, partition)] = PartitionReplay(self.judge, topic)
        if not compare:
            report.learned += 1
            replay.learn(value, received_at, offset)
            return
        loc = (topic, partition, offset)
        found = self.decisions.get(loc)
        if not found:
            if offset > self.last_decided[(topic, partition)]:
                report.pending += 1
            else:
                report.findings.append(
                    Finding(
                        FindingCode.UNDECIDED,
                        "this ingress record has no decision, though later records of its "
                        "partition do",
                        offset,
                        chain=f"{topic}/{partition}",
                        topic=topic,
                        partition=partition,
                    )
                )
            replay.learn(value, received_at, offset)
            return
        self._matched.add(loc)
        first = found[0]
        where = f"{topic}[{partition}] offset {offset}"
        for extra in found[1:]:
            self._finding(
                FindingCode.DOUBLE_DECISION,
                f"a second decision for ingress {where} (first at offset {first.offset})",
                extra,
            )
        report.compared += 1
        outcome = str(first.fields["outcome"])
        report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
        decided = first.decided_at
        if report.first_decided_at is None or decided < report.first_decided_at:
            report.first_decided_at = decided
        if report.last_decided_at is None or decided > report.last_decided_at:
            report.last_decided_at = decided
        differences = replay.step(offset, value, first, received_at)
        if differences:
            self._finding(
                FindingCode.MISMATCH,
                f"decision for ingress {where} (seq {first.fields['seq']}): "
                + "; ".join(differences),
                first,
            )

    def finish(self, read: Mapping[tuple[str, int], tuple[int, int, int]]) -> ReplayReport:
        """Report decisions whose ingress record was not found.

        `read` maps each ingress (topic, partition) read to (window start, window end, the
        partition's end when the read began); decisions inside the window or beyond the end that
        matched no record name ingress that does not exist.
        """
        for (topic, partition, offset), found in sorted(self.decisions.items()):
            if (topic, partition, offset) in self._matched:
                continue
            bounds = read.get((topic, partition))
            if bounds is not None:
                start, end, last = bounds
                beyond_end = offset >= last and end == last
                if not (start <= offset < end or beyond_end):
                    continue  # outside the replay window
            for recorded in found:
                self._finding(
                    FindingCode.NO_INGRESS,
                    f"decision (seq {recorded.fields['seq']}) names ingress {topic}[{partition}] "
                    f"offset {offset}, which does not exist",
                    recorded,
                )
        self.report.findings.sort(key=report_order)
        return self.report


# -- several processes ---------------------------------------------------------------------------
#
# Ingress partitions replay independently (the router's state is per partition), and replay is
# CPU-bound (an Ed25519 verification and an agreement evaluation per record), so a replay spreads
# over worker processes by partition: the parent reads Kafka and hands each worker the audit
# records of its chains and then its ingress records, in order.

Item = tuple[str, int, int, bytes | None, bool, int | None]
"""(ingress topic, partition, offset, value, compare, Kafka timestamp in ms)."""


def _work(judge: Judge, audit_topic: str, inbox: Any, outbox: Any) -> None:
    decisions: list[tuple[int, int, bytes | None]] = []
    replay: Replay | None = None
    while True:
        kind, payload = inbox.get()
        if kind == "decisions":
            decisions.extend(payload)
            continue
        if replay is None:
            replay = Replay(judge, index_decisions(decisions), audit_topic=audit_topic)
            decisions = []
        if kind == "records":
            for topic, partition, offset, value, compare, timestamp in payload:
                replay.record(
                    topic, partition, offset, value, compare=compare, timestamp=timestamp
                )
        else:  # "finish"
            outbox.put(replay.finish(payload))
            return


class WorkerPool:
    """Worker processes, each replaying a fixed set of ingress partitions.

    Create it before any Kafka client exists (workers are forked from this process, and the
    `judge` with its compiled conditions is inherited rather than rebuilt).
    """

    def __init__(self, judge: Judge, workers: int, *, audit_topic: str = TOPIC_AUDIT) -> None:
        import multiprocessing

        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        self.judge = judge
        self.audit_topic = audit_topic
        self.inboxes = [context.Queue(maxsize=16) for _ in range(workers)]
        self.outbox = context.Queue()
        self.processes = [
            context.Process(
                target=_work, args=(judge, audit_topic, inbox, self.outbox), daemon=True
            )
            for inbox in self.inboxes
        ]
        for process in self.processes:
            process.start()
        self.owner: dict[tuple[str, int], int] = {}
        self._load = [0] * workers
        self._local: list[tuple[int, int, bytes | None]] = []

    def assign(self, partitions: Iterable[tuple[str, int, int]]) -> None:
        """Give each (topic, partition, records to read) to the least loaded worker."""
        for topic, partition, size in sorted(partitions, key=lambda p: -p[2]):
            worker = min(range(len(self._load)), key=self._load.__getitem__)
            self.owner[(topic, partition)] = worker
            self._load[worker] += size

    def decisions(self, values: Iterable[tuple[int, int, bytes | None]]) -> None:
        """Send each audit record to the worker of its chain (after `assign`)."""
        per_worker: list[list[tuple[int, int, bytes | None]]] = [[] for _ in self.inboxes]
        for item in values:
            worker: int | None = None
            if item[2] is not None:
                try:
                    topic, _, partition = read_header(item[2]).chain.rpartition("/")
                    worker = self.owner.get((topic, int(partition)))
                except Exception:
                    worker = None
            if worker is None:
                self._local.append(item)  # a chain no ingress partition read: checked here
            else:
                per_worker[worker].append(item)
        for worker, items in enumerate(per_worker):
            for start in range(0, len(items), 2000):
                self._put(worker, ("decisions", items[start : start + 2000]))

    def records(self, items: Iterable[Item]) -> None:
        per_worker: list[list[Item]] = [[] for _ in self.inboxes]
        for item in items:
            per_worker[self.owner[(item[0], item[1])]].append(item)
        for worker, batch in enumerate(per_worker):
            if batch:
                self._put(worker, ("records", batch))

    def finish(self, read: Mapping[tuple[str, int], tuple[int, int, int]]) -> ReplayReport:
        for worker in range(len(self.inboxes)):
            self._put(worker, ("finish", dict(read)))
        local = Replay(self.judge, index_decisions(self._local), audit_topic=self.audit_topic)
        report = local.finish(read)
        for _ in self.processes:
            while True:
                try:
                    report.merge(self.outbox.get(timeout=5))
                    break
                except queue.Empty:
                    if not all(p.is_alive() or p.exitcode == 0 for p in self.processes):
                        raise RuntimeError("a replay worker process died") from None
        for process in self.processes:
            process.join()
        return report

    def close(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()

    def _put(self, worker: int, message: tuple[str, Any]) -> None:
        while True:
            try:
                self.inboxes[worker].put(message, timeout=5)
                return
            except queue.Full:
                if not self.processes[worker].is_alive():
                    raise RuntimeError("a replay worker process died") from None
