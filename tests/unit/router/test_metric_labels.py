"""Issue 15, part 5: metric labels take values from the registry, the schemas and the code only.

Headers of records that failed verification are the sender's to write: 2,000 forged records with
random issuer and event type strings make no new series (counted under `unknown`).
"""

from __future__ import annotations

import random
import string

from prometheus_client import generate_latest

from broker.router.metrics import UNKNOWN, RouterMetrics
from broker.schemas import SchemaRegistry

AGENCIES = ("council.E09000033", "police.met")


def test_forged_header_strings_make_no_series() -> None:
    metrics = RouterMetrics(agencies=AGENCIES, event_types=SchemaRegistry.default().event_types())
    rng = random.Random(2000)
    for _ in range(2000):
        issuer = "".join(rng.choices(string.printable, k=20))
        event_type = "".join(rng.choices(string.printable, k=20))
        reason = "".join(rng.choices(string.ascii_lowercase, k=10))
        metrics.events_in.labels(metrics.agency(issuer), metrics.event_type(event_type)).inc()
        metrics.quarantined.labels(metrics.reason(reason)).inc()
        metrics.forwarded.labels(metrics.agency(issuer)).inc()
    metrics.events_in.labels(
        metrics.agency("police.met"), metrics.event_type("police.missing_report.opened")
    ).inc()
    metrics.quarantined.labels(metrics.reason("bad_signature")).inc()
    text = generate_latest(metrics.registry).decode()
    series = {
        name: [line for line in text.splitlines() if line.startswith(f"{name}_total")]
        for name in ("broker_events_in", "broker_events_quarantined", "broker_events_forwarded")
    }
    assert series["broker_events_in"] == [
        f'broker_events_in_total{{event_type="{UNKNOWN}",issuer="{UNKNOWN}"}} 2000.0',
        'broker_events_in_total{event_type="police.missing_report.opened",issuer="police.met"} 1.0',
    ]
    assert len(series["broker_events_quarantined"]) == 2
    assert len(series["broker_events_forwarded"]) == 1


def test_known_values_are_kept() -> None:
    metrics = RouterMetrics(agencies=AGENCIES, event_types=["child.missing.started"])
    assert metrics.agency("police.met") == "police.met"
    assert metrics.agency(None) == UNKNOWN
    assert metrics.event_type("child.missing.started") == "child.missing.started"
    assert metrics.event_type("child.missing.started ") == UNKNOWN
    assert metrics.reason("wrong_ingress") == "wrong_ingress"
    assert metrics.reason("duplicate") == "duplicate"
