"""Issue 15, part 5: no personal value leaves by a side door, whatever the input.

A full run with hostile input, logged at DEBUG everywhere (kafka-python included, as `broker -v`
does): personal values go in through the live HTTP intake (good events and hostile ones), 2,000
forged records with random header strings (some of them personal values) go straight onto the
ingress topic, the router routes everything, the police read their feed. Then the log text, the
router's metrics and the quarantine details are searched for every personal value used, and the
metrics are counted: the forged headers made no series of their own.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import random
import re
import string
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client import generate_latest
from router_helpers import (
    MET,
    WESTMINSTER,
    Deployment,
    event,
    produce_raw,
    read_feed,
    read_quarantine,
    route_all,
    signed,
)

from broker.config import topic_ingress
from broker.publish import Publisher
from connectors.live import COUNCIL_EVENT_TYPES, Intake, TokenStore, new_token
from connectors.live.server import LiveHTTPServer

pytestmark = pytest.mark.integration

NAME, SURNAME = "Aaliyah", "Okafor-Quintrell"
PERSONAL = {
    "first_name": NAME,
    "last_name": SURNAME,
    "dob": "2011-03-14",
    "la_child_id": "WCC-PV-483920",
    "physical_description": "scar above the left eyebrow, PVX",
    "last_seen_location": "Kilburn High Road PVX",
    "phone_numbers": "07700900461",
}
FORGED = 2000


@contextmanager
def everything_logged() -> Iterator[io.StringIO]:
    """Every logger at DEBUG into one buffer, kafka-python's included (what `-v` turns on)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    root, kafka, manager = (
        logging.getLogger(),
        logging.getLogger("kafka"),
        logging.getLogger("kafka.net.manager"),
    )
    saved = (root.level, kafka.level, manager.level, manager.propagate)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    kafka.setLevel(logging.DEBUG)
    manager.setLevel(logging.DEBUG)
    manager.propagate = True
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        kafka.setLevel(saved[1])
        manager.setLevel(saved[2])
        manager.propagate = saved[3]


def post(url: str, token: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=body, headers={"Authorization": f"Bearer {token}"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def hostile_bodies(good: dict[str, Any]) -> list[bytes]:
    """Bodies a careless or hostile client sends, each carrying personal values."""
    fields = good["fields"]
    bad_enum = {**good, "event_id": "pv-bad-enum", "fields": {**fields, "risk_level": NAME}}
    unknown = {**good, "event_id": "pv-unknown", "fields": {**fields, "nickname": SURNAME}}
    control = {
        **good,
        "event_id": "pv-control",
        "fields": {**fields, "first_name": f"{NAME}\u0000\u202e\u001b[31m"},
    }
    bad_subject = {**good, "event_id": "pv-subject", "subject": f"{PERSONAL['la_child_id']}\x00"}
    return [
        json.dumps([bad_enum, unknown, control, bad_subject]).encode(),
        f'{{"first_name": "{NAME} {SURNAME}", "dob": "{PERSONAL["dob"]}"'.encode(),  # cut short
        b"[" * 50 + json.dumps(PERSONAL).encode() + b"]" * 50,  # too deep
        b'{"la_child_id": "' + PERSONAL["la_child_id"].encode() + b'", "n": 1' + b"0" * 5000 + b"}",
        json.dumps({**good, "event_id": "pv-latin1"}).replace(NAME, "Zo\u00eb").encode("latin-1"),
    ]


def forged_records(dep: Deployment, good: dict[str, Any]) -> list[bytes]:
    """`FORGED` copies of a signed envelope with random header strings: an issuer and an event
    type nobody registered, some of them personal values. No signature can hold."""
    envelope = signed(dep, WESTMINSTER, {**good, "event_id": "pv-template"})
    rng = random.Random(15)
    personal = list(PERSONAL.values())
    out = []
    for n in range(FORGED):
        word = "".join(rng.choices(string.ascii_letters + string.digits + "._-", k=12))
        issuer = rng.choice(personal) if n % 10 == 0 else f"council.{word}"
        event_type = rng.choice(personal) if n % 10 == 5 else f"child.{word}"
        if n % 2:
            issuer = dep.id(WESTMINSTER)  # the topic's owner: the check that fails is another
        header = dataclasses.replace(
            envelope.header, issuer=issuer, event_type=event_type, event_id=f"forged-{n}"
        )
        out.append(dataclasses.replace(envelope, header=header).to_bytes())
    return out


def test_no_personal_value_in_logs_metrics_or_quarantine(
    deployment: Deployment, tmp_path: Any
) -> None:
    dep = deployment
    westminster = dep.id(WESTMINSTER)
    good = event("child.missing.started", PERSONAL["la_child_id"], "pv-good", missing_type="M")
    good["fields"].update(PERSONAL)
    tokens = tmp_path / "tokens.txt"
    token = new_token(tokens, "mosaic")

    with everything_logged() as logs:
        publisher = Publisher(dep.config, westminster)
        server = LiveHTTPServer(
            "127.0.0.1",
            0,
            agency_id=westminster,
            intake=Intake(publisher, COUNCIL_EVENT_TYPES),
            tokens=TokenStore.load(tokens),
        ).serve_in_thread()
        answers = []
        try:
            status, answer = post(server.url, token, json.dumps(good).encode())
            assert status == 200, answer
            for body in hostile_bodies(good):
                answers.append(post(server.url, token, body))
        finally:
            server.stop()
            publisher.close()
        assert [s for s, _ in answers] == [422, 400, 400, 400, 400], answers

        produce_raw(dep, topic_ingress(westminster), ((None, v) for v in forged_records(dep, good)))
        service = route_all(dep, 1 + FORGED)
        feed = read_feed(dep, MET)
        quarantine = read_quarantine(dep)

    # The personal values did flow (through Kafka, while everything was logged) ...
    delivered = [item.event for item in feed if item.event is not None]
    assert len(delivered) == 1
    assert delivered[0].fields["first_name"] == NAME
    assert len(quarantine) == FORGED
    log_text = logs.getvalue()
    assert re.search(r"DEBUG kafka\.\S+: .*(Received response|Response) \d+", log_text), (
        "kafka-python's DEBUG lines were not captured"
    )
    # ... and none of them is in a log line, a metric or a quarantine detail.
    metrics = generate_latest(service.metrics.registry).decode()
    details = "\n".join(
        dict(r.headers)["detail"].decode() + dict(r.headers)["reason"].decode() for r in quarantine
    )
    http_answers = "\n".join(a for _, a in answers)
    for value in [*PERSONAL.values(), f"{NAME} {SURNAME}"]:
        for where, text in (
            ("log", log_text),
            ("metrics", metrics),
            ("quarantine details", details),
            ("HTTP answers", http_answers),
        ):
            assert value not in text, f"{value!r} found in the {where}"

    # Cardinality: the forged headers are counted under `unknown`, not as 2,000 series.
    series = [line for line in metrics.splitlines() if line.startswith("broker_events_in_total")]
    assert len(series) <= 3, series  # the good event's, (unknown, unknown), (owner, unknown)
    forged = sum(float(line.rsplit(" ", 1)[1]) for line in series if 'event_type="unknown"' in line)
    assert forged == FORGED
    assert len(metrics.splitlines()) < 400
