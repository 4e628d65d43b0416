"""Audit verify and replay throughput against a real Kafka (100,000 decisions by default).

Method: realistic events (two councils, the Met and the NRM; every event type) are signed and
published to the ingress topics, and the real routing service routes them (Kafka transactions,
feeds, audit records, checkpoints), so both the audit log and the ingress topics are exactly what
production writes. Then, in the same run: `verify` (read both audit topics and verify them),
`replay` (re-read every ingress topic, re-verify, re-evaluate, compare), and a plain read of the
same ingress topics with the same reader and no evaluation, for the ratio. A private local Kafka
is started unless `--bootstrap` names one (it must not hold this deployment's topics yet).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from broker.bench import bench_kafka
from broker.kafka.credentials import AUDITOR
from broker.kafka.local import ClusterAccess

COUNCILS = ("council.E09000033", "council.E09000022")
POLICE = "police.met"
NRM = "nrm.sca"
GUARDIAN = "guardian.ictg"
_FIRST = ("Amira", "Daniel", "Kofi", "Lena", "Mo", "Priya", "Sam", "Tomasz", "Yusuf", "Zara")
_LAST = ("Ahmed", "Brown", "Chen", "Doyle", "Evans", "Hussain", "Kowalski", "Mensah", "Okoro")
_DISTRICTS = ("W2", "W9", "SW9", "SE5", "SE11", "NW8", "SW1V", "SE17")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scenario(
    children: int, *, seed: int = 7, tag: str | None = None, start: datetime | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Events per issuing agency for `children` looked-after children per council.

    Each child: care started, sometimes a guardian appointed, one or two missing episodes (the
    Met opens and closes a report), a return home interview, sometimes an NRM referral by the
    council and the NRM's decisions, sometimes a placement change or care ending. About 10
    events per child. Subject references are opaque and unique per `tag`.
    """
    from broker.agreements.transforms import age_band
    from broker.schemas import SchemaRegistry

    schemas = SchemaRegistry.default()
    rng = random.Random(seed)
    tag = tag or uuid.uuid4().hex[:6]
    t0 = start or datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    out: dict[str, list[dict[str, Any]]] = {a: [] for a in (*COUNCILS, POLICE, NRM)}
    for c, council in enumerate(COUNCILS):
        code = council.split(".")[1]
        for i in range(children):
            at = t0 + timedelta(minutes=7 * i + c)
            subject = f"{code}-{tag}-{i:06d}"
            child_id = f"LA{c}{i:07d}"
            dob = date(2009 + rng.randrange(8), 1 + rng.randrange(12), 1 + rng.randrange(28))
            sex = rng.choice("mfu")
            trafficking = rng.random() < 0.3
            base = {
                "la_child_id": child_id,
                "first_name": rng.choice(_FIRST),
                "last_name": rng.choice(_LAST),
                "dob": dob.isoformat(),
                "age_band": age_band(dob, at),
                "sex": sex,
                "uasc": rng.random() < 0.2,
                "trafficking_concern": trafficking,
                "exploitation_concerns": ["cce", "gangs"] if trafficking else [],
            }
            district = rng.choice(_DISTRICTS)
            events = out[council]

            def event(
                kind: str,
                when: datetime,
                fields: dict[str, Any],
                events: list[dict[str, Any]] = events,
                subject: str = subject,
                base: dict[str, Any] = base,
            ) -> None:
                events.append(
                    {
                        "event_type": kind,
                        "subject": subject,
                        "occurred_at": _iso(when),
                        "fields": {
                            **{k: v for k, v in base.items() if k in schemas.fields(kind)},
                            **fields,
                        },
                    }
                )

            event(
                "child.care.started",
                at,
                {
                    "legal_status": rng.choice(("C2", "V2", "J2")),
                    "category_of_need": rng.choice(("N1", "N2", "N4")),
                    "placement_type": rng.choice(("K2", "U1", "R1")),
                    "placement_provider": rng.choice(("PR1", "PR2", "PR4")),
                    "placement_postcode": f"{district} {rng.randrange(10)}AB",
                    "placement_postcode_district": district,
                    "home_postcode": f"SE1 {rng.randrange(10)}XY",
                    "ethnicity": rng.choice(("WBRI", "BAFR", "AOTH", "MWBC")),
                },
            )
            if trafficking or i % 4 == 0:
                event(
                    "guardian.appointed",
                    at + timedelta(hours=2),
                    {"guardian_service": GUARDIAN, "appointed_on": (at.date()).isoformat()},
                )
            for episode in range(1 + (i % 3 == 0)):
                gone = at + timedelta(days=3 + 10 * episode)
                back = gone + timedelta(hours=20)
                missing_type = "M" if (i + episode) % 2 == 0 else "A"
                risk = rng.choice(("low", "medium", "high"))
                event(
                    "child.missing.started",
                    gone,
                    {
                        "missing_type": missing_type,
                        "missing_since": _iso(gone),
                        "risk_level": risk,
                        "last_seen_location": "near the station",
                        "last_seen_postcode_district": rng.choice(_DISTRICTS),
                        "placement_postcode_district": district,
                        "physical_description": "slim, dark hair",
                        "clothing": "black hoodie",
                        "phone_numbers": "07700 900000",
                        "photo_ref": f"photo-{child_id}",
                    },
                )
                ref = f"MET-{tag}-{c}-{i:06d}-{episode}"
                out[POLICE].append(
                    {
                        "event_type": "police.missing_report.opened",
                        "subject": ref,
                        "occurred_at": _iso(gone + timedelta(hours=1)),
                        "fields": {
                            "police_ref": ref,
                            "force": "MPS",
                            "risk_level": risk,
                            "la_child_id": child_id,
                            "local_authority": council,
                            "first_name": base["first_name"],
                            "last_name": base["last_name"],
                            "dob": base["dob"],
                            "age_band": base["age_band"],
                            "trafficking_concern": trafficking,
                        },
                    }
                )
                event(
                    "child.missing.ended",
                    back,
                    {
                        "missing_type": missing_type,
                        "missing_since": _iso(gone),
                        "missing_until": _iso(back),
                        "found_location": "friend's address",
                        "found_postcode_district": rng.choice(_DISTRICTS),
                    },
                )
                out[POLICE].append(
                    {
                        "event_type": "police.missing_report.closed",
                        "subject": ref,
                        "occurred_at": _iso(back + timedelta(minutes=30)),
                        "fields": {
                            "police_ref": ref,
                            "force": "MPS",
                            "found_at": _iso(back),
                            "found_postcode_district": rng.choice(_DISTRICTS),
                            "outcome": "found_safe",
                            "la_child_id": child_id,
                            "local_authority": council,
                        },
                    }
                )
                event(
                    "child.return_interview.recorded",
                    back + timedelta(days=2),
                    {
                        "rhi_offered": True,
                        "rhi_accepted": rng.random() < 0.7,
                        "interview_date": (back + timedelta(days=2)).date().isoformat(),
                        "within_72_hours": True,
                        "exploitation_disclosed": trafficking and rng.random() < 0.5,
                    },
                )
            if trafficking:
                referral = f"NRM-{tag}-{c}-{i:06d}"
                referred = at + timedelta(days=30)
                event(
                    "nrm.referral.submitted",
                    referred,
                    {
                        "referral_id": referral,
                        "first_responder": council,
                        "first_responder_type": "local_authority",
                        "local_authority": council,
                        "age_at_exploitation": "child",
                        "nationality": rng.choice(("British", "Albanian", "Vietnamese")),
                        "gender": {"m": "male", "f": "female", "u": "unknown"}[sex],
                        "exploitation_types": ["criminal"],
                        "exploitation_location": "uk",
                    },
                )
                for stage, days in (("reasonable_grounds", 5), ("conclusive_grounds", 90)):
                    decided = referred + timedelta(days=days)
                    out[NRM].append(
                        {
                            "event_type": "nrm.decision.made",
                            "subject": referral,
                            "occurred_at": _iso(decided),
                            "fields": {
                                "referral_id": referral,
                                "first_responder": council,
                                "stage": stage,
                                "outcome": "positive",
                                "decision_date": decided.date().isoformat(),
                            },
                        }
                    )
            if i % 5 == 1:
                event(
                    "child.placement.changed",
                    at + timedelta(days=40),
                    {
                        "placement_type": "U1",
                        "placement_provider": "PR1",
                        "placement_postcode": f"{district} 1AB",
                        "placement_postcode_district": district,
                        "reason": "CARPL",
                    },
                )
            if i % 7 == 2:
                event("child.care.ended", at + timedelta(days=60), {"reason": "E8"})
    return out


def events_per_child() -> float:
    """Mean events per child of `scenario` (for sizing a run)."""
    events = scenario(200, seed=1, tag="size")
    return sum(len(v) for v in events.values()) / 400


def publish_and_route(
    config_path: Path, events: dict[str, list[dict[str, Any]]], *, idle_exit_s: float = 5.0
) -> dict[str, Any]:
    """Publish every agency's events, then route them all with the real routing service."""
    from broker.config import load_config
    from broker.publish import Publisher
    from broker.router.service import RouterService

    config = load_config(config_path)
    started = time.perf_counter()
    published = 0
    for agency, items in events.items():
        publisher = Publisher(config, agency)
        try:
            report = publisher.publish_all((f"{agency}:{n}", e) for n, e in enumerate(items))
        finally:
            publisher.close()
        if report.rejected:
            where, reason = report.rejected[0]
            raise RuntimeError(f"scenario event rejected at {where}: {reason}")
        published += report.total_published
    publish_s = time.perf_counter() - started
    started = time.perf_counter()
    stats = RouterService(config).run(idle_exit_s=idle_exit_s)
    route_s = time.perf_counter() - started - idle_exit_s
    return {
        "published": published,
        "publish_seconds": round(publish_s, 1),
        "routed": stats.records,
        "route_seconds": round(route_s, 1),
    }


def _timed(fn: Any) -> tuple[Any, float, float]:
    """`fn()`, the wall-clock seconds it took and the CPU seconds it cost: this process's (all
    threads) plus its children's that ended meanwhile (replay's worker processes)."""
    import resource

    def cpu() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    start, start_cpu = time.perf_counter(), cpu()
    result = fn()
    return result, time.perf_counter() - start, cpu() - start_cpu


Sampled = tuple[bytes, int | None]  # an ingress record's value and Kafka timestamp (ms)


def measure(config_path: Path, *, workers: int = 2, sample: int = 2000) -> dict[str, Any]:
    """Time verify, a plain read of the ingress topics, replay with one process and with
    `workers`, and the replay floor on up to `sample` of the ingress records read."""
    from broker.audit.cli import key_lookup, read_values, replay_log
    from broker.audit.reader import TopicReader
    from broker.audit.verify import verify_log
    from broker.config import TOPIC_AUDIT, TOPIC_CHECKPOINTS, load_config, topic_ingress
    from broker.envelope import KeyRegistry
    from broker.kafka.client import KafkaClients

    config = load_config(config_path)
    clients = KafkaClients(config.kafka, AUDITOR)

    def verify() -> Any:
        with TopicReader(clients) as reader:
            decisions = read_values(reader, TOPIC_AUDIT)
            checkpoints = read_values(reader, TOPIC_CHECKPOINTS)
        keys = key_lookup(KeyRegistry.from_dir(config.keys_dir), config.router.id)
        return verify_log(decisions, checkpoints, keys)

    def plain_read() -> tuple[int, list[Sampled]]:
        count, kept = 0, list[Sampled]()
        with TopicReader(clients) as reader:
            spans = [s for a in config.agency_ids for s in _spans(reader, topic_ingress(a))]
            step = max(1, -(-sum(s.size for s in spans) // max(1, sample)))  # ceiling
            for batch in reader.read(spans):
                for message in batch:
                    if count % step == 0 and message.value is not None:
                        kept.append((message.value, message.timestamp))
                    count += 1
        return count, kept

    verified, verify_s, _ = _timed(verify)
    (read_count, kept), read_s, read_cpu = _timed(plain_read)
    single, single_s, single_cpu = _timed(lambda: replay_log(config, workers=1))
    figures: dict[str, Any] = {
        "decisions": verified.records,
        "checkpoints": verified.checkpoints,
        "verify_findings": len(verified.findings),
        "verify_seconds": round(verify_s, 2),
        "verify_records_per_second": round(verified.records / verify_s),
        "ingress_records": read_count,
        "plain_read_seconds": round(read_s, 2),
        "plain_read_records_per_second": round(read_count / read_s),
        "plain_read_cpu_us": read_cpu / read_count * 1e6,
        "replay_findings": len(single.findings),
        "replay_compared": single.compared,
        "replay_seconds": round(single_s, 2),
        "replay_records_per_second": round(single.ingress_records / single_s),
        "replay_cpu_us": single_cpu / single.ingress_records * 1e6,
        "replay_to_plain_read": round(read_s / single_s, 3),
        "replay_workers": workers,
    }
    if workers > 1:
        many, many_s, many_cpu = _timed(lambda: replay_log(config, workers=workers))
        figures |= {
            "workers_findings": len(many.findings),
            "workers_same_report": _same(single, many),
            "workers_seconds": round(many_s, 2),
            "workers_records_per_second": round(many.ingress_records / many_s),
            "workers_cpu_us": many_cpu / many.ingress_records * 1e6,
        }
    figures["floor"], figures["floor_sample"] = replay_floor(config, kept)
    return figures


def _same(one: Any, other: Any) -> bool:
    """Whether two replay reports say the same (counts, outcomes and findings)."""
    fields = ("ingress_records", "compared", "learned", "pending", "decisions", "outcomes")
    return all(getattr(one, f) == getattr(other, f) for f in fields) and [
        str(f) for f in one.findings
    ] == [str(f) for f in other.findings]


def replay_floor(
    config: Any, sampled: list[Sampled], repeat: int = 5
) -> tuple[dict[str, float], int]:
    """What replay must do per ingress record, each at its bare cost on real ingress records
    (`sampled`): decode the envelope, verify its issuer signature (bare Ed25519) and evaluate
    the agreements. CPU µs per record, in this process (`broker.bench.interleaved_costs`); and
    how many of the records were used (those that verify: a duplicate does, a forgery not)."""
    import itertools
    from datetime import timedelta

    from broker.agreements import SubjectContext
    from broker.audit.reader import TopicReader
    from broker.bench import interleaved_costs, median_costs
    from broker.envelope import Envelope, VerificationError, canonical, verify_envelope
    from broker.envelope.keys import ROLE_ISSUER
    from broker.ingress import event_view, record_time
    from broker.kafka.client import KafkaClients
    from broker.registry.live import RegistryHistory
    from broker.schemas import SchemaRegistry

    with TopicReader(KafkaClients(config.kafka, AUDITOR)) as reader:
        keys, agreements = RegistryHistory.from_config(config, reader).latest()
    registry = SchemaRegistry.default()
    skew = timedelta(seconds=config.router.max_clock_skew_s)
    prepared = []
    for value, timestamp in sampled:
        received = record_time(timestamp)
        try:
            envelope = Envelope.from_bytes(value, registry)
            event = verify_envelope(
                envelope, keys, received_at=received, max_skew=skew, registry=registry
            )
            header = envelope.header
            at = received or header.issued_at
            key = keys.lookup(header.issuer, header.key_id, at, role=ROLE_ISSUER)
        except VerificationError:
            continue
        signed = canonical.issuer_signing_input(
            header.to_bytes(), envelope.digests, version=header.version
        )
        prepared.append((value, key, envelope.signature, signed, event_view(event), at))
    if not prepared:
        raise RuntimeError("no ingress record verifies: nothing to measure the floor on")
    decode, verify, decide = (itertools.cycle(prepared) for _ in range(3))

    def decode_one() -> object:
        return Envelope.from_bytes(next(decode)[0], registry)

    def verify_one() -> object:
        _, key, signature, signed, _, _ = next(verify)
        return key.verify(signature, signed)

    def decide_one() -> object:
        *_, view, at = next(decide)
        # Replay compares derived values by name: any key will do, as in replay itself.
        return agreements.decide(
            view, now=at, context=SubjectContext(), pseudonym_key=lambda _: bytes(32)
        )

    actions = {"decode": decode_one, "verify": verify_one, "decide": decide_one}
    return median_costs(interleaved_costs(actions, len(prepared), repeat)), len(prepared)


def _spans(reader: Any, topic: str) -> Iterator[Any]:
    from broker.audit.reader import TopicNotFound

    try:
        yield from reader.spans(topic)
    except TopicNotFound:
        return


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from broker.audit.cli import worker_count

    parser.add_argument("--decisions", type=int, default=100_000, help="decisions to make")
    parser.add_argument("--bootstrap", help="use this (fresh) Kafka instead of starting one")
    parser.add_argument(
        "--config", type=Path, help="measure an existing deployment as it is (no publishing)"
    )
    parser.add_argument(
        "--workers",
        type=worker_count,
        default=max(2, os.cpu_count() or 1),
        help="replay worker processes of the scaled-out replay, compared with one (default: "
        "one per CPU, at least 2; 1: no comparison)",
    )


def run(args: argparse.Namespace) -> int:
    if args.config is not None:
        figures = measure(args.config, workers=args.workers)
        _print(figures)
        return _status(figures)
    with (
        tempfile.TemporaryDirectory(prefix="broker-bench-audit-") as tmp,
        bench_kafka(args.bootstrap, Path(tmp) / "kafka") as bootstrap,
    ):
        return _run_on(Path(tmp), bootstrap, args.decisions, args.workers)


def _run_on(directory: Path, bootstrap: ClusterAccess, decisions: int, workers: int) -> int:
    from broker.config import load_config
    from broker.kafka.operator import provision
    from broker.scaffold import write_deployment

    config = write_deployment(
        directory / "deployment",
        bootstrap_servers=bootstrap,
        # The router's default batch: on a loaded machine a batch of 2,000 outlived the
        # transaction timeout, and the router retried it for ever (routing is not measured).
        router={"checkpoint_interval_s": 5.0},
    )
    provision(load_config(config))  # credentials, topics and ACLs on a secured cluster
    children = max(1, round(decisions / events_per_child() / len(COUNCILS)))
    events = scenario(children)
    total = sum(len(v) for v in events.values())
    print(f"publishing and routing {total} events ({children} children per council)...")
    made = publish_and_route(config, events)
    print(
        f"published {made['published']} in {made['publish_seconds']} s; routed "
        f"{made['routed']} in about {made['route_seconds']} s"
    )
    figures = measure(config, workers=workers)
    _print(figures)
    return _status(figures)


def _status(figures: dict[str, Any]) -> int:
    """0 when verify and every replay found nothing, and the replays agree."""
    clean = not figures["verify_findings"] and not figures["replay_findings"]
    if "workers_findings" in figures:
        clean = clean and not figures["workers_findings"] and figures["workers_same_report"]
    return 0 if clean else 1


def _ok(passed: bool) -> str:
    return "met" if passed else "MISSED"


def _print(figures: dict[str, Any]) -> None:
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores, load average {load:.1f} (1 min) at the end of the run")
    rate = figures["verify_records_per_second"]
    print(
        f"verify: {figures['decisions']} decisions, {figures['checkpoints']} checkpoints in "
        f"{figures['verify_seconds']} s = {rate:,} records/s "
        f"(goal >= 20,000: {_ok(rate >= 20_000)}); findings {figures['verify_findings']}"
    )
    print(
        f"plain read of the ingress topics: {figures['ingress_records']} records in "
        f"{figures['plain_read_seconds']} s = {figures['plain_read_records_per_second']:,} "
        f"records/s, {figures['plain_read_cpu_us']:.0f} µs CPU/record"
    )
    print(
        f"replay, 1 process: {figures['replay_compared']} decisions re-evaluated in "
        f"{figures['replay_seconds']} s = {figures['replay_records_per_second']:,} records/s, "
        f"{figures['replay_cpu_us']:.0f} µs CPU/record; findings {figures['replay_findings']}"
    )
    workers = figures["replay_workers"]
    if "workers_findings" in figures:
        scale = figures["workers_records_per_second"] / figures["replay_records_per_second"]
        same = "the same report" if figures["workers_same_report"] else "a DIFFERENT report"
        print(
            f"replay, {workers} worker processes: {figures['workers_seconds']} s = "
            f"{figures['workers_records_per_second']:,} records/s, "
            f"{figures['workers_cpu_us']:.0f} µs CPU/record (all processes); findings "
            f"{figures['workers_findings']}, {same} as 1 process"
        )
        print(
            f"replay {workers} workers / 1 process: {scale:.2f} by records/s (goal >= 1.7 on "
            f"two cores: {_ok(scale >= 1.7)}); CPU per record "
            f"{figures['workers_cpu_us'] / figures['replay_cpu_us']:.2f}"
        )
    parts = figures["floor"]
    floor = sum(parts.values())
    print(
        f"replay floor: {floor:.0f} µs CPU/record = "
        + " + ".join(f"{label} {cost:.0f}" for label, cost in parts.items())
        + f" (bare costs on {figures['floor_sample']} of the ingress records, this process)"
    )
    ratio = figures["replay_cpu_us"] / floor
    print(
        f"replay / floor: {ratio:.2f} (CPU per record, 1 process; goal <= 1.5: "
        f"{_ok(ratio <= 1.5)}); with the plain read's CPU added to the floor "
        f"{figures['replay_cpu_us'] / (floor + figures['plain_read_cpu_us']):.2f}"
    )
    print(
        f"replay / plain read: {figures['replay_to_plain_read']} by records/s, 1 process "
        "(the earlier goal of 0.3, re-based by issue 19 on the floor above)"
    )
