"""`broker bench envelope`: per-event cost of issue, disclose and verify vs a bare Ed25519 verify.

The event is a typical `child.missing.started` with a Philomena grab pack; the forward carries
what a police missing-persons unit would receive. Timings are medians of several runs of many
events each; the goal is full verification under 1.5x one bare Ed25519 verification.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.envelope import (
    KeyRegistry,
    canonical,
    disclose,
    generate_key,
    issue,
    load_signing_key,
    verify_envelope,
    verify_forwarded,
)

_ISSUER = "council.E09000033"
_ROUTER = "router.main"
_NOW = datetime(2026, 11, 24, 18, 6, tzinfo=UTC)
EVENT: dict[str, Any] = {
    "event_type": "child.missing.started",
    "subject": "bench-child-0001",
    "occurred_at": "2026-11-24T18:05:00Z",
    "fields": {
        "la_child_id": "bench-child-0001",
        "first_name": "Alex",
        "last_name": "Example",
        "dob": "2011-09-09",
        "birth_year": 2011,
        "age_band": "13-15",
        "sex": "f",
        "uasc": True,
        "trafficking_concern": True,
        "exploitation_concerns": ["trafficking", "cce"],
        "missing_type": "M",
        "missing_since": "2026-11-24T17:30:00Z",
        "risk_level": "high",
        "last_seen_location": "Example bus station, stand 4",
        "last_seen_postcode_district": "WV1",
        "placement_postcode_district": "WV10",
        "physical_description": "About 160 cm, slim, short dark hair, scar above left eyebrow",
        "clothing": "Grey hooded top, black jeans, white trainers, red backpack",
        "associates": "Two older males known to the child, names on file",
        "places_frequented": "Town centre shopping arcade; railway station",
        "phone_numbers": "07700 900123",
        "social_media": "Two accounts, handles on file",
        "medical_needs": "Asthma, carries an inhaler",
        "photo_ref": "PHOTO-2026-0001",
    },
}
POLICE_FIELDS = (
    "la_child_id", "first_name", "last_name", "dob", "age_band", "sex", "trafficking_concern",
    "exploitation_concerns", "missing_type", "missing_since", "risk_level", "last_seen_location",
    "last_seen_postcode_district", "physical_description", "clothing", "associates",
    "places_frequented", "phone_numbers", "social_media", "medical_needs", "photo_ref",
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `broker bench envelope`."""
    parser.add_argument("--events", type=int, default=2000, help="events per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements; the median is shown")


def run(args: argparse.Namespace) -> int:
    """Print per-event costs and the verify / bare-verify ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        issuer_key = load_signing_key(generate_key(_ISSUER, directory, valid_from=start)[0])
        router_key = load_signing_key(generate_key(_ROUTER, directory, valid_from=start)[0])
        keys = KeyRegistry.from_dir(directory)
    envelope = issue(EVENT, issuer=_ISSUER, key=issuer_key, now=_NOW)
    envelope_bytes = envelope.to_bytes()
    forwarded = disclose(
        envelope,
        POLICE_FIELDS,
        derived={"child_pseudonym": "p-3f9a1c"},
        agreements=["dsa.police-missing@3"],
        recipient="police.met",
        router_key=router_key,
        now=_NOW,
    )
    forwarded_bytes = forwarded.to_bytes()
    public_key = issuer_key.public_key_info()
    signed = canonical.issuer_signing_input(envelope.header.to_bytes(), envelope.digests)

    def measure(action: Callable[[], object]) -> float:
        for _ in range(min(200, args.events)):  # warm-up
            action()
        samples = []
        for _ in range(args.repeat):
            begin = time.perf_counter()
            for _ in range(args.events):
                action()
            samples.append((time.perf_counter() - begin) / args.events * 1e6)
        return float(statistics.median(samples))

    costs = {
        "bare Ed25519 verify": measure(lambda: public_key.verify(envelope.signature, signed)),
        "issue (JSON event -> signed envelope bytes)": measure(
            lambda: issue(EVENT, issuer=_ISSUER, key=issuer_key, now=_NOW).to_bytes()
        ),
        "disclose (envelope -> forwarded bytes)": measure(
            lambda: disclose(
                envelope,
                POLICE_FIELDS,
                derived={"child_pseudonym": "p-3f9a1c"},
                agreements=["dsa.police-missing@3"],
                recipient="police.met",
                router_key=router_key,
                now=_NOW,
            ).to_bytes()
        ),
        "verify envelope (router ingress, bytes)": measure(
            lambda: verify_envelope(envelope_bytes, keys)
        ),
        "verify envelope (already decoded)": measure(lambda: verify_envelope(envelope, keys)),
        "verify forwarded (recipient, bytes)": measure(
            lambda: verify_forwarded(forwarded_bytes, keys, recipient="police.met")
        ),
    }
    bare = costs["bare Ed25519 verify"]
    fields = len(envelope.disclosures)
    print(
        f"child.missing.started: {fields} fields, envelope {len(envelope_bytes)} bytes; "
        f"forward of {len(forwarded.disclosures)} fields, {len(forwarded_bytes)} bytes"
    )
    print(f"{args.events} events per measurement, median of {args.repeat} measurements")
    for label, cost in costs.items():
        print(f"{label:>45}: {cost:8.1f} µs/event")
    ingress = costs["verify envelope (router ingress, bytes)"] / bare
    decoded = costs["verify envelope (already decoded)"] / bare
    recipient = costs["verify forwarded (recipient, bytes)"] / (2 * bare)
    print(f"{'verify envelope / bare verify':>45}: {ingress:8.2f}x (goal < 1.5)")
    print(f"{'same, excluding Avro decode of the message':>45}: {decoded:8.2f}x")
    print(f"{'verify forwarded / two bare verifies':>45}: {recipient:8.2f}x (issuer + router)")
    return 0
