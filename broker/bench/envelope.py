"""`broker bench envelope`: per-event cost of issue, disclose and verify vs a bare Ed25519 verify.

The event is a typical `child.missing.started` with a Philomena grab pack; the forward carries
what a police missing-persons unit would receive. Timings are CPU time of this thread, medians of
several interleaved rounds of many events each. The goal (issue 19) is verification from bytes
within 1.5x its floor, measured in the same run: a bare Ed25519 verification plus decoding the
same bytes (`Envelope.from_bytes`), the two things verification cannot do without.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    # Imported here so that building the `broker` parser does not load Avro and cryptography.
    from broker.bench import interleaved_costs
    from broker.envelope import (
        Envelope,
        KeyRegistry,
        canonical,
        disclose,
        generate_key,
        issue,
        load_signing_key,
        verify_envelope,
        verify_forwarded,
    )

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        issuer_key = load_signing_key(generate_key(_ISSUER, directory, valid_from=start)[0])
        router_key = load_signing_key(
            generate_key(_ROUTER, directory, valid_from=start, roles=("router",))[0]
        )
        keys = KeyRegistry.from_dir(directory)

    def forward() -> Any:
        return disclose(
            envelope,
            POLICE_FIELDS,
            derived={"child_pseudonym": "p-3f9a1c"},
            agreements=["dsa.police-missing@3"],
            recipient="police.met",
            router_key=router_key,
            now=_NOW,
        )

    envelope = issue(EVENT, issuer=_ISSUER, key=issuer_key, now=_NOW)
    envelope_bytes = envelope.to_bytes()
    forwarded_bytes = forward().to_bytes()
    public_key = issuer_key.public_key_info()
    signed = canonical.issuer_signing_input(
        envelope.header.to_bytes(), envelope.digests, version=envelope.header.version
    )
    actions: dict[str, Callable[[], object]] = {
        BARE: lambda: public_key.verify(envelope.signature, signed),
        DECODE: lambda: Envelope.from_bytes(envelope_bytes),
        "issue (JSON event -> envelope bytes)": lambda: issue(
            EVENT, issuer=_ISSUER, key=issuer_key, now=_NOW
        ).to_bytes(),
        "disclose (envelope -> forwarded bytes)": lambda: forward().to_bytes(),
        INGRESS: lambda: verify_envelope(envelope_bytes, keys),
        DECODED: lambda: verify_envelope(envelope, keys),
        RECIPIENT: lambda: verify_forwarded(
            forwarded_bytes, keys, router=_ROUTER, recipient="police.met"
        ),
    }
    rounds = interleaved_costs(actions, args.events, args.repeat)
    costs = {label: statistics.median(r[label] for r in rounds) for label in actions}
    print(
        f"child.missing.started: {len(envelope.disclosures)} fields, "
        f"envelope {len(envelope_bytes)} bytes; forward of {len(POLICE_FIELDS)} fields, "
        f"{len(forwarded_bytes)} bytes"
    )
    print(
        f"{args.events} events per measurement, median of {args.repeat} interleaved rounds "
        "(CPU time of this thread)"
    )
    for label, cost in costs.items():
        print(f"{label:>42}: {cost:8.1f} µs/event")
    floor = statistics.median(r[INGRESS] / (r[BARE] + r[DECODE]) for r in rounds)
    print(
        f"{'verify envelope / (bare verify + decode)':>42}: {floor:8.2f}x (the floor; "
        f"goal <= 1.5: {'met' if floor <= 1.5 else 'MISSED'})"
    )
    ratios = {
        "verify envelope / bare verify": (INGRESS, 1, ""),
        "same, message already decoded": (DECODED, 1, ""),
        "verify forwarded / two bare verifies": (RECIPIENT, 2, " (issuer + router signatures)"),
    }
    for label, (action, signatures, note) in ratios.items():
        ratio = statistics.median(r[action] / (signatures * r[BARE]) for r in rounds)
        print(f"{label:>42}: {ratio:8.2f}x{note}")
    return 0


BARE = "bare Ed25519 verify"
DECODE = "decode (envelope bytes, no checks)"
INGRESS = "verify envelope (router ingress, bytes)"
DECODED = "verify envelope (already decoded)"
RECIPIENT = "verify forwarded (recipient, bytes)"
