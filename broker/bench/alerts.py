"""`broker bench alerts`: alert latency at a fixed rate; its cost per event against the router's.

On one secured Kafka (a local one unless `--bootstrap` names another), the router and the alerts
service run as their own processes. Signed `child.missing.started` events are published at a
fixed rate (default 200/s). By default every one is for an unaccompanied child with a trafficking
concern, so each makes the alerts service raise the immediate `trafficked-child-missing` alert,
which the router forwards to the police: the worst case, two records routed per event. With
`--raising F` only that share of the events does (evenly spread); the others are children
missing with neither, which the router forwards and the alerts service reads and keeps clocks for
as it would, but which raise nothing in the bench's window (live traffic is mostly such events).
The time from publishing a triggering event to its alert being readable by a `read_committed`
consumer of the police feed gives p50/p99 (goal p99 < 1 s). The bench's own work
stays out of that window: the events are signed before it, and the police feed records are
verified after it (done as they came, on two cores, it took the cores the services needed and
made the services look slower). In the same run, the CPU time each process spent over the load
(from /proc) divided by the events it handled gives the cost per event of the alerts service and
of the router, and their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.bench import bench_kafka
from broker.kafka.local import ClusterAccess

_WESTMINSTER = "council.E09000033"
_POLICE = "police.met"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to publish")
    parser.add_argument("--raising", type=_share, default=1.0, metavar="F",
                        help="share of the events that raise an alert at once (default 1: all)")
    parser.add_argument("--bootstrap", default=None,
                        help="use this secured Kafka (with --kafka-ca, --kafka-credentials)")
    parser.add_argument("--kafka-ca", type=Path, default=None, metavar="FILE")
    parser.add_argument("--kafka-credentials", type=Path, default=None, metavar="DIR")


def run(args: argparse.Namespace) -> int:
    external = None
    if args.bootstrap:
        external = ClusterAccess(args.bootstrap, args.kafka_ca, args.kafka_credentials)
    with tempfile.TemporaryDirectory() as tmp, bench_kafka(external, Path(tmp) / "kafka") as kafka:
        return _measure(kafka, Path(tmp), args.rate, args.seconds, args.raising)


def _share(text: str) -> float:
    share = float(text)
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError("a share above 0 and at most 1, e.g. 0.2")
    return share


def _raises(n: int, share: float) -> bool:
    """Whether load event `n` is one that raises an alert: `share` of them, evenly spread."""
    return int((n + 1) * share) > int(n * share)


def _deployment(directory: Path, access: ClusterAccess) -> tuple[Path, dict[str, str]]:
    from broker.scaffold import (
        ALERT_AGREEMENTS,
        ALERT_RULES,
        ALERTS_ID,
        DEMO_AGENCIES,
        EXAMPLE_AGREEMENTS,
        write_deployment,
    )

    suffix = uuid.uuid4().hex[:8]
    names = {**DEMO_AGENCIES, ALERTS_ID: "alerts"}
    ids = {agency: f"{agency}_{suffix}" for agency in names}
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, ids)) + r")(?![\w-])")
    for source_dir, target in ((EXAMPLE_AGREEMENTS, "agreements"),
                               (ALERT_AGREEMENTS, "agreements"), (ALERT_RULES, "rules")):
        (directory / target).mkdir(parents=True, exist_ok=True)
        for source in source_dir.glob("*.yaml"):
            text = pattern.sub(lambda m: ids[m.group(1)], source.read_text())
            (directory / target / source.name).write_text(text)
    config = write_deployment(
        directory, bootstrap_servers=access,
        agencies={ids[a]: name for a, name in names.items()},
        agreements_dir=directory / "agreements", partitions=3,
        router={"group_id": f"bench-router-{suffix}", "instance_id": "bench"},
        alerts={"id": ids[ALERTS_ID], "rules_dir": str(directory / "rules"), "tick_s": 1.0,
                "poll_timeout_ms": 20},
    )
    return config, ids


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(
    access: ClusterAccess, scratch: Path, rate: float, seconds: float, share: float
) -> int:
    from kafka import TopicPartition

    from broker.config import load_config, topic_feed, topic_ingress
    from broker.envelope import issue
    from broker.feed import FeedVerifier
    from broker.kafka.client import KafkaClients
    from broker.kafka.credentials import principal_of
    from broker.kafka.operator import provision
    from broker.publish import agency_key
    from broker.schemas import SchemaRegistry

    config_path, ids = _deployment(scratch / "deployment", access)
    config = load_config(config_path)
    provision(config)
    council, police = ids[_WESTMINSTER], ids[_POLICE]
    log = scratch / "services.log"
    procs = {}
    with log.open("ab") as out:
        for name, args in (("router", ["route", "--instance", "bench"]), ("alerts", ["alerts"])):
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "broker.cli", args[0], "--config", str(config_path),
                 *args[1:]], stdout=out, stderr=subprocess.STDOUT)
    try:
        registry = SchemaRegistry.default()
        key = agency_key(config, council)
        producer = KafkaClients(config.kafka, principal_of(council)).producer(linger_ms=0)
        verifier = FeedVerifier.from_config(config, police)
        reader = KafkaClients(config.kafka, principal_of(police)).consumer(group_id=None)
        feed = topic_feed(police)
        parts = [TopicPartition(feed, p) for p in sorted(reader.partitions_for_topic(feed) or [])]
        reader.assign(parts)
        reader.seek_to_end(*parts)
        published: dict[str, float] = {}
        children: dict[str, str] = {}  # event id -> child
        arrived: dict[str, float] = {}  # child -> alert readable in the police feed
        latencies: list[float] = []
        # (when readable, partition, offset, value, Kafka timestamp) of each police feed
        # record: verified after the timed window, so that the bench's own work does not take
        # the cores the services need (see `_verify_arrivals`).
        arrivals: list[tuple[float, int, int, bytes, int]] = []
        done = threading.Event()

        def read() -> None:
            while not done.is_set():
                for tp, records in reader.poll(timeout_ms=50).items():
                    got = time.time()
                    arrivals.extend(
                        (got, tp.partition, r.offset, r.value, r.timestamp) for r in records
                    )

        def collect() -> None:
            """Verify the records that arrived since the last call; note the alerts' times."""
            for got, partition, offset, value, timestamp in _take(arrivals):
                event = verifier.verify(partition, offset, value, timestamp).event
                if event is None or event.event_type != "alert.raised":
                    continue
                trigger = str(event.fields.get("trigger_event_id"))
                sent = published.get(trigger)
                if sent is not None:
                    latencies.append(got - sent)
                    arrived[children[trigger]] = got

        def sign(n: int, tag: str, raises: bool = True) -> tuple[str, str, bytes]:
            child = f"bench-{tag}-{n:06d}"
            envelope = issue({
                "event_type": "child.missing.started", "subject": child,
                "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "fields": {"la_child_id": child, "missing_type": "M",
                           "risk_level": "high" if raises else "medium",
                           "trafficking_concern": raises, "uasc": raises,
                           "missing_since": datetime.now(UTC).isoformat()},
            }, issuer=council, key=key, registry=registry)
            children[envelope.header.event_id] = child
            return envelope.header.event_id, child, envelope.to_bytes(registry)

        def send(signed: tuple[str, str, bytes]) -> None:
            event_id, child, value = signed
            published[event_id] = time.time()
            producer.send(topic_ingress(council), key=child.encode(), value=value)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        # Warm-up: both services joined, one alert through end to end.
        send(sign(0, "warm"))
        deadline = time.monotonic() + 120
        while not latencies:
            collect()
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs.values()):
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                print("the services did not raise the warm-up alert", file=sys.stderr)
                return 1
            time.sleep(0.1)
        count = int(rate * seconds)
        raises = [_raises(n, share) for n in range(count)]
        raising = sum(raises)
        signed_load = [sign(n, "load", raises[n]) for n in range(count)]  # before the window
        collect()
        latencies.clear()
        cpu_before = {name: _cpu_seconds(p.pid) for name, p in procs.items()}
        start = time.monotonic()
        for n, signed in enumerate(signed_load):
            wait = start + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            send(signed)
        producer.flush()
        # Each event brings a police feed record (its forward), each raising one a second
        # (its alert); wait for them, or until nothing more has come for 5 s once there is one
        # per event.
        deadline, last, quiet_since = time.monotonic() + 60, -1, time.monotonic()
        while len(arrivals) < count + raising and time.monotonic() < deadline:
            if len(arrivals) != last:
                last, quiet_since = len(arrivals), time.monotonic()
            elif last >= count and time.monotonic() - quiet_since > 5:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # anything still on its way
        cpu = {name: _cpu_seconds(p.pid) - cpu_before[name] for name, p in procs.items()}
        done.set()
        thread.join(timeout=5)
        collect()
        reader.close(autocommit=False)
        producer.close()
    finally:
        for proc in procs.values():
            with contextlib.suppress(Exception):
                proc.terminate()
                proc.wait(timeout=60)
    load = {children[e]: t for e, t in published.items() if "-load-" in children[e]}
    hops = _hops(config, ids, load, arrived)
    got = sorted(latencies)
    if not got:
        print("no alert arrived in the police feed", file=sys.stderr)
        return 1
    p50 = got[len(got) // 2]
    p99 = got[min(len(got) - 1, round(0.99 * (len(got) - 1)))]
    # The router handles each event and each alert; the alerts service each event.
    router_ms = cpu["router"] / (count + raising) * 1000
    alerts_ms = cpu["alerts"] / count * 1000
    print(f"alerts bench: {count} events at {rate:.0f}/s over {seconds:.0f} s, {raising} of them "
          f"raising an alert; {len(got)} alerts read in the police feed "
          f"({raising - len(got)} missing)")
    print(f"latency publish -> alert readable in the police feed: p50 {p50 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms (goal p99 < 1000 ms)")
    print(f"CPU per event: alerts service {alerts_ms:.2f} ms, router {router_ms:.2f} ms per "
          f"record routed; alerts / router = {alerts_ms / router_ms:.2f}")
    for name, values in hops.items():
        ordered = sorted(values)
        if ordered:
            print(f"  {name}: p50 {_pct(ordered, 0.5) * 1000:.0f} ms, "
                  f"p99 {_pct(ordered, 0.99) * 1000:.0f} ms")
    return 0 if len(got) == raising else 1


def _take(items: list[Any]) -> list[Any]:
    """Remove and return what `items` holds (appended to by another thread meanwhile)."""
    taken = items[: len(items)]
    del items[: len(taken)]
    return taken


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _hops(config: Any, ids: dict[str, str], sent: dict[str, float],
          arrived: dict[str, float]) -> dict[str, list[float]]:
    """Where the time goes, per alert, from the topics' append times (read as the operator): the
    router forwarding the event, the alerts service raising, the router forwarding the alert."""
    from broker.audit.reader import TopicReader
    from broker.config import topic_feed, topic_ingress
    from broker.envelope.canonical import feed_record_key
    from broker.kafka.client import KafkaClients
    from broker.kafka.credentials import OPERATOR
    from broker.scaffold import ALERTS_ID

    alerts, council = ids[ALERTS_ID], ids[_WESTMINSTER]
    key = config.pseudonym_key(alerts)
    by_key = {feed_record_key(key, council, child): child for child in sent}
    forwarded: dict[str, float] = {}
    raised: dict[str, float] = {}
    with TopicReader(KafkaClients(config.kafka, OPERATOR)) as reader:
        for record in reader.read_topic(topic_feed(alerts)):
            child = by_key.get(record.key or b"")
            if child is not None:
                forwarded[child] = record.timestamp / 1000
        for record in reader.read_topic(topic_ingress(alerts)):
            child = (record.key or b"").decode().rpartition("/")[2]
            if child in sent:
                raised[child] = record.timestamp / 1000
    hops: dict[str, list[float]] = {"router forwards the event": [],
                                    "alerts service raises the alert": [],
                                    "router forwards the alert to the police": []}
    for child, at in sent.items():
        if child in forwarded and child in raised and child in arrived:
            hops["router forwards the event"].append(forwarded[child] - at)
            hops["alerts service raises the alert"].append(raised[child] - forwarded[child])
            hops["router forwards the alert to the police"].append(arrived[child] - raised[child])
    return hops

