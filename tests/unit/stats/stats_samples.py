"""Statistics-feed events for tests: a builder for hand-made scenarios and a seeded generator of
several councils' feeds with trafficking concerns and NRM decisions."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

AGREEMENT = "dsa.national-collection.trafficked-children@1"


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


class FeedBuilder:
    """Makes feed events in the EVENTS.md feed JSON form, numbering their ids."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(
        self,
        event_type: str,
        issuer: str,
        subject: str,
        at: dt.datetime,
        fields: dict[str, Any] | None = None,
        derived: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        event = {
            "issuer": issuer,
            "event_id": f"e{len(self.events):06d}",
            "event_type": event_type,
            "subject": None,  # never granted to the statistics collection
            "occurred_at": at.isoformat().replace("+00:00", "Z"),
            "fields": fields or {},
            "derived": {"child_pseudonym": f"p-{subject}", **(derived or {})},
            "agreements": [AGREEMENT],
            "verified": True,
        }
        self.events.append(event)
        return event

    def care_started(
        self,
        council: str,
        child: str,
        at: dt.datetime,
        *,
        legal_status: str = "C2",
        inside: bool | None = True,
        trafficking: bool | None = False,
        uasc: bool = False,
    ) -> None:
        self.add(
            "child.care.started",
            f"council.{council}",
            child,
            at,
            {
                "legal_status": legal_status,
                "uasc": uasc,
                "trafficking_concern": trafficking,
                "placement_postcode_district": "SW1A",
            },
            {"placement_inside_boundary": inside},
        )

    def placement_changed(
        self,
        council: str,
        child: str,
        at: dt.datetime,
        *,
        inside: bool | None = True,
        legal_status: str | None = None,
    ) -> None:
        self.add(
            "child.placement.changed",
            f"council.{council}",
            child,
            at,
            {"legal_status": legal_status, "reason_new_episode": "P"},
            {"placement_inside_boundary": inside},
        )

    def care_ended(self, council: str, child: str, at: dt.datetime) -> None:
        self.add("child.care.ended", f"council.{council}", child, at, {"reason": "E8"})

    def missing(
        self,
        council: str,
        child: str,
        since: dt.datetime,
        until: dt.datetime | None,
        *,
        missing_type: str = "M",
        age: int | None = 15,
        uasc: bool = False,
        trafficking: bool | None = False,
    ) -> None:
        common = {"missing_type": missing_type, "uasc": uasc, "trafficking_concern": trafficking}
        self.add(
            "child.missing.started",
            f"council.{council}",
            child,
            since,
            {**common, "missing_since": since.isoformat()},
            {"age_years": age},
        )
        if until is not None:
            self.add(
                "child.missing.ended",
                f"council.{council}",
                child,
                until,
                {**common, "missing_since": since.isoformat(), "missing_until": until.isoformat()},
            )

    def referral(self, council: str, child: str, at: dt.datetime, referral: str) -> None:
        self.add(
            "nrm.referral.submitted",
            f"council.{council}",
            child,
            at,
            {
                "first_responder_type": "local_authority",
                "age_at_exploitation": "child",
                "exploitation_types": ["criminal"],
                "exploitation_location": "uk",
            },
            {"referral_pseudonym": referral},
        )

    def decision(self, referral: str, stage: str, outcome: str, on: dt.date) -> None:
        self.add(
            "nrm.decision.made",
            "nrm.sca",
            f"nrm-{referral}",
            dt.datetime.combine(on, dt.time(12), tzinfo=dt.UTC),
            {"stage": stage, "outcome": outcome, "decision_date": on.isoformat()},
            {"referral_pseudonym": referral},
        )


COUNCILS = {"E09000033": 400, "E08000025": 220, "E06000018": 90, "E10000030": 9}


def synthetic_feed(seed: int = 8, councils: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Several councils' feeds over 2023-2025, in time order (one child's events stay ordered)."""
    rng = random.Random(seed)
    b = FeedBuilder()
    base = when("2023-06-01T00:00:00")
    for council, size in (councils or COUNCILS).items():
        for n in range(size):
            child = f"{council}-{n}"
            start = base + dt.timedelta(hours=rng.randrange(0, 24 * 640))
            trafficking = rng.random() < 0.2
            uasc = rng.random() < 0.1
            legal = "V3" if rng.random() < 0.05 else rng.choice(["C1", "C2", "V2", "E1"])
            b.care_started(
                council,
                child,
                start,
                legal_status=legal,
                inside=rng.random() < 0.6,
                trafficking=trafficking,
                uasc=uasc,
            )
            placement_start = start
            if rng.random() < 0.4:
                placement_start = start + dt.timedelta(days=rng.randrange(10, 200))
                b.placement_changed(council, child, placement_start, inside=rng.random() < 0.5)
            chance = 0.6 if trafficking else 0.25
            at = placement_start
            for _ in range(rng.choice([1, 1, 2, 3]) if rng.random() < chance else 0):
                at = at + dt.timedelta(hours=rng.choice([5, 30, 47, 100, 160, 400, 2000]))
                length = dt.timedelta(hours=rng.choice([3, 20, 50, 200, 800]))
                until = None if rng.random() < 0.1 else at + length
                b.missing(
                    council,
                    child,
                    at,
                    until,
                    missing_type=rng.choice("MMA"),
                    age=rng.choice([0, 3, 7, 11, 14, 16, 17]),
                    uasc=uasc,
                    trafficking=trafficking,
                )
                if until is None:
                    break
                at = until
            if trafficking and rng.random() < 0.7:
                referral = f"r-{child}"
                referred = start + dt.timedelta(days=rng.randrange(1, 30))
                b.referral(council, child, referred, referral)
                rg = referred.date() + dt.timedelta(days=rng.randrange(5, 60))
                b.decision(
                    referral, "reasonable_grounds", rng.choice(["positive"] * 4 + ["negative"]), rg
                )
                if rng.random() < 0.5:
                    cg = rg + dt.timedelta(days=rng.randrange(60, 300))
                    b.decision(
                        referral, "conclusive_grounds", rng.choice(["positive", "negative"]), cg
                    )
            if rng.random() < 0.15:
                b.care_ended(council, child, start + dt.timedelta(days=rng.randrange(250, 500)))
    b.events.sort(key=lambda e: e["occurred_at"])
    return b.events
