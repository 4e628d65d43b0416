"""The demo scenario, run by `broker demo` (and `make demo`) against a local Kafka.

Westminster places a 15-year-old unaccompanied child with a trafficking concern, appoints a
guardian and refers her to the NRM; she goes missing within 48 hours; the police open and close a
missing-person report; the NRM decides. A second child is "away" with no concern. A forged event
is quarantined. Each agency's verified feed is then printed: who received what, under which
agreement; the police are refused other agencies' topics by Kafka; the auditor verifies and
replays the log.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from broker.config import TOPIC_QUARANTINE, BrokerConfig, load_config, topic_ingress
from broker.envelope import Envelope
from broker.feed import FeedReader
from broker.kafka.client import KafkaClients
from broker.kafka.credentials import AUDITOR, principal_of
from broker.kafka.local import ClusterAccess, LocalKafka
from broker.kafka.operator import provision
from broker.publish import Publisher, read_jsonl
from broker.scaffold import REPO_ROOT, write_deployment

EXAMPLE_EVENTS = REPO_ROOT / "examples" / "events"
SSDA903_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "ssda903-fake"
STATS_OUT = Path("var") / "demo" / "statistics"
DEMO_CHILD = "WCC-2026-0147"  # Westminster's reference for the child of the story
console = Console(width=140)


def run_demo(*, bootstrap: str | None = None) -> int:
    """Start a private Kafka (unless given one), run the scenario, stop what was started."""
    with tempfile.TemporaryDirectory(prefix="broker-demo-") as tmp:
        work = Path(tmp)
        if bootstrap is not None:
            return _scenario(ClusterAccess(bootstrap), work)
        kafka = LocalKafka(work / "kafka")
        took = kafka.start()
        console.print(
            f"Local Kafka ready in {took:.1f} s at {kafka.bootstrap_servers}: TLS, SCRAM-SHA-512 "
            "per principal, ACLs from the agency registry"
        )
        try:
            return _scenario(kafka.access(), work)
        finally:
            kafka.stop()
            console.print("Local Kafka stopped.")


def _scenario(access: ClusterAccess, work: Path) -> int:
    config = load_config(write_deployment(work / "deployment", bootstrap_servers=access))
    issued = provision(config)
    if issued:
        console.print(
            f"Operator: issued {len(issued)} Kafka credentials (one per principal), created the "
            "topics and applied the ACLs the agency registry implies"
        )
    console.rule("1. Agencies publish signed events")
    for path in sorted(EXAMPLE_EVENTS.glob("*.jsonl")):
        agency = path.stem
        publisher = Publisher(config, agency)
        try:
            with path.open("rb") as stream:
                report = publisher.publish_all(read_jsonl(stream, path.name))
        finally:
            publisher.close()
        types = ", ".join(f"{n} {t}" for t, n in sorted(report.published.items()))
        console.print(f"{agency}: published {report.total_published} ({types})")
    _publish_bad_input(config)

    console.rule("2. The router applies the data-sharing agreements")
    from broker.router.service import RouterService

    stats = RouterService(config, instance_id="demo").run(idle_exit_s=6)
    console.print(
        f"routed {stats.records} ingress records in {stats.batches} transaction(s): "
        f"{stats.forwarded} forwards, {stats.quarantined} quarantined"
    )

    console.rule("3. What each agency received (verified end to end)")
    failures = sum(_show_feed(config, agency) for agency in config.agency_ids)
    _show_quarantine(config)
    if config.kafka.secured:
        console.rule("3b. The transport refuses what an agency's agreements do not give it")
        _transport_refusals(config)
    config_path = work / "deployment" / "config.yaml"
    status = _national_collection(config, config_path)
    audited = _auditor(config_path)
    return 1 if failures else status or audited


def _national_collection(config: BrokerConfig, config_path: Path) -> int:
    """Backfill Westminster's SSDA903 return, route it, count the statistics feed."""
    from broker.cli import main as broker_main
    from broker.router.service import RouterService

    console.rule("4. National collection: an SSDA903 backfill, counted by `broker stats`")
    if not SSDA903_SAMPLE.is_dir():
        console.print(f"(skipped: no SSDA903 sample at {SSDA903_SAMPLE})")
        return 0
    agency = "council.E09000033"
    connect = ["connect", "council", "ssda903", "--config", str(config_path)]
    status = broker_main(
        [*connect, "--agency", agency, "--show-problems", "3", str(SSDA903_SAMPLE)]
    )
    stats = RouterService(config, instance_id="demo").run(idle_exit_s=6)
    console.print(f"routed {stats.records} more ingress records: {stats.forwarded} forwards")
    out = STATS_OUT.resolve()
    # Five reporting years ending with the sample return's busiest, 1 April 2017 to 31 March
    # 2018; councils named from the department's lookup (`--la-lookup`, default beside the
    # project), the report opening on Westminster.
    counted = broker_main(
        [
            "stats",
            "--config",
            str(config_path),
            "--out",
            str(out),
            "--rebuild",
            "--year",
            "2018",
            "--council",
            agency.removeprefix("council."),
        ]
    )
    return status or counted


def _auditor(config_path: Path) -> int:
    """The auditor's step: verify the chains, replay every decision, one child's disclosures."""
    from broker.cli import main as broker_main

    console.rule("5. The auditor: verify, replay, one child's disclosures, a forgery caught")
    config = ["--config", str(config_path)]
    verified = broker_main(["audit", "verify", *config])
    replayed = broker_main(["audit", "replay", *config])
    broker_main(["audit", "disclosures", *config, "--subject", DEMO_CHILD, "--format", "table"])
    caught = _forged_router_section(load_config(config_path))
    return verified or replayed or (0 if caught else 1)


def _forged_router_section(config: BrokerConfig) -> bool:
    """The signatures' line, were the transport's to fail: the police take an event from their
    own feed, re-address it to the NRM under an agreement that does not exist and sign the
    derived section with their own key. The NRM's verifier refuses it: only a router-role key
    of the configured router may sign a derived section."""
    import dataclasses

    from broker.audit.reader import TopicReader
    from broker.envelope import ForwardedEnvelope, VerificationError
    from broker.feed import FeedVerifier
    from broker.publish import agency_key

    console.print(
        "A forged record, as the police would make one if they could write to the NRM's feed:"
    )
    police = KafkaClients(config.kafka, principal_of("police.met"))
    with TopicReader(police) as reader:
        record = next(iter(reader.read_topic("feed.police.met")))
    copy = ForwardedEnvelope.from_bytes(record.value or b"")
    key = agency_key(config, "police.met")
    derived = dataclasses.replace(
        copy.derived,
        recipient="nrm.sca",
        agreements=("dsa.made-up@1",),
        router=key.agency_id,
        router_key_id=key.key_id,
    )
    signed = key.sign(copy.router_signing_input(derived))
    forged = dataclasses.replace(copy, derived=dataclasses.replace(derived, signature=signed))
    item = FeedVerifier.from_config(config, "nrm.sca").verify(0, 0, forged.to_bytes())
    error: VerificationError | None = item.error
    if item.event is None and error is not None:
        console.print(f"  the NRM's feed verifier: [green]refused[/green] ({error.code}): {error}")
        return True
    console.print(
        "  [red]the NRM's feed verifier accepted a derived section the police signed[/red]"
    )
    return False


def _publish_bad_input(config: BrokerConfig) -> None:
    """A forged signature, and a police event pushed onto a council's ingress topic."""
    publisher = Publisher(config, "police.met")
    try:
        event = {
            "event_type": "police.missing_report.opened",
            "subject": "MPS-MISPER-26-55999",
            "occurred_at": "2026-11-24T10:00:00Z",
            "fields": {"police_ref": "MPS-MISPER-26-55999", "force": "police.met"},
        }
        from broker.envelope import issue

        envelope = issue(event, issuer="police.met", key=publisher.key)
        wire = bytearray(envelope.to_bytes())
        wire[-5] ^= 0x01  # inside the signature
        publisher.producer.send(topic_ingress("police.met"), key=b"x", value=bytes(wire))
        publisher.producer.flush()
    finally:
        publisher.close()


def _transport_refusals(config: BrokerConfig) -> None:
    """The police try what their ACLs do not allow; Kafka refuses each, in the broker's words."""
    from kafka.errors import AuthorizationError

    from broker.audit.reader import TopicReader
    from broker.kafka.client import KafkaUnavailable, denied

    police = principal_of("police.met")
    clients = KafkaClients(config.kafka, police)

    def read_ingress() -> None:
        with TopicReader(clients) as reader:
            reader.partitions(topic_ingress("council.E09000033"))

    def read_nrm_feed() -> None:
        FeedReader(config, "nrm.sca", from_beginning=True, principal=police).close()

    def write_council_ingress() -> None:
        producer = clients.producer(max_block_ms=10000)
        try:
            producer.send(topic_ingress("council.E09000033"), value=b"junk").get(timeout=10)
        except AuthorizationError as exc:
            raise denied(police, exc, f"writing to {topic_ingress('council.E09000033')}") from None
        finally:
            producer.close()

    attempts: list[tuple[str, Callable[[], None]]] = [
        ("read ingress.council.E09000033", read_ingress),
        ("read feed.nrm.sca", read_nrm_feed),
        ("write to ingress.council.E09000033", write_council_ingress),
    ]
    for label, attempt in attempts:
        try:
            attempt()
        except KafkaUnavailable as exc:
            console.print(f"police.met tries to {label}: [green]refused[/green]: {exc}")
        else:
            console.print(f"[red]police.met could {label}: the ACLs are too wide[/red]")
    console.print(
        "police.met also sent one event with a forged signature on its own topic "
        "(the router quarantines it)"
    )


def _show_feed(config: BrokerConfig, agency: str) -> int:
    reader = FeedReader(config, agency, from_beginning=True)
    table = Table(title=f"feed.{agency}", title_justify="left", expand=True, show_lines=True)
    table.add_column("event / from / subject", no_wrap=True)
    table.add_column("fields received (issuer-signed)", ratio=3)
    table.add_column("derived (router-signed)", ratio=1)
    table.add_column("agreement", no_wrap=True)
    failed = 0
    try:
        for batch in reader.batches(follow=False):
            for item in batch:
                if item.event is None:
                    failed += 1
                    continue
                shown = item.event.to_json(reader.registry)
                received = [name for name, value in shown["fields"].items() if value is not None]
                subject = shown["subject"] or "(subject withheld)"
                table.add_row(
                    f"{shown['event_type']}\n{shown['issuer']}\n{subject}",
                    ", ".join(sorted(received)),
                    ", ".join(sorted(shown["derived"])),
                    "\n".join(shown["agreements"]),
                )
    finally:
        reader.close()
    if table.row_count:
        console.print(table)
    else:
        console.print(f"feed.{agency}: nothing (no agreement allows it anything here)")
    if failed:
        console.print(f"[red]{failed} event(s) failed verification in feed.{agency}[/red]")
    return failed


def _show_quarantine(config: BrokerConfig) -> None:
    from kafka import TopicPartition

    consumer = KafkaClients(config.kafka, AUDITOR).consumer(consumer_timeout_ms=2000)
    consumer.assign([TopicPartition(TOPIC_QUARANTINE, 0)])
    consumer.seek_to_beginning()
    for record in consumer:
        headers = dict(record.headers)
        try:
            event_type = Envelope.from_bytes(record.value).header.event_type
        except Exception:
            event_type = "undecodable"
        console.print(
            f"quarantine@{record.offset}: {headers['reason'].decode()} ({event_type}); "
            "original bytes kept"
        )
    consumer.close()
