"""`broker bench agreements`: per-event decision cost with 5 agreements and with 500.

Both sets hold the same 5 agreements that can match the benchmark events; the 500-set adds 495
that cannot (other providers or other event types), as a national deployment would. Because rules
are indexed by (event type, provider), the two costs should be close: the goal is a ratio < 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `broker` imports this module at start-up; CEL and pydantic load on `run`
    from broker.agreements.evaluate import AgreementSet, EventView
    from broker.agreements.model import Agreement

_ISSUER = "council.E09000033"
_NOW = datetime(2026, 11, 24, 18, 6, tzinfo=UTC)
_KEYS = {f"stats.r{n}": bytes([n]) * 32 for n in range(5)}
_OTHER_EVENT_TYPES = ("child.care.started", "child.placement.changed", "child.care.ended",
                      "child.return_interview.recorded", "nrm.referral.submitted")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `broker bench agreements`."""
    parser.add_argument("--events", type=int, default=20_000, help="decisions per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements; the median is shown")


def run(args: argparse.Namespace) -> int:
    """Print the per-event decision cost for 5 and 500 agreements, and their ratio."""
    from broker.agreements.evaluate import AgreementSet

    events = _events(args.events)
    small = AgreementSet.of(_matching())
    large = AgreementSet.of([*_matching(), *_non_matching(495)])
    for agreements in (small, large):  # warm-up
        _measure(agreements, events[:500])
    costs = {}
    for label, agreements in (("5 agreements", small), ("500 agreements", large)):
        samples = [_measure(agreements, events) for _ in range(args.repeat)]
        costs[label] = statistics.median(samples)
    grants = [_grants(agreements, events) for agreements in (small, large)]
    print(f"events per measurement: {len(events)}, median of {args.repeat} measurements")
    print(f"grants per event: {grants[0] / len(events):.2f} with 5, "
          f"{grants[1] / len(events):.2f} with 500")
    for label, cost in costs.items():
        print(f"{label:>15}: {cost:8.2f} µs per event")
    ratio = costs["500 agreements"] / costs["5 agreements"]
    print(f"{'ratio':>15}: {ratio:8.2f} (goal < 1.5)")
    return 0


def _grants(agreements: AgreementSet, events: list[EventView]) -> int:
    """Total grants over `events` (equal for both sets: the extra 495 never match)."""
    return sum(len(agreements.decide(e, now=_NOW, pseudonym_key=_KEYS.__getitem__).grants)
               for e in events)


def _measure(agreements: AgreementSet, events: list[EventView]) -> float:
    """Mean microseconds per decision over `events`."""
    start = time.perf_counter()
    for event in events:
        agreements.decide(event, now=_NOW, pseudonym_key=_KEYS.__getitem__)
    return (time.perf_counter() - start) / len(events) * 1e6


def _agreement(
    n: int, *, provider: str, event_type: str, recipient: str, when: str | None
) -> Agreement:
    from broker.agreements.model import Agreement

    return Agreement.model_validate({
        "id": f"dsa.bench.a{n}", "version": 1, "title": "Benchmark", "providers": [provider],
        "recipient": recipient, "purpose": "Benchmark.", "lawful_basis": ["UK GDPR Art 6(1)(e)"],
        "valid_from": "2025-04-01", "valid_until": "2028-03-31", "retention": "P6Y",
        "contacts": [{"role": "DPO", "agency": provider, "email": "dpo@example.gov.uk"}],
        "rules": [{
            "name": "r", "event_types": [event_type], "when": when,
            "share": ["la_child_id", "age_band", "missing_type", "risk_level"],
            "derive": [{"name": "child_pseudonym", "transform": "pseudonym",
                        "field": "la_child_id"},
                       {"name": "missing_date", "transform": "date_only",
                        "field": "missing_since"}],
        }],
    })


_CONDITIONS = (
    'missing_type == "M" || risk_level == "high" || trafficking_concern == true',
    'missing_type == "A"',
    "recipient in guardians || uasc == true",
    None,
    'age_band == "13-15" && exploitation_concerns.exists(c, c == "cce")',
)


def _matching() -> list[Agreement]:
    """5 agreements that can match the benchmark events (by id or by kind)."""
    return [
        _agreement(n, provider=_ISSUER if n % 2 else "council", event_type="child.missing.started",
                   recipient=f"stats.r{n}", when=_CONDITIONS[n])
        for n in range(5)
    ]


def _non_matching(count: int) -> list[Agreement]:
    """Agreements of other councils, or for other event types, that never match the events."""
    return [
        _agreement(
            100 + n,
            provider=f"council.E08{n:06d}" if n % 3 else "police",
            event_type="child.missing.started" if n % 2 else _OTHER_EVENT_TYPES[n % 5],
            recipient=f"police.f{n}",
            when=_CONDITIONS[n % 5],
        )
        for n in range(count)
    ]


def _events(count: int) -> list[EventView]:
    """Varied `child.missing.started` events from one council, as decoded from Avro."""
    from broker.agreements.evaluate import EventView

    base = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
    events = []
    for n in range(count):
        fields: dict[str, Any] = {
            "la_child_id": f"WCC-{n:06d}", "first_name": None, "last_name": None, "dob": None,
            "birth_year": 2011, "age_band": ("10-12", "13-15", "16-17")[n % 3], "sex": "f",
            "uasc": n % 4 == 0, "trafficking_concern": (True, False, None)[n % 3],
            "exploitation_concerns": ["cce"] if n % 5 == 0 else [],
            "missing_type": "M" if n % 2 else "A",
            "missing_since": base - timedelta(minutes=n % 90),
            "risk_level": ("none", "low", "medium", "high", None)[n % 5],
        }
        events.append(EventView(f"ev-{n}", "child.missing.started", _ISSUER, f"s-{n}",
                                base, fields))
    return events
