"""Home Office NRM referral payloads to `nrm.referral.submitted`, and `nrm.decision.made`.

The payload is the online referral form's (`data/nrm/referral_payload_example.json`): flat keys
such as `AdultOrChild`, `Component*` flags, `Customer.Nationality`, `LocalAuthority`,
`PoliceForce`, `ExternalId`, `Type`. Only the coarse facts the event catalogue names are
mapped; names, contact details, addresses and every free-text account stay out of the event.

Exploitation types follow the form's own grouping of its checkboxes: forced to work for
nothing, wages taken and forced to commit fraud are labour; prostitution, child sexual
exploitation and "taken somewhere and sexually assaulted" are sexual; forced to commit a crime
is criminal; organs removed is organ harvesting; unpaid household work is domestic servitude;
an `ExploitationOther` description (never copied) or an unknown `Component*` flag is other.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from broker.ids import AGENCY_ID_RE
from connectors.council.ssda903.mapping import age_band, iso_instant
from connectors.ids import EventIds
from connectors.nrm.exceptions import NrmPayloadError

Event = dict[str, Any]

REFERRAL_SUBMITTED = "nrm.referral.submitted"
DECISION_MADE = "nrm.decision.made"
TYPE_NRM_REFERRAL = "560734"
TYPE_DUTY_TO_NOTIFY = "662265"

# Component flag (lower-cased key) -> exploitation type.
COMPONENTS: Mapping[str, str] = {
    "componentforcedtoworkfornothing": "labour",
    "componentwagestaken": "labour",
    "componentfraud": "labour",
    "componentprostitution": "sexual",
    "componentchildexploitation": "sexual",
    "componentsexuallyassaulted": "sexual",
    "componentforcedcrime": "criminal",
    "componentorgansremoved": "organ_harvesting",
    "componentdomesticservitude": "domestic_servitude",
}
EXPLOITATION_ORDER = (
    "criminal",
    "labour",
    "sexual",
    "domestic_servitude",
    "organ_harvesting",
    "other",
)
FIRST_RESPONDER_TYPES: Mapping[str, str] = {
    "council": "local_authority",
    "la": "local_authority",
    "police": "police",
    "gov": "government",
    "government": "government",
    "homeoffice": "government",
    "ngo": "ngo",
}
_AGE = {"child": "child", "adult": "adult"}
_LOCATION = {"uk": "uk", "overseas": "overseas", "both": "both"}
_GENDER = {"male": "male", "female": "female", "other": "other"}
_YES = frozenset({"yes", "y", "true", "1"})
STAGES: Mapping[str, str] = {
    "reasonable_grounds": "reasonable_grounds",
    "rg": "reasonable_grounds",
    "conclusive_grounds": "conclusive_grounds",
    "cg": "conclusive_grounds",
}
OUTCOMES = frozenset({"positive", "negative"})


def _text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _instant(moment: datetime | None) -> str:
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _agency_id(
    payload: Mapping[str, Any], key: str, agency_ids: Mapping[str, str] | None
) -> str | None:
    """An agency id for a form's organisation name; raises when a given name is unknown."""
    name = _text(payload, key)
    if name is None:
        return None
    if AGENCY_ID_RE.match(name):
        return name
    wanted = " ".join(name.lower().split())
    for known, agency_id in (agency_ids or {}).items():
        if " ".join(known.lower().split()) == wanted:
            return agency_id
    # Organisation names are not personal data, so the message may show it.
    raise NrmPayloadError(
        f"{key} {name!r} is not a known agency; add it to the agency names map (agency_ids)"
    )


def _date(text: str | None) -> date | None:
    """A date from the form (YYYY-MM-DD or DD/MM/YYYY); None when absent or not a date."""
    if text is None:
        return None
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def exploitation_types(payload: Mapping[str, Any]) -> list[str]:
    """Exploitation types flagged in a payload, in catalogue order, without repeats."""
    found: set[str] = set()
    for key, value in payload.items():
        name = str(key).lower()
        if not name.startswith("component"):
            continue
        flagged = value is True or str(value).strip().lower() in _YES
        if flagged:
            found.add(COMPONENTS.get(name, "other"))
        elif name == "componentdomesticservitude" and str(value or "").strip():
            # An older form wrote the "other" description into this key.
            found.add("other")
    if _text(payload, "ExploitationOther"):
        found.add("other")
    return [t for t in EXPLOITATION_ORDER if t in found]


def first_responder_type(agency: str) -> str:
    """First-responder type from the agency kind (`council.E09000033` -> local_authority)."""
    kind = agency.split(".", 1)[0].lower()
    try:
        return FIRST_RESPONDER_TYPES[kind]
    except KeyError:
        raise NrmPayloadError(
            f"agency {agency!r} is not a first responder kind "
            f"({', '.join(sorted(FIRST_RESPONDER_TYPES))}); pass first_responder_type"
        ) from None


def referral_to_event(
    payload: Mapping[str, Any],
    *,
    agency: str,
    id_secret: bytes,
    subject: str | None = None,
    la_child_id: str | None = None,
    submitted_at: datetime | None = None,
    first_responder_kind: str | None = None,
    agency_ids: Mapping[str, str] | None = None,
) -> Event:
    """Map one referral form payload to an `nrm.referral.submitted` event (EVENTS.md JSON form).

    `agency` is the referring agency (the first responder). `la_child_id` is the council's
    child reference when the person is a looked-after child; `subject` the issuer's reference
    for the person (default: `la_child_id`, else the referral id). `submitted_at` is the
    submission time (default: now). `local_authority` and `police_force` are agency ids: the
    form's `LocalAuthority`/`PoliceForce` names are looked up in `agency_ids` (name -> id, case
    and spacing ignored; an id is kept as is); with no `LocalAuthority` a council referrer is
    the local authority, with no `PoliceForce` a police referrer is the force. The potential
    victim's name and date of birth (when the form has them) are carried in the optional
    identity fields; the router's agreements decide who sees them. The event id is keyed by
    `id_secret` (the agency's event id secret, connectors/ids.py) and depends only on the
    agency and `ExternalId`, so re-submitting a referral is de-duplicated by the router, and a
    recipient cannot recompute it from a candidate referral id.
    A duty-to-notify payload (`Type` 662265) is not a referral and is refused.
    """
    if not isinstance(payload, Mapping):
        raise NrmPayloadError("the referral payload must be a JSON object")
    referral_id = _text(payload, "ExternalId")
    if referral_id is None:
        raise NrmPayloadError("the referral payload has no ExternalId (the referral id)")
    ids = EventIds(agency, id_secret)
    kind = _text(payload, "Type")
    nrm_or_duty = (_text(payload, "NRMOrDuty") or "").upper()
    if kind == TYPE_DUTY_TO_NOTIFY or nrm_or_duty in {"DTN", "DUTY"}:
        raise NrmPayloadError(
            f"referral {referral_id}: this is a duty-to-notify (Type {TYPE_DUTY_TO_NOTIFY}), "
            "not an NRM referral; it is not published as nrm.referral.submitted"
        )
    if kind not in (None, TYPE_NRM_REFERRAL):
        raise NrmPayloadError(
            f"referral {referral_id}: unknown Type; expected {TYPE_NRM_REFERRAL} (NRM referral)"
        )
    responder_type = (
        FIRST_RESPONDER_TYPES.get(first_responder_kind, first_responder_kind)
        if first_responder_kind
        else first_responder_type(agency)
    )
    kind_of_agency = agency.split(".", 1)[0].lower()
    local_authority = _agency_id(payload, "LocalAuthority", agency_ids)
    if local_authority is None and kind_of_agency == "council":
        local_authority = agency
    police_force = _agency_id(payload, "PoliceForce", agency_ids)
    if police_force is None and kind_of_agency == "police":
        police_force = agency
    moment = submitted_at or datetime.now(UTC)
    dob = _date(_text(payload, "Customer.DOB"))
    age = (_text(payload, "AdultOrChildDuringExploitation") or "").lower()
    location = (_text(payload, "ExploitationLocationPresented") or "").lower()
    gender = (_text(payload, "Customer.Custom17") or "").lower()
    fields: dict[str, Any] = {
        "referral_id": referral_id,
        "first_responder": agency,
        "first_responder_type": responder_type,
        "local_authority": local_authority,
        "police_force": police_force,
        "age_at_exploitation": _AGE.get(age, "unknown"),
        "nationality": _text(payload, "Customer.Nationality"),
        "gender": _GENDER.get(gender),
        "exploitation_types": exploitation_types(payload),
        "exploitation_location": _LOCATION.get(location),
        "la_child_id": la_child_id,
        "first_name": _text(payload, "Customer.Forename1"),
        "last_name": _text(payload, "Customer.Surname"),
        "dob": dob.isoformat() if dob else None,
        "age_band": age_band(dob, moment.astimezone(UTC).date()),
    }
    return {
        "event_type": REFERRAL_SUBMITTED,
        "event_id": ids(REFERRAL_SUBMITTED, referral_id),
        "subject": subject or la_child_id or referral_id,
        "occurred_at": _instant(moment),
        "fields": fields,
    }


def decision_event(
    referral_id: str,
    first_responder: str,
    stage: str,
    outcome: str,
    decision_date: date | str,
    subject: str,
    *,
    agency: str = "nrm.sca",
    id_secret: bytes,
    decided_at: datetime | None = None,
) -> Event:
    """An `nrm.decision.made` event from the Single Competent Authority.

    `stage` is `reasonable_grounds`/`conclusive_grounds` (or `RG`/`CG`), `outcome`
    `positive`/`negative`; `first_responder` is the referring agency id, to whom the decision
    goes; `subject` the reference the event is keyed by (use the referrer's subject so that the
    decision joins that child's other events). `occurred_at` is `decided_at` if given, else
    midnight UTC of `decision_date`. The id is keyed by `id_secret` (the issuing agency's event
    id secret) and depends on the referral, stage, outcome and date.
    """
    stage_name = STAGES.get(stage.strip().lower())
    if stage_name is None:
        raise NrmPayloadError("stage must be reasonable_grounds or conclusive_grounds (RG/CG)")
    outcome_name = outcome.strip().lower()
    if outcome_name not in OUTCOMES:
        raise NrmPayloadError("outcome must be positive or negative")
    if isinstance(decision_date, str):
        try:
            day = date.fromisoformat(decision_date)
        except ValueError:
            raise NrmPayloadError("decision_date must be a date YYYY-MM-DD") from None
    else:
        day = decision_date
    if not referral_id or not first_responder or not subject:
        raise NrmPayloadError("referral_id, first_responder and subject are required")
    ids = EventIds(agency, id_secret)
    return {
        "event_type": DECISION_MADE,
        "event_id": ids(DECISION_MADE, referral_id, stage_name, outcome_name, day.isoformat()),
        "subject": subject,
        "occurred_at": _instant(decided_at) if decided_at else iso_instant(day),
        "fields": {
            "referral_id": referral_id,
            "first_responder": first_responder,
            "stage": stage_name,
            "outcome": outcome_name,
            "decision_date": day.isoformat(),
        },
    }
