"""`broker audit ...`: the auditor's commands over the audit topics and the ingress topics.

verify       chain links, checkpoint signatures, roots and consistency of the whole audit log
replay       re-read ingress, re-evaluate the agreements in force at each decision, compare
disclosures  every disclosure about one child (names only unless values are allowed)
proof        an inclusion proof for one decision against the latest checkpoint of its chain
check-proof  check a proof file offline with only the router's public key
dump         print any topic between two times, verifying each record it prints

Findings and errors name topics, partitions, offsets, chain ids, field names: never a value.
Exit status: 0 clean, 1 findings (or a failed check), 2 usage or configuration errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.audit.checkpoint import Checkpoint, KeyLookup
from broker.audit.disclosures import (
    add_values,
    disclosures_about,
    require_values_allowed,
    to_csv,
    to_json,
)
from broker.audit.exceptions import AuditError, ProofError
from broker.audit.reader import Span, TopicNotFound, TopicReader, parse_when
from broker.audit.record import DecisionRecord, Outcome, format_time, read_header
from broker.config import (
    TOPIC_AUDIT,
    TOPIC_CHECKPOINTS,
    BrokerConfig,
    load_config,
    topic_feed,
    topic_ingress,
)
from broker.envelope import KeyRegistry, VerificationError
from broker.errors import BrokerError
from broker.kafka.client import KafkaClients
from broker.kafka.credentials import AUDITOR, principal_of

if TYPE_CHECKING:
    from broker.audit.verify import AuditReport


def key_lookup(keys: KeyRegistry, router: str) -> KeyLookup:
    """The key registry as the audit core's checkpoint key lookup: a checkpoint-role key of
    `router` (the configured router id) valid then, or None for any other key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from broker.envelope.keys import ROLE_CHECKPOINT

    def lookup(agency: str, key_id: str, at: datetime) -> Ed25519PublicKey | None:
        if agency != router:
            return None
        try:
            return keys.lookup(agency, key_id, at, role=ROLE_CHECKPOINT).public_key
        except VerificationError:
            return None

    return lookup


def read_values(reader: TopicReader, topic: str) -> list[tuple[int, int, bytes]]:
    """Every committed record of `topic` as (partition, offset, value); tombstones as b""."""
    return [(m.partition, m.offset, m.value or b"") for m in reader.read_topic(topic)]


def _when(value: datetime | None) -> str:
    return "-" if value is None else format_time(value)


def live_keys(config: BrokerConfig, principal: str = AUDITOR) -> KeyRegistry:
    """`keys_dir` with every signed `registry.keys` record applied, read up to its end: the
    registry as it stands now (docs/wire-format.md, "The key registry")."""
    from broker.registry.live import follow

    return follow(config, principal).keys


# -- verify --------------------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    keys = live_keys(config)
    with TopicReader(KafkaClients(config.kafka, AUDITOR)) as reader:
        decisions = read_values(reader, args.audit_topic)
        report = _verify_read(args, reader, decisions, keys, config.router.id)
    findings = report.findings
    unsigned = sum(report.unsigned_tail.values())
    out = sys.stdout
    print(
        f"{args.audit_topic}: {report.records} decision record(s) in "
        f"{len(report.records_per_chain)} chain(s); first decision {_when(report.first_decided_at)}"
        f", last {_when(report.last_decided_at)}",
        file=out,
    )
    print(f"{args.checkpoints_topic}: {report.checkpoints} checkpoint(s)", file=out)
    for chain, count in sorted(report.records_per_chain.items()):
        tail = report.unsigned_tail.get(chain, 0)
        print(f"  chain {chain}: {count} record(s), {tail} after the last checkpoint", file=out)
    if unsigned:
        print(
            f"{unsigned} record(s) are covered by no signed checkpoint (the router signs every "
            "transaction: see the unsigned_tail findings)",
            file=out,
        )
    for finding in findings:
        print(f"FINDING {finding}", file=out)
    if findings:
        print(f"{len(findings)} finding(s)", file=out)
        return 1
    print("OK: every chain link, checkpoint signature, root and consistency proof verifies")
    return 0


# Re-reads of the checkpoints when some decisions seem unsigned, and the pause before each.
TAIL_REREADS = 3
TAIL_REREAD_PAUSE_S = 1.0


def _verify_read(
    args: argparse.Namespace,
    reader: TopicReader,
    decisions: list[tuple[int, int, bytes]],
    keys: KeyRegistry,
    router_id: str,
) -> AuditReport:
    """Verify the decisions read against the checkpoints, read after them.

    A routing transaction commits its decisions and their checkpoint together, but the commit
    markers reach the two topics' partitions one after the other: a reader may see a decision
    a moment before its checkpoint. So when some records look unsigned, the checkpoints are
    read again (up to their new end) before that is reported; the decisions read stay the same.
    """
    import time

    from broker.audit.findings import FindingCode
    from broker.audit.verify import verify_log

    for attempt in range(TAIL_REREADS + 1):
        checkpoints = read_values(reader, args.checkpoints_topic)
        report = verify_log(
            decisions,
            checkpoints,
            key_lookup(keys, router_id),
            decisions_topic=args.audit_topic,
            checkpoints_topic=args.checkpoints_topic,
        )
        if attempt == TAIL_REREADS or not any(
            f.code == FindingCode.UNSIGNED_TAIL for f in report.findings
        ):
            return report
        time.sleep(TAIL_REREAD_PAUSE_S)
    raise AssertionError("unreachable")


# -- replay --------------------------------------------------------------------------------------


def run_replay(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    config = load_config(args.config)
    start = parse_when(args.start) if args.start else None
    end = parse_when(args.end) if args.end else None
    progress = Progress(
        TextColumn("[bold]replay[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=args.no_progress,
    )
    report = replay_log(
        config,
        audit_topic=args.audit_topic,
        start=start,
        end=end,
        progress=progress,
        workers=args.workers,
    )
    print(
        f"replayed {report.ingress_records} ingress record(s): {report.compared} decision(s) "
        f"re-evaluated and compared, {report.learned} read for state before --from, "
        f"{report.pending} not routed yet; {report.decisions} decision record(s) in "
        f"{args.audit_topic}"
    )
    if report.compared:
        outcomes = ", ".join(f"{n} {o}" for o, n in sorted(report.outcomes.items()))
        print(
            f"decisions from {_when(report.first_decided_at)} to {_when(report.last_decided_at)}: "
            f"{outcomes}"
        )
    for finding in report.findings:
        print(f"FINDING {finding}")
    if report.findings:
        print(f"{len(report.findings)} finding(s)")
        return 1
    print("OK: every decision is what the agreements in force at its time give")
    return 0


def replay_log(
    config: BrokerConfig,
    *,
    audit_topic: str = TOPIC_AUDIT,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Any = None,
    workers: int = 1,
    at_positions: bool = True,
) -> Any:
    """Replay every ingress topic of `config` against `audit_topic`; return a `ReplayReport`.

    With `workers` > 1 the ingress partitions are shared among that many worker processes.
    Each decision is judged with the registry (keys and agreements) at the position it records;
    `at_positions=False` judges every one with the registry as it is now instead (to show what
    a later change would have decided).
    """
    from broker.audit.replay import Judge, Replay, WorkerPool, index_decisions
    from broker.registry.live import RegistryHistory

    if workers < 1:
        raise BrokerError(f"replay with {workers} worker processes: give 1 or more")

    with TopicReader(KafkaClients(config.kafka, AUDITOR)) as reader:
        history = RegistryHistory.from_config(config, reader)
    keys, agreements = history.latest()
    judge = Judge(
        keys=keys,
        agreements=agreements,
        agencies=config.agency_ids,
        max_skew=timedelta(seconds=config.router.max_clock_skew_s),
        history=history if at_positions else None,
        dedup=config.router.dedup_policy,
    )
    pool = WorkerPool(judge, workers, audit_topic=audit_topic) if workers > 1 else None
    try:
        with TopicReader(KafkaClients(config.kafka, AUDITOR)) as reader:
            decisions = read_values(reader, audit_topic)
            spans: list[Span] = []
            bounds: dict[tuple[str, int], tuple[int, int, int]] = {}
            for agency in config.agency_ids:
                topic = topic_ingress(agency)
                try:
                    whole = reader.spans(topic, end=end)
                except TopicNotFound:
                    continue  # an agency that never published
                window = reader.spans(topic, start=start, end=end)
                last = reader.spans(topic)
                for w, s, e in zip(whole, window, last, strict=True):
                    spans.append(w)
                    bounds[(w.topic, w.partition)] = (s.start, s.end, e.end)
            replay: Replay | None = None
            if pool is not None:
                pool.assign((s.topic, s.partition, s.size) for s in spans)
                pool.decisions(decisions)
            else:
                replay = Replay(judge, index_decisions(decisions), audit_topic=audit_topic)
            del decisions
            total = sum(s.size for s in spans)
            task = progress.add_task("ingress", total=total) if progress is not None else None
            if progress is not None:
                progress.start()
            try:
                for batch in reader.read(spans):
                    items = [
                        (
                            m.topic,
                            m.partition,
                            m.offset,
                            m.value,
                            m.offset >= bounds[(m.topic, m.partition)][0],
                            m.timestamp,
                        )
                        for m in batch
                    ]
                    if pool is not None:
                        pool.records(items)
                    else:
                        assert replay is not None
                        for topic, partition, offset, value, compare, stamp in items:
                            replay.record(
                                topic, partition, offset, value, compare=compare, timestamp=stamp
                            )
                    if progress is not None:
                        progress.advance(task, len(batch))
            finally:
                if progress is not None:
                    progress.stop()
        if pool is not None:
            return pool.finish(bounds)
        assert replay is not None
        return replay.finish(bounds)
    finally:
        if pool is not None:
            pool.close()


# -- disclosures ---------------------------------------------------------------------------------


def _keys_at(config: BrokerConfig, reader: TopicReader) -> Callable[[Any], KeyRegistry]:
    """The key registry each disclosure row's decision was made under (its recorded registry
    position; the registry as it is now for a decision that records none)."""
    from broker.registry.live import RegistryHistory, RegistryPosition

    history = RegistryHistory.from_config(config, reader)
    cursor = history.cursor()
    latest, _ = history.latest()

    def keys(row: Any) -> KeyRegistry:
        if row.registry is None:
            return latest
        return cursor.at(RegistryPosition(*row.registry))[0]

    return keys


def run_disclosures(args: argparse.Namespace) -> int:
    from broker.audit.disclosures import DisclosureRow

    if args.with_values:
        require_values_allowed()
    config = load_config(args.config)
    with TopicReader(KafkaClients(config.kafka, AUDITOR)) as reader:
        rows: list[DisclosureRow] = disclosures_about(
            read_values(reader, args.audit_topic), args.subject, issuer=args.issuer
        )
        if args.with_values and rows:
            wanted = {row.ingress for row in rows}
            ingress: dict[tuple[str, int, int], bytes | None] = {}
            received: dict[tuple[str, int, int], int | None] = {}
            for topic, partition, offset in sorted(wanted):
                span = Span(topic, partition, offset, offset + 1)
                for batch in reader.read([span]):
                    for m in batch:
                        ingress[(m.topic, m.partition, m.offset)] = m.value
                        received[(m.topic, m.partition, m.offset)] = m.timestamp
            rows = add_values(
                rows,
                ingress,
                _keys_at(config, reader),
                received=received,
                max_skew=timedelta(seconds=config.router.max_clock_skew_s),
            )
    if args.format == "json":
        sys.stdout.write(to_json(rows, args.subject, args.issuer))
    elif args.format == "csv":
        sys.stdout.write(to_csv(rows))
    else:
        _print_table(rows, args.subject)
    return 0


def _print_table(rows: list[Any], subject: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Disclosures about subject {subject}: {len(rows)}")
    for column in ("time (UTC)", "recipient", "event type", "fields", "agreements"):
        table.add_column(column, overflow="fold")
    with_values = any(r.values is not None for r in rows)
    if with_values:
        table.add_column("values", overflow="fold")
    for row in rows:
        fields = ", ".join(row.fields)
        if row.derived:
            fields += " | derived: " + ", ".join(row.derived)
        cells = [
            format_time(row.decided_at),
            row.recipient,
            row.event_type,
            fields,
            ", ".join(row.agreements),
        ]
        if with_values:
            cells.append(json.dumps(row.values, sort_keys=True))
        table.add_row(*cells)
    Console(soft_wrap=False, width=200).print(table)


# -- proof ---------------------------------------------------------------------------------------


def run_proof(args: argparse.Namespace) -> int:
    from broker.audit.proof import dump_proof, export_proof

    config = load_config(args.config)
    keys = key_lookup(live_keys(config), config.router.id)
    with TopicReader(KafkaClients(config.kafka, AUDITOR)) as reader:
        decisions = read_values(reader, args.audit_topic)
        checkpoints = read_values(reader, args.checkpoints_topic)
    needle = args.event_id.encode()
    found: DecisionRecord | None = None
    for _, _, value in decisions:
        if needle not in value:
            continue
        try:
            record = DecisionRecord.from_bytes(value)
        except AuditError:
            continue
        if record.event_id == args.event_id and record.outcome is not Outcome.DUPLICATE:
            found = record
            break
    if found is None:
        raise BrokerError(
            f"no decision for event {args.event_id} in {args.audit_topic}: check the event id"
        )
    leaves = [value for _, _, value in decisions if _chain_of(value) == found.chain]
    latest: Checkpoint | None = None
    for _, _, value in checkpoints:
        try:
            cp = Checkpoint.from_bytes(value)
            if cp.chain != found.chain or cp.tree_size <= found.seq:
                continue
            cp.verify_signature(keys)
        except AuditError:
            continue
        if latest is None or cp.tree_size >= latest.tree_size:
            latest = cp
    if latest is None:
        raise BrokerError(
            f"no signed checkpoint covers decision {args.event_id} (chain {found.chain}, seq "
            f"{found.seq}): the router signs every transaction's decisions, so run "
            "`broker audit verify` (an unsigned_tail finding)"
        )
    try:
        doc = export_proof(found.to_bytes(), found.seq, leaves, latest)
    except ProofError as exc:
        raise BrokerError(f"cannot export the proof ({exc}): run `broker audit verify`") from None
    data = dump_proof(doc)
    if args.out:
        Path(args.out).write_bytes(data)
        print(
            f"wrote {args.out}: decision {args.event_id} is leaf {found.seq} of chain "
            f"{found.chain} under the checkpoint of size {latest.tree_size} signed at "
            f"{format_time(latest.issued_at)}",
            file=sys.stderr,
        )
    else:
        sys.stdout.buffer.write(data)
    return 0


def _chain_of(value: bytes) -> str | None:
    try:
        return read_header(value).chain
    except AuditError:
        return None


def run_check_proof(args: argparse.Namespace) -> int:
    from broker.audit.proof import check_proof_file
    from broker.envelope import load_public_key

    info = load_public_key(Path(args.key))
    registry = KeyRegistry([info])
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise BrokerError(f"cannot read {args.file} ({exc.strerror})") from None
    try:
        proved = check_proof_file(data, key_lookup(registry, info.agency_id))
    except ProofError as exc:
        print(f"FAILED {args.file}: {exc}")
        return 1
    record, cp = proved.record, proved.checkpoint
    print(
        f"OK: decision {record.event_id} ({record.outcome.value}, {record.event_type} of "
        f"{record.issuer}, decided {format_time(record.decided_at)}) is record {record.seq} of "
        f"chain {record.chain}, in the log of {cp.tree_size} record(s) signed by {cp.agency}/"
        f"{cp.key_id} at {format_time(cp.issued_at)}"
    )
    return 0


# -- dump ----------------------------------------------------------------------------------------


def run_dump(args: argparse.Namespace) -> int:
    from broker.audit.dump import Dumper

    if args.with_values:
        require_values_allowed()
    config = load_config(args.config)
    start = parse_when(args.start) if args.start else None
    end = parse_when(args.end) if args.end else None
    # Auditors may not read feeds: an agency dumps (and verifies) its own feed as itself.
    owner = next((a for a in config.agency_ids if args.topic == topic_feed(a)), None)
    principal = principal_of(owner) if owner else AUDITOR
    keys = live_keys(config, principal)
    dumper = Dumper(
        args.topic,
        keys,
        key_lookup(keys, config.router.id),
        router=config.router.id,
        agencies=config.agency_ids,
        with_values=args.with_values,
    )
    with TopicReader(KafkaClients(config.kafka, principal)) as reader:
        for message in reader.read_topic(args.topic, start=start, end=end):
            sys.stdout.write(json.dumps(dumper.line(message), sort_keys=True) + "\n")
    print(
        f"{dumper.printed} record(s) of {args.topic}; {dumper.failed} failed verification",
        file=sys.stderr,
    )
    return 1 if dumper.failed else 0


# -- parser --------------------------------------------------------------------------------------


def worker_count(text: str) -> int:
    """`--workers N`: a whole number of processes, 1 or more."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of worker processes: give a whole number, 1 or more "
            "(1 replays in this process alone)"
        )
    return count


def _common(parser: argparse.ArgumentParser, *, checkpoints: bool = False) -> None:
    parser.add_argument("--config", type=Path, required=True, help="deployment config file")
    parser.add_argument(
        "--audit-topic",
        default=TOPIC_AUDIT,
        help="read decisions from this topic instead (e.g. a copy under investigation)",
    )
    if checkpoints:
        parser.add_argument(
            "--checkpoints-topic", default=TOPIC_CHECKPOINTS, help="read checkpoints from here"
        )


def _range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="start", metavar="T", help="from this time (ISO 8601; UTC if no zone)"
    )
    parser.add_argument("--to", dest="end", metavar="T", help="up to this time (excluded)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "audit", help="verify, replay and report on the audit log (auditors)"
    )
    sub = parser.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    p = sub.add_parser("verify", help="check every chain link, checkpoint signature and root")
    _common(p, checkpoints=True)
    p.set_defaults(func=run_verify)

    p = sub.add_parser(
        "replay", help="re-evaluate every ingress event and compare with the recorded decision"
    )
    _common(p)
    _range(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--workers",
        type=worker_count,
        default=os.cpu_count() or 1,
        help="processes sharing the ingress partitions (default: one per CPU; 1: no worker "
        "processes, all in this one)",
    )
    p.set_defaults(func=run_replay)

    p = sub.add_parser("disclosures", help="every disclosure about one child")
    _common(p)
    p.add_argument("--subject", required=True, help="the issuer's subject reference")
    p.add_argument("--issuer", help="only this issuer's subject reference (agency id)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument(
        "--with-values",
        action="store_true",
        help="add the disclosed values (only where the deployment allows it)",
    )
    p.set_defaults(func=run_disclosures)

    p = sub.add_parser("proof", help="export an inclusion proof for one decision")
    _common(p, checkpoints=True)
    p.add_argument("--event-id", required=True)
    p.add_argument("--out", help="write the proof here (default: standard output)")
    p.set_defaults(func=run_proof)

    p = sub.add_parser("check-proof", help="check an inclusion proof offline")
    p.add_argument("file", help="proof file from `broker audit proof`")
    p.add_argument("--key", required=True, help="the router's public key file (.pub.json)")
    p.set_defaults(func=run_check_proof)

    p = sub.add_parser("dump", help="print a topic between two times, verifying each record")
    p.add_argument("--config", type=Path, required=True, help="deployment config file")
    p.add_argument("--topic", required=True)
    _range(p)
    p.add_argument(
        "--with-values",
        action="store_true",
        help="print event field values (only where the deployment allows it)",
    )
    p.set_defaults(func=run_dump)


__all__ = ["key_lookup", "read_values", "register", "replay_log", "worker_count"]
