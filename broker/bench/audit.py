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


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def measure(config_path: Path, *, workers: int = 1) -> dict[str, Any]:
    """Time verify, replay and a plain read of the ingress topics on one deployment."""
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

    def plain_read() -> int:
        count = 0
        with TopicReader(clients) as reader:
            spans = [s for a in config.agency_ids for s in _spans(reader, topic_ingress(a))]
            for batch in reader.read(spans):
                count += len(batch)
        return count

    verified, verify_s = _timed(verify)
    read_count, read_s = _timed(plain_read)
    replayed, replay_s = _timed(lambda: replay_log(config, workers=workers))
    return {
        "decisions": verified.records,
        "checkpoints": verified.checkpoints,
        "verify_findings": len(verified.findings),
        "verify_seconds": round(verify_s, 2),
        "verify_records_per_second": round(verified.records / verify_s),
        "ingress_records": read_count,
        "plain_read_seconds": round(read_s, 2),
        "plain_read_records_per_second": round(read_count / read_s),
        "replay_findings": len(replayed.findings),
        "replay_compared": replayed.compared,
        "replay_seconds": round(replay_s, 2),
        "replay_records_per_second": round(replayed.ingress_records / replay_s),
        "replay_to_plain_read": round(read_s / replay_s, 3),
        "replay_workers": workers,
    }


def _spans(reader: Any, topic: str) -> Iterator[Any]:
    from broker.audit.reader import TopicNotFound

    try:
        yield from reader.spans(topic)
    except TopicNotFound:
        return


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decisions", type=int, default=100_000, help="decisions to make")
    parser.add_argument("--bootstrap", help="use this (fresh) Kafka instead of starting one")
    parser.add_argument(
        "--config", type=Path, help="measure an existing deployment as it is (no publishing)"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="replay worker processes"
    )


def run(args: argparse.Namespace) -> int:
    if args.config is not None:
        _print(measure(args.config, workers=args.workers))
        return 0
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
        router={"checkpoint_interval_s": 5.0, "batch_max_records": 2000},
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
    return 0 if figures["verify_findings"] == 0 and figures["replay_findings"] == 0 else 1


def _print(figures: dict[str, Any]) -> None:
    print(
        f"verify: {figures['decisions']} decisions, {figures['checkpoints']} checkpoints in "
        f"{figures['verify_seconds']} s = {figures['verify_records_per_second']:,} records/s "
        f"(goal >= 20,000); findings {figures['verify_findings']}"
    )
    print(
        f"plain read of the ingress topics: {figures['ingress_records']} records in "
        f"{figures['plain_read_seconds']} s = {figures['plain_read_records_per_second']:,} "
        "records/s"
    )
    print(
        f"replay: {figures['replay_compared']} decisions re-evaluated in "
        f"{figures['replay_seconds']} s = {figures['replay_records_per_second']:,} records/s "
        f"({figures['replay_workers']} worker process(es)); "
        f"findings {figures['replay_findings']}"
    )
    print(f"replay / plain read: {figures['replay_to_plain_read']} (goal >= 0.3)")
