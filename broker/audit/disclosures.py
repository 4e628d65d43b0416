"""The disclosures report: every disclosure about one child, from the audit log.

For a subject access response, a serious case review or a regulator: who received what about one
child (the issuer's opaque subject reference), when, which event, which fields by name, and under
which agreement id@version. The audit log holds no values, so the report holds none either;
`--with-values` re-reads the ingress envelopes, verifies them, and adds the values of the fields
that were forwarded, only when the deployment allows it (`ALLOW_VALUES_ENV`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from broker.audit.record import Outcome, decode_fields, format_time
from broker.envelope import KeyRegistry, VerificationError
from broker.envelope.verifier import verify_envelope
from broker.errors import BrokerError
from broker.ids import SUBJECT_FIELD
from broker.ingress import DEFAULT_MAX_SKEW, record_time
from broker.schemas import SchemaRegistry

ALLOW_VALUES_ENV = "BROKER_AUDIT_ALLOW_VALUES"
"""Set to `yes` in the environment of the people allowed to see disclosed values."""

COLUMNS = (
    "decided_at",
    "recipient",
    "event_type",
    "event_id",
    "issuer",
    "subject",
    "fields",
    "derived",
    "agreements",
)


class ValuesNotAllowed(BrokerError):
    """`--with-values` was asked for where the deployment does not allow it."""


def values_allowed(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(ALLOW_VALUES_ENV, "").strip().lower() in ("yes", "true", "1")


def require_values_allowed(environ: Mapping[str, str] | None = None) -> None:
    if not values_allowed(environ):
        raise ValuesNotAllowed(
            f"--with-values prints personal data and is refused here: the deployment allows it "
            f"to authorised auditors by setting {ALLOW_VALUES_ENV}=yes in their environment "
            "(see docs/audit.md); without it the report lists field names only"
        )


@dataclass(frozen=True)
class DisclosureRow:
    """One recipient's receipt of one event about the subject (names only)."""

    decided_at: datetime
    recipient: str
    event_type: str
    event_id: str
    issuer: str
    subject: str
    fields: tuple[str, ...]
    derived: tuple[str, ...]
    agreements: tuple[str, ...]
    ingress: tuple[str, int, int]
    audit: tuple[int, int]
    values: dict[str, Any] | None = field(default=None, compare=False)
    # (registry.keys, registry.agreements) positions the decision records (None: version 1).
    registry: tuple[int, int] | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decided_at": format_time(self.decided_at),
            "recipient": self.recipient,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "issuer": self.issuer,
            "subject": self.subject,
            "fields": list(self.fields),
            "derived": list(self.derived),
            "agreements": list(self.agreements),
        }
        if self.values is not None:
            out["values"] = self.values
        return out


def disclosures_about(
    decisions: Iterable[tuple[int, int, bytes | None]],
    subject: str,
    *,
    issuer: str | None = None,
) -> list[DisclosureRow]:
    """Every forwarded disclosure about `subject` (of `issuer`, if given), in time order."""
    needle = subject.encode()
    rows: list[DisclosureRow] = []
    for partition, offset, value in decisions:
        if value is None or needle not in value:  # cheap pre-filter before decoding
            continue
        try:
            d = decode_fields(value)
        except Exception:
            continue  # damaged records are `verify`'s findings
        if d["subject"] != subject or (issuer is not None and d["issuer"] != issuer):
            continue
        if d["outcome"] != Outcome.FORWARDED.value:
            continue
        for r in d["recipients"]:
            rows.append(
                DisclosureRow(
                    decided_at=d["decided_at"],
                    recipient=r["recipient"],
                    event_type=d["event_type"],
                    event_id=d["event_id"],
                    issuer=d["issuer"],
                    subject=d["subject"],
                    fields=tuple(r["fields_forwarded"]),
                    derived=tuple(r["derived"]),
                    agreements=tuple(r["agreements"]),
                    ingress=(d["ingress_topic"], d["ingress_partition"], d["ingress_offset"]),
                    audit=(partition, offset),
                    registry=_position(d),
                )
            )
    rows.sort(key=lambda r: (r.decided_at, r.recipient, r.event_id))
    return rows


def _position(d: Mapping[str, Any]) -> tuple[int, int] | None:
    keys, agreements = d.get("registry_keys"), d.get("registry_agreements")
    return None if keys is None or agreements is None else (keys, agreements)


def add_values(
    rows: list[DisclosureRow],
    ingress: Mapping[tuple[str, int, int], bytes | None],
    keys: KeyRegistry | Callable[[DisclosureRow], KeyRegistry],
    registry: SchemaRegistry | None = None,
    *,
    received: Mapping[tuple[str, int, int], int | None] | None = None,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> list[DisclosureRow]:
    """The rows with the verified values of the forwarded fields (JSON form), from `ingress`.

    A value is shown only if its ingress envelope verifies and is the event the decision names;
    otherwise the row says why (`values` holds the reason code only). Keys are judged as the
    router judged them: at the time the broker received the ingress record (`received`: its
    Kafka timestamp in ms; without one, the decision time, as the router used its clock), never
    at the issuer-chosen `issued_at`. `keys` may be a function giving the key registry a row's
    decision was made under (its recorded registry position).
    """
    registry = registry or SchemaRegistry.default()
    out = []
    for row in rows:
        value = ingress.get(row.ingress)
        values: dict[str, Any]
        try:
            if value is None:
                raise VerificationError("bad_encoding", "ingress record not found")
            at = record_time((received or {}).get(row.ingress)) or row.decided_at
            row_keys = keys(row) if callable(keys) else keys
            event = verify_envelope(
                value, row_keys, received_at=at, max_skew=max_skew, registry=registry
            )
            if event.event_id != row.event_id or event.issuer != row.issuer:
                raise VerificationError("digest_mismatch", "ingress record is another event")
            values = {
                name: registry.value_to_json(row.event_type, name, event.fields[name])
                for name in row.fields
                if name in event.fields
            }
            if SUBJECT_FIELD in row.fields:  # the recipient got the issuer's reference itself
                values[SUBJECT_FIELD] = event.subject
        except VerificationError as exc:
            values = {"_not_verified": exc.code}
        out.append(dataclasses.replace(row, values=values))
    return out


def to_csv(rows: Iterable[DisclosureRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    rows = list(rows)
    with_values = any(r.values is not None for r in rows)
    writer.writerow([*COLUMNS, *(["values"] if with_values else [])])
    for row in rows:
        j = row.to_json()
        line = [" ".join(j[c]) if isinstance(j[c], list) else str(j[c]) for c in COLUMNS]
        if with_values:
            line.append(json.dumps(row.values, sort_keys=True))
        writer.writerow(line)
    return buf.getvalue()


def to_json(rows: Iterable[DisclosureRow], subject: str, issuer: str | None) -> str:
    doc = {
        "subject": subject,
        "issuer": issuer,
        "disclosures": [row.to_json() for row in rows],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
