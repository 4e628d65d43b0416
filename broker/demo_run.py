"""The demo scenario, run by `broker demo` (and `make demo`) against a local Kafka.

Westminster places a 15-year-old unaccompanied child with a trafficking concern, appoints a
guardian and refers her to the NRM; she goes missing within 48 hours; the police open and close a
missing-person report; the NRM decides. A second child is "away" with no concern. A forged event
is quarantined. Each agency's verified feed is then printed: who received what, under which
agreement; the police are refused other agencies' topics by Kafka; the auditor verifies and
replays the log. Then the alerts service watches the clocks of a second child (unaccompanied,
placed, guardian appointed) who goes missing: no police report within 2 hours, still missing at
24 and 48 hours, found but no return home interview within 72 hours; each alert arrives, verified,
in the police, council and guardian feeds its agreements allow.
"""

from __future__ import annotations

import tempfile
import time
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
from broker.scaffold import (
    ALERT_AGREEMENTS,
    ALERTS_ID,
    DEMO_AGENCIES,
    EXAMPLE_AGREEMENTS,
    REPO_ROOT,
    write_deployment,
)

EXAMPLE_EVENTS = REPO_ROOT / "examples" / "events"
ALERT_STORY = EXAMPLE_EVENTS / "alerts-story"
SSDA903_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "ssda903-fake"
STATS_OUT = Path("var") / "demo" / "statistics"
DEMO_CHILD = "WCC-2026-0147"  # Westminster's reference for the child of the story
console = Console(width=140)


def run_demo(*, bootstrap: str | ClusterAccess | None = None) -> int:
    """Start a private Kafka (unless given one), run the scenario, stop what was started."""
    with tempfile.TemporaryDirectory(prefix="broker-demo-") as tmp:
        work = Path(tmp)
        if bootstrap is not None:
            access = bootstrap if isinstance(bootstrap, ClusterAccess) else ClusterAccess(bootstrap)
            return _scenario(access, work)
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
    agreements = work / "agreements"  # the example agreements and the alerts service's
    agreements.mkdir()
    for source in [*EXAMPLE_AGREEMENTS.glob("*.yaml"), *ALERT_AGREEMENTS.glob("*.yaml")]:
        (agreements / source.name).write_text(source.read_text())
    config = load_config(write_deployment(
        work / "deployment",
        bootstrap_servers=access,
        agencies={**DEMO_AGENCIES, ALERTS_ID: "Safeguarding alerts service"},
        agreements_dir=agreements,
        alerts={"id": ALERTS_ID, "tick_s": 0.2},
    ))
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
    alerted = _live_alerts(config)
    config_path = work / "deployment" / "config.yaml"
    status = _national_collection(config, config_path)
    audited = _auditor(config_path)
    return 1 if failures or alerted else status or audited


def _live_alerts(config: BrokerConfig) -> int:
    """The alerts service on a story clock: raise, forward by agreement, show in each feed."""
    import threading
    from datetime import UTC, datetime

    from broker.alerts.service import AlertsService, ManualClock
    from broker.router.service import RouterService

    console.rule("3c. Live alerts: the broker notices what nobody did")
    clock = ManualClock(datetime(2026, 11, 26, 20, 5, tzinfo=UTC))
    router = RouterService(config, instance_id="demo")
    alerts = AlertsService(config, clock=clock, instance_id="demo")
    threads = [threading.Thread(target=service.run, daemon=True) for service in (router, alerts)]
    for thread in threads:
        thread.start()

    def publish(path: Path) -> None:
        publisher = Publisher(config, "council.E09000033")
        try:
            with path.open("rb") as stream:
                publisher.publish_all(read_jsonl(stream, path.name))
        finally:
            publisher.close()

    def until(count: int, what: str) -> bool:
        deadline = time.monotonic() + 60
        while alerts.raised_total < count and time.monotonic() < deadline:
            time.sleep(0.2)
        console.print(f"  service clock {clock().strftime('%a %d %b %H:%M')}: {what} "
                      f"({alerts.raised_total} alert(s) raised so far)")
        return alerts.raised_total >= count

    publish(ALERT_STORY / "council.E09000033.jsonl")
    console.print("Westminster places an unaccompanied child (WCC-2026-0212), appoints a guardian; "
                  "he goes missing at 20:00 on 26 Nov; no police report follows.")
    steps = [
        (datetime(2026, 11, 26, 20, 5, tzinfo=UTC), 3, "unaccompanied child missing (at once); "
         "the story's first child, met late, too"),
        (datetime(2026, 11, 26, 22, 5, tzinfo=UTC), 4, "no police report after 2 hours"),
        (datetime(2026, 11, 28, 20, 5, tzinfo=UTC), 6, "still missing after 24 and 48 hours"),
    ]
    ok = True
    for at, count, what in steps:
        clock.set(at)
        ok = until(count, what) and ok
    publish(ALERT_STORY / "found.council.E09000033.jsonl")
    console.print("He is found at 08:00 on 29 Nov; no return home interview is recorded.")
    clock.set(datetime(2026, 12, 2, 8, 5, tzinfo=UTC))
    ok = until(7, "no return home interview within 72 hours") and ok
    time.sleep(3)  # the router forwards the last alerts
    router.stop()
    alerts.stop()
    for thread in threads:
        thread.join(timeout=60)
    for agency in ("police.met", "council.E09000033", "guardian.ictg"):
        _show_alerts(config, agency)
    if not ok:
        console.print("[red]the alerts service did not raise every alert of the story[/red]")
    return 0 if ok else 1


def _show_alerts(config: BrokerConfig, agency: str) -> None:
    from broker.alerts.display import is_alert

    reader = FeedReader(config, agency, from_beginning=True)
    table = Table(title=f"alerts in feed.{agency} (verified)", title_justify="left", expand=True,
                  show_lines=True)
    for column in ("priority", "alert / child", "since / due", "what to do"):
        table.add_column(column, ratio=2 if column == "what to do" else 1)
    try:
        for batch in reader.batches(follow=False):
            for item in batch:
                if item.event is None:
                    continue
                shown = item.event.to_json(reader.registry)
                if not is_alert(shown):
                    continue
                f = shown["fields"]
                table.add_row(
                    str(f.get("priority")).upper(),
                    f"{f.get('title')}\nchild {f.get('la_child_id')} ({f.get('stage')})",
                    f"{f.get('clock_started_at')}\n{f.get('due_at')}",
                    str(f.get("action")),
                )
    finally:
        reader.close()
    console.print(table if table.row_count else f"feed.{agency}: no alerts")


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
