"""The issuer role (an agency connector): from a JSON event to a signed envelope."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from broker.envelope import canonical
from broker.envelope.errors import EventFormatError, KeyFileError
from broker.envelope.keys import SigningKey
from broker.envelope.model import Disclosure, Envelope, Header, SubjectDisclosure
from broker.schemas import SchemaRegistry
from broker.schemas.fields import parse_time

_EVENT_KEYS = {"event_type", "event_id", "subject", "occurred_at", "fields"}


def issue(
    event: Mapping[str, Any],
    *,
    issuer: str,
    key: SigningKey,
    now: datetime | None = None,
    registry: SchemaRegistry | None = None,
    salts: Mapping[str, bytes] | None = None,
    version: int = 2,
) -> Envelope:
    """Validate an EVENTS.md JSON event and return it as an envelope signed with `key`.

    Every payload field (null ones too, so the digest count reveals nothing) gets a disclosure
    with a fresh 128-bit salt. Wire format `version` 2 (the default) puts the subject in a
    salted disclosure of its own, committed to by its digest in the header, so the router can
    withhold it; version 1 (the subject in the signed header, seen by every recipient) is kept
    for tests and vectors only. `salts` fixes the salts per field name (the subject's under
    `canonical.SUBJECT_NAME`): for test vectors only.
    """
    if version not in (1, 2):
        raise EventFormatError(f"unknown wire-format version {version}; use 2")
    registry = registry or SchemaRegistry.default()
    if key.agency_id != issuer:
        raise KeyFileError(f"key {key.agency_id}/{key.key_id} cannot sign for issuer {issuer}")
    issued_at = (now or datetime.now(UTC)).astimezone(UTC)
    key.check_valid_at(issued_at)
    event_type, event_id, subject, occurred_at, fields = _read_event(event)
    values = registry.validate_fields(event_type, fields)
    # v2 salts the subject too (its disclosure); v1 shows it in the signed header.
    names = [*values, canonical.SUBJECT_NAME] if version == 2 else list(values)
    salted = dict(zip(names, _salts(salts, names), strict=True))
    disclosures = [
        Disclosure(salted[name], name, registry.encode_value(event_type, name, value))
        for name, value in values.items()
    ]
    digests = tuple(sorted(canonical.disclosure_digests(disclosures)))
    subject_disclosure = None
    if version == 2:
        subject_disclosure = SubjectDisclosure(salted[canonical.SUBJECT_NAME], subject)
    header = Header(
        event_id=event_id,
        event_type=event_type,
        schema_fingerprint=registry.fingerprint(event_type),
        issuer=issuer,
        key_id=key.key_id,
        issued_at=issued_at,
        occurred_at=occurred_at,
        subject=subject if subject_disclosure is None else None,
        subject_digest=None if subject_disclosure is None else subject_disclosure.digest(),
    )
    signature = key.sign(
        canonical.issuer_signing_input(header.to_bytes(), digests, version=header.version)
    )
    return Envelope(header, digests, tuple(disclosures), signature, subject_disclosure)


def _salts(salts: Mapping[str, bytes] | None, names: list[str]) -> list[bytes]:
    """A salt per name: fresh from the OS's CSPRNG, in one call (a system call per salt cost
    several times more under load; an alert has 19), or the fixed ones in `salts`."""
    size = canonical.SALT_SIZE
    if salts is None:
        fresh = os.urandom(size * len(names))
        return [fresh[i * size : (i + 1) * size] for i in range(len(names))]
    for name in names:
        if len(salts[name]) != size:
            raise EventFormatError(f"salt for '{name}' must be {size} bytes")
    return [salts[name] for name in names]


def _read_event(event: Mapping[str, Any]) -> tuple[str, str, str, datetime, Mapping[str, Any]]:
    """Check the EVENTS.md envelope keys; name the offending key, never its value."""
    if not isinstance(event, Mapping):
        raise EventFormatError("an event must be a JSON object (see EVENTS.md)")
    unknown = sorted(set(event) - _EVENT_KEYS)
    if unknown:
        raise EventFormatError(
            f"unknown event key(s) {', '.join(unknown)}; payload values go under 'fields'"
        )
    for required in ("event_type", "subject", "occurred_at"):
        if not isinstance(event.get(required), str) or not event[required]:
            raise EventFormatError(f"event key '{required}' must be a non-empty string")
    event_id = event.get("event_id")
    if event_id is None:
        event_id = str(uuid.uuid4())
    elif not isinstance(event_id, str) or not event_id:
        raise EventFormatError("event key 'event_id' must be a non-empty string when given")
    fields = event.get("fields", {})
    if not isinstance(fields, Mapping):
        raise EventFormatError("event key 'fields' must be a JSON object")
    try:
        occurred_at = parse_time(event["occurred_at"])
    except ValueError as exc:
        raise EventFormatError(f"event key 'occurred_at': {exc}") from None
    return event["event_type"], event_id, event["subject"], occurred_at, fields
