"""Acceptance 5: a running router serves its Prometheus metrics, with no personal data in labels."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from router_helpers import (
    BASE_AGENCIES,
    LAMBETH,
    MET,
    STATS,
    WESTMINSTER,
    RouterProcess,
    event,
    make_deployment,
    metric,
    produce_raw,
    publish,
    scrape,
    wait_for_decisions,
)

from broker.config import topic_ingress
from broker.envelope.keys import ROLES
from broker.kafka.local import ClusterAccess
from broker.scaffold import REGISTRY_ID

pytestmark = pytest.mark.integration


def test_metrics_endpoint_during_a_run(tmp_path: Path, kafka_access: ClusterAccess) -> None:
    # Port 0: the router picks a free port and logs it.
    dep = make_deployment(tmp_path / "deployment", kafka_access, router={"metrics_port": 0})
    router = RouterProcess(dep.config_path, "m1", tmp_path / "router.log").start()
    try:
        port = router.metrics_port()
        missing = [
            event("child.missing.started", f"child-{i}", f"m{i}", missing_type="M")
            for i in range(5)
        ]
        publish(dep, WESTMINSTER, missing)
        publish(
            dep,
            MET,
            [
                event(
                    "police.missing_report.opened", "case-1", "d1", local_authority=dep.id(LAMBETH)
                )
            ],
        )
        produce_raw(dep, topic_ingress(dep.id(WESTMINSTER)), [(b"child-x", os.urandom(40))])
        wait_for_decisions(dep, 7, router=router)
        # Counters are updated right after the commit the audit reader saw; allow that moment.
        deadline = time.monotonic() + 10
        while True:
            samples = scrape(port)
            if metric(samples, "broker_routing_seconds_count") >= 7 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert router.running, router.output()
    finally:
        stopped = router.terminate()
        router.cleanup()
    assert stopped == 0, router.output()

    w, met, stats = dep.id(WESTMINSTER), dep.id(MET), dep.id(STATS)
    names = {name for name, _ in samples}
    for name in (
        "broker_events_in_total",
        "broker_events_forwarded_total",
        "broker_events_denied_total",
        "broker_events_quarantined_total",
        "broker_routing_seconds_bucket",
        "broker_routing_seconds_count",
        "broker_event_age_seconds_bucket",
        "broker_transactions_total",
        "broker_consumer_lag",
        "broker_partitions_owned",
    ):
        assert name in names, name
    assert (
        metric(samples, "broker_events_in_total", issuer=w, event_type="child.missing.started") == 5
    )
    assert metric(samples, "broker_events_forwarded_total", recipient=met) == 5
    assert metric(samples, "broker_events_forwarded_total", recipient=stats) == 5
    assert metric(samples, "broker_events_forwarded_total") == 10
    assert (
        metric(
            samples,
            "broker_events_denied_total",
            issuer=met,
            event_type="police.missing_report.opened",
        )
        == 1
    )
    assert metric(samples, "broker_events_quarantined_total", reason="bad_encoding") == 1
    assert metric(samples, "broker_events_quarantined_total") == 1
    assert metric(samples, "broker_routing_seconds_count") == 7
    assert metric(samples, "broker_routing_seconds_bucket", le="+Inf") == 7
    assert metric(samples, "broker_event_age_seconds_count") == 5
    assert metric(samples, "broker_transactions_total", result="commit") >= 1
    assert metric(samples, "broker_transactions_total", result="abort") == 0
    assert metric(samples, "broker_partitions_owned") == len(BASE_AGENCIES) * 3
    for partition in range(3):
        lag = samples.get(
            (
                "broker_consumer_lag",
                frozenset({("topic", topic_ingress(w)), ("partition", str(partition))}),
            )
        )
        assert lag in (None, 0.0)  # reported for partitions it read from, and caught up

    # Key and certificate expiry (the alert rules' BrokerKeyExpiringSoon and
    # BrokerCertificateExpiringSoon): the router's own key has no end, the local CA's is ahead.
    router_key = [
        value
        for (name, labels), value in samples.items()
        if name == "broker_key_expiry_timestamp_seconds"
        and dict(labels).get("agency") == dep.config.router.id
    ]
    assert router_key and all(v == float("inf") for v in router_key), router_key
    assert metric(samples, "broker_tls_certificate_expiry_timestamp_seconds") > time.time()

    # Labels hold agency ids, event types, reason codes, topics and numbers only.
    allowed = {
        *(dep.id(a) for a in BASE_AGENCIES),
        *(topic_ingress(dep.id(a)) for a in BASE_AGENCIES),
    }
    for _, labels in samples:
        for label, value in labels:
            if label in ("issuer", "recipient", "topic"):
                assert value in allowed
            elif label == "event_type":
                assert value.count(".") >= 1 and " " not in value
            elif label == "agency":  # key expiry: agencies, the router, the registry authority
                assert value in allowed | {dep.config.router.id, REGISTRY_ID}, value
            elif label == "role":
                assert value in ROLES
            elif label == "key_id":
                assert re.fullmatch(r"[0-9a-f]{16}", value), value
            else:
                assert label in ("reason", "result", "partition", "le", "quantile"), label
            assert "child-" not in value and not re.search(r"-m\d", value)  # subjects, values
