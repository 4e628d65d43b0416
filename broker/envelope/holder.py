"""The holder role (the router): forward a subset of disclosures plus a router-signed section.

The router can withhold disclosures but never alter or add them: every disclosure it forwards
still has to match one of the issuer-signed digests, which all travel with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from broker.envelope import canonical
from broker.envelope.errors import DisclosureError
from broker.envelope.keys import SigningKey
from broker.envelope.model import Derived, Envelope, ForwardedEnvelope
from broker.ids import SUBJECT_FIELD
from broker.personal import PersonalDict

_INT64 = (-(2**63), 2**63 - 1)


def disclose(
    envelope: Envelope,
    fields: Iterable[str],
    *,
    derived: Mapping[str, Any] | None,
    agreements: Sequence[str],
    recipient: str,
    router_key: SigningKey,
    now: datetime | None = None,
) -> ForwardedEnvelope:
    """Keep the disclosures named in `fields`, add derived values, sign as the router.

    `agreements` are the `id@version` strings that allowed this forward. Derived values may be
    null, bool, int, float, str or a list of str.

    `fields` may name the subject (`SUBJECT_FIELD`): a v2 forward then carries the subject
    disclosure, and without it carries only the subject's digest. A v1 envelope has the subject
    in its signed header and cannot withhold it, so it is forwarded only when the subject is
    named (otherwise `DisclosureError`).
    """
    wanted = set(fields)
    share_subject = SUBJECT_FIELD in wanted
    wanted.discard(SUBJECT_FIELD)
    if envelope.version == 1 and not share_subject:
        raise DisclosureError(
            f"event {envelope.header.event_id} is wire format v1, whose signed header shows the "
            "subject: it can go only to a recipient granted the subject"
        )
    available = {d.name for d in envelope.disclosures}
    unknown = sorted(wanted - available)
    if unknown:
        raise DisclosureError(
            f"{envelope.header.event_type} envelope has no disclosure for {', '.join(unknown)}"
        )
    for agreement in agreements:
        if not isinstance(agreement, str) or "@" not in agreement:
            raise DisclosureError("agreements must be given as 'id@version' strings")
    values = PersonalDict((name, _derived_value(name, v)) for name, v in (derived or {}).items())
    pairs = [
        (d, digest)
        for d, digest in zip(envelope.disclosures, envelope.disclosure_digests(), strict=True)
        if d.name in wanted
    ]
    kept = tuple(d for d, _ in pairs)
    kept_at = tuple(i for i, d in enumerate(envelope.disclosures) if d.name in wanted)
    subject = envelope.subject_disclosure if share_subject else None
    if envelope.version == 2 and share_subject and subject is None:
        raise DisclosureError(f"{envelope.header.event_type} envelope has no subject disclosure")
    forwarded_at = (now or datetime.now(UTC)).astimezone(UTC)
    router_key.check_valid_at(forwarded_at)
    signature = router_key.sign(
        canonical.router_signing_input(
            event_id=envelope.header.event_id,
            issuer=envelope.header.issuer,
            issuer_signature=envelope.signature,
            disclosed_digests=[digest for _, digest in pairs],
            derived=values,
            agreements=tuple(agreements),
            recipient=recipient,
            router=router_key.agency_id,
            router_key_id=router_key.key_id,
            forwarded_at=forwarded_at,
            version=envelope.version,
            subject_digest=None if subject is None else envelope.header.subject_digest,
        )
    )
    section = Derived(
        values=values,
        agreements=tuple(agreements),
        recipient=recipient,
        router=router_key.agency_id,
        router_key_id=router_key.key_id,
        forwarded_at=forwarded_at,
        signature=signature,
    )
    forwarded = ForwardedEnvelope(
        envelope.header, envelope.digests, kept, envelope.signature, section, subject
    )
    issued = envelope.issued_layout()
    if issued is not None:  # decoded from bytes: the forward's bytes are slices of them
        forwarded._source.append((issued, kept_at))
    return forwarded


def _derived_value(name: str, value: Any) -> Any:
    """Check a derived value fits the `DerivedValue.value` union; name it, never show it."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return value
    elif isinstance(value, float):
        if math.isfinite(value):
            return value
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise DisclosureError(
        f"derived value '{name}' must be null, bool, 64-bit int, finite float, str or list of str"
    )
