"""Pure mapping from validated SSDA903 rows to events in the EVENTS.md JSON form.

Choices (documented in connectors/council/README.md):
- `occurred_at` is midnight UTC of the recorded date (`2017-11-13T00:00:00Z`). SSDA903 holds
  dates, not times; midnight UTC keeps the calendar date the council recorded whatever the
  season, where UK local midnight would move it to the previous day during summer time.
- `event_id` is a keyed id (connectors/ids.py: HMAC-SHA256 under the council's event id
  secret, as a UUID) of the agency, the table, the child and the row's key columns (episode:
  DECOM; missing episode: MIS_START, MISSING and the occurrence number of that triple in the
  file) and the event type, so re-reading a return with the same secret yields the same ids
  and a corrected non-key value does not publish a second event for the same fact; without
  the secret a recipient cannot recompute an id from a candidate child id.
- SSDA903 carries no names, risk level, trafficking flag or Philomena details: those fields are
  null (unknown), never invented.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from connectors.ids import EventIds

Event = dict[str, Any]

CARE_STARTED = "child.care.started"
PLACEMENT_CHANGED = "child.placement.changed"
CARE_ENDED = "child.care.ended"
MISSING_STARTED = "child.missing.started"
MISSING_ENDED = "child.missing.ended"

# RNE codes meaning the child moved placement: P (placement and carer), T (legal status and
# placement and carer), B (placement, same carer), U (legal status and placement, same carer).
# L is a change of legal status only; S starts a period of care.
NEW_PLACEMENT_RNE = frozenset({"P", "T", "B", "U"})
RNE_LEGAL_STATUS_ONLY = "L"
# Every RNE that starts a new episode within a period of care (`child.placement.changed`).
NEW_EPISODE_RNE = NEW_PLACEMENT_RNE | {RNE_LEGAL_STATUS_ONLY}
# REC X1: the episode ceased and a new one began the same day (care goes on).
REC_CONTINUES = "X1"
SEX_CODES = {"1": "m", "2": "f", "M": "m", "F": "f", "U": "u"}
# UPN "unknown" codes (UN1..UN10): the child has no UPN to share.
_UPN_UNKNOWN = re.compile(r"UN(10|[1-9])")
_POSTCODE = re.compile(r"([A-Z]{1,2}[0-9][A-Z0-9]?) *([0-9][A-Z]{0,2})?")


def event_id(ids: EventIds, table: str, child: str, key: str, event_type: str) -> str:
    """Deterministic, keyed event id of one event derived from one source row.

    The MAC input is `agency, table, child, key, event_type` joined by U+001F.
    """
    return ids(table, child, key, event_type)


def iso_instant(day: date) -> str:
    """Midnight UTC of a recorded date, as EVENTS.md times are written."""
    return f"{day.isoformat()}T00:00:00Z"


def age_on(dob: date, day: date) -> int:
    """Age in whole years on `day` (a 29 February birthday counts from 1 March)."""
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


def age_band(dob: date | None, day: date) -> str | None:
    """EVENTS.md age band at `day`: 0-9, 10-12, 13-15, 16-17, 18+ (None if unknown/negative)."""
    if dob is None:
        return None
    age = age_on(dob, day)
    if age < 0:
        return None
    if age < 10:
        return "0-9"
    if age < 13:
        return "10-12"
    if age < 16:
        return "13-15"
    if age < 18:
        return "16-17"
    return "18+"


def normalise_postcode(value: str | None) -> str | None:
    """Upper-case, single-spaced postcode as given (full or partial), None if not one."""
    if not value:
        return None
    return _normalise_postcode(value)


@lru_cache(maxsize=1 << 16)
def _normalise_postcode(value: str) -> str | None:
    match = _POSTCODE.fullmatch(value.strip().upper())
    if match is None:
        return None
    outward, inward = match.groups()
    return f"{outward} {inward}" if inward else outward


def postcode_district(value: str | None) -> str | None:
    """The postcode district (outward code) of a full or partial postcode.

    Handles `EG19 7TT`, `EG197TT`, `EG19 7` (sector only) and `EG19` (district only); anything
    else gives None. A bare `EG19` is read as a district, not as district EG1 plus sector 9.
    """
    normal = normalise_postcode(value)
    if normal is None:
        return None
    return _district(normal)


@lru_cache(maxsize=1 << 12)
def _district(normal: str) -> str:
    return normal.split(" ", 1)[0]


@dataclass(slots=True)
class ChildFacts:
    """What Header and UASC say about a child, shared by all of that child's events."""

    dob: date | None = None
    sex: str | None = None
    ethnicity: str | None = None
    upn: str | None = None
    in_uasc_table: bool | None = None  # None when no UASC information was supplied
    duc: date | None = None  # date UASC status ceases

    def uasc_on(self, day: date) -> bool | None:
        """UASC at `day`: listed as UASC and the status had not ceased by then."""
        if self.in_uasc_table is None:
            return None
        return self.in_uasc_table and (self.duc is None or day < self.duc)


def upn_value(upn: str | None) -> str | None:
    """The UPN, or None for a blank or an `UNn` unknown-reason code."""
    if upn is None or _UPN_UNKNOWN.fullmatch(upn.upper()):
        return None
    return upn


def child_fields(child: str, facts: ChildFacts, dob: date | None, day: date) -> dict[str, Any]:
    """The EVENTS.md fields common to child events, at `day`."""
    return {
        "la_child_id": child,
        "first_name": None,
        "last_name": None,
        "dob": dob.isoformat() if dob else None,
        "birth_year": dob.year if dob else None,
        "age_band": age_band(dob, day),
        "sex": facts.sex,
        "uasc": facts.uasc_on(day),
        "trafficking_concern": None,
        "exploitation_concerns": None,
    }


def make_event(event_type: str, eid: str, child: str, day: date, fields: dict[str, Any]) -> Event:
    """An event in the EVENTS.md JSON form."""
    return {
        "event_type": event_type,
        "event_id": eid,
        "subject": child,
        "occurred_at": iso_instant(day),
        "fields": fields,
    }


def placement_fields(episode: dict[str, Any]) -> dict[str, Any]:
    """Placement fields of an episode row (validated, codes normalised)."""
    postcode = normalise_postcode(episode.get("PL_POST"))
    return {
        "placement_type": episode.get("PLACE"),
        "placement_provider": episode.get("PLACE_PROVIDER"),
        "placement_postcode": postcode,
        "placement_postcode_district": _district(postcode) if postcode else None,
    }


def care_started(
    ids: EventIds,
    child: str,
    facts: ChildFacts,
    episode: dict[str, Any],
    placement: dict[str, Any] | None = None,
) -> Event:
    """`child.care.started` for an episode with RNE S, at DECOM."""
    day: date = episode["DECOM"]
    fields = child_fields(child, facts, facts.dob, day)
    fields.update(
        legal_status=episode.get("LS"),
        category_of_need=episode.get("CIN"),
        **(placement or placement_fields(episode)),
        home_postcode=normalise_postcode(episode.get("HOME_POST")),
        ethnicity=facts.ethnicity,
        upn=facts.upn,
    )
    eid = event_id(ids, "Episodes", child, day.isoformat(), CARE_STARTED)
    return make_event(CARE_STARTED, eid, child, day, fields)


def placement_changed(
    ids: EventIds,
    child: str,
    facts: ChildFacts,
    episode: dict[str, Any],
    reason: str | None,
    placement: dict[str, Any] | None = None,
) -> Event:
    """`child.placement.changed` for an episode with RNE P/T/B/U/L, at DECOM.

    `reason` is REASON_PLACE_CHANGE of the episode that ended (SSDA903 records the reason on
    the episode whose placement ended, not on the new one); it is null for RNE L, where the
    placement did not change. `legal_status` and `reason_new_episode` (RNE) are the new
    episode's, so a subscriber can tell a legal-status-only episode from a move.
    """
    day: date = episode["DECOM"]
    rne: str = episode["RNE"]
    fields = child_fields(child, facts, facts.dob, day)
    fields.update(
        **(placement or placement_fields(episode)),
        reason=None if rne == RNE_LEGAL_STATUS_ONLY else reason,
        legal_status=episode.get("LS"),
        reason_new_episode=rne,
    )
    eid = event_id(ids, "Episodes", child, day.isoformat(), PLACEMENT_CHANGED)
    return make_event(PLACEMENT_CHANGED, eid, child, day, fields)


def care_ended(ids: EventIds, child: str, facts: ChildFacts, episode: dict[str, Any]) -> Event:
    """`child.care.ended` for an episode whose DEC ends the child's care, at DEC (`reason` REC)."""
    day: date = episode["DEC"]
    fields = child_fields(child, facts, facts.dob, day)
    fields["reason"] = episode["REC"]
    eid = event_id(ids, "Episodes", child, episode["DECOM"].isoformat(), CARE_ENDED)
    return make_event(CARE_ENDED, eid, child, day, fields)


def missing_started(
    ids: EventIds,
    child: str,
    facts: ChildFacts,
    dob: date | None,
    row: dict[str, Any],
    occurrence: int,
    placement_district: str | None,
) -> Event:
    """`child.missing.started` for a Missing row, at MIS_START."""
    start: date = row["MIS_START"]
    fields = child_fields(child, facts, dob, start)
    fields.update(
        missing_type=row["MISSING"],
        missing_since=iso_instant(start),
        risk_level=None,
        last_seen_location=None,
        last_seen_postcode_district=None,
        placement_postcode_district=placement_district,
        physical_description=None,
        clothing=None,
        associates=None,
        places_frequented=None,
        phone_numbers=None,
        social_media=None,
        medical_needs=None,
        photo_ref=None,
    )
    eid = event_id(ids, "Missing", child, _missing_key(row, occurrence), MISSING_STARTED)
    return make_event(MISSING_STARTED, eid, child, start, fields)


def missing_ended(
    ids: EventIds,
    child: str,
    facts: ChildFacts,
    dob: date | None,
    row: dict[str, Any],
    occurrence: int,
) -> Event:
    """`child.missing.ended` for a Missing row with MIS_END, at MIS_END."""
    start: date = row["MIS_START"]
    end: date = row["MIS_END"]
    fields = child_fields(child, facts, dob, end)
    fields.update(
        missing_type=row["MISSING"],
        missing_since=iso_instant(start),
        missing_until=iso_instant(end),
        found_location=None,
        found_postcode_district=None,
    )
    eid = event_id(ids, "Missing", child, _missing_key(row, occurrence), MISSING_ENDED)
    return make_event(MISSING_ENDED, eid, child, end, fields)


def _missing_key(row: dict[str, Any], occurrence: int) -> str:
    return f"{row['MIS_START'].isoformat()}|{row['MISSING']}|{occurrence}"
