"""`broker audit dump`: one JSON line per record of any topic, each verified before it is printed.

How a record is checked depends on its topic: `ingress.<agency>` envelopes with the issuer's
signature and every disclosure (and, for a registered agency, that the issuer owns the topic);
`feed.<agency>` forwarded
envelopes with the issuer's and the router's signatures, made out to that agency; audit decision
records decoded canonically and linked to the previous record of their chain printed before;
checkpoints by their signature. Quarantine records show their reason code and location only.

Lines name fields, never values, unless `with_values` (allowed by the deployment, see
`broker.audit.disclosures.ALLOW_VALUES_ENV`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from broker.audit.checkpoint import Checkpoint, KeyLookup
from broker.audit.exceptions import AuditError
from broker.audit.reader import Message
from broker.audit.record import (
    DECISION_HEADERS,
    ZERO_HASH,
    DecisionRecord,
    format_time,
    record_hash,
)
from broker.config import TOPIC_QUARANTINE, agency_of_ingress
from broker.envelope import KeyRegistry, VerificationError, VerifiedEvent
from broker.envelope.verifier import verify_envelope, verify_forwarded
from broker.schemas import SchemaRegistry


def _feed_agency(topic: str) -> str | None:
    return topic[len("feed.") :] if topic.startswith("feed.") else None


class Dumper:
    """Turns the records of one topic into verified JSON-ready lines."""

    def __init__(
        self,
        topic: str,
        keys: KeyRegistry,
        checkpoint_keys: KeyLookup,
        *,
        router: str,
        agencies: Collection[str] = (),
        with_values: bool = False,
        registry: SchemaRegistry | None = None,
    ) -> None:
        self.topic = topic
        self.agencies = frozenset(agencies)
        self.keys = keys
        self.router = router
        self.checkpoint_keys = checkpoint_keys
        self.with_values = with_values
        self.registry = registry or SchemaRegistry.default()
        self.printed = 0
        self.failed = 0
        self._heads: dict[str, tuple[int, bytes]] = {}  # chain -> (next seq, head hash)

    def line(self, message: Message) -> dict[str, Any]:
        self.printed += 1
        out: dict[str, Any] = {
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp": format_time(message.time),
        }
        value = message.value
        if value is None:
            out.update(kind="tombstone", verified=None)
            return out
        if (issuer := agency_of_ingress(message.topic)) is not None:
            out.update(self._event(value, issuer, message.time, forwarded=False))
        elif (recipient := _feed_agency(message.topic)) is not None:
            out.update(self._event(value, recipient, message.time, forwarded=True))
        elif message.topic == TOPIC_QUARANTINE:
            headers = dict(message.headers)
            out.update(kind="quarantine", verified=None, bytes=len(value))
            if message.key is not None:
                out["source"] = message.key.decode("utf-8", "replace")
            if "reason" in headers:
                out["reason"] = headers["reason"].decode("utf-8", "replace")
        elif value.startswith(DECISION_HEADERS):
            out.update(self._decision(value))
        else:
            out.update(self._checkpoint_or_other(value))
        if out.get("verified") is False:
            self.failed += 1
        return out

    def _event(
        self, value: bytes, agency: str, received_at: datetime, *, forwarded: bool
    ) -> dict[str, Any]:
        # Keys are judged at the record's timestamp, as the router and subscribers judge them.
        try:
            event: VerifiedEvent
            if forwarded:
                event = verify_forwarded(
                    value,
                    self.keys,
                    router=self.router,
                    recipient=agency,
                    received_at=received_at,
                    registry=self.registry,
                )
            else:
                event = verify_envelope(
                    value, self.keys, received_at=received_at, registry=self.registry
                )
                if agency in self.agencies and event.issuer != agency:
                    raise VerificationError(
                        "bad_signature", "event issued by another agency than the topic's"
                    )
        except VerificationError as exc:
            return {"kind": "forwarded" if forwarded else "envelope", "verified": False,
                    "error": exc.code}  # fmt: skip
        header = event.header
        out: dict[str, Any] = {
            "kind": "forwarded" if forwarded else "envelope",
            "verified": True,
            "event_id": header.event_id,
            "event_type": header.event_type,
            "issuer": header.issuer,
            "subject": event.subject,
            "occurred_at": format_time(header.occurred_at),
            "issued_at": format_time(header.issued_at),
            "fields": sorted(event.fields),
        }
        if forwarded:
            out["derived"] = sorted(event.derived)
            out["agreements"] = list(event.agreements)
        if self.with_values:
            out["values"] = {
                name: self.registry.value_to_json(header.event_type, name, v)
                for name, v in event.fields.items()
            }
            if forwarded:
                out["derived_values"] = dict(event.derived)
        return out

    def _decision(self, value: bytes) -> dict[str, Any]:
        try:
            record = DecisionRecord.from_bytes(value)
        except AuditError as exc:
            return {"kind": "decision", "verified": False, "error": str(exc)}
        out: dict[str, Any] = {"kind": "decision", "decision": record.to_json_dict()}
        expected = self._heads.get(record.chain)
        if expected is None:
            # The previous record is not in this dump: only the first record of a chain can be
            # checked on its own.
            linked: bool | None = None
            if record.seq == 0:
                linked = record.prev_hash == ZERO_HASH
        else:
            linked = (record.seq, record.prev_hash) == expected
        self._heads[record.chain] = (record.seq + 1, record_hash(value))
        out["linked"] = linked
        out["verified"] = linked is not False
        if linked is False:
            out["error"] = "does not link to the previous record of its chain printed"
        return out

    def _checkpoint_or_other(self, value: bytes) -> dict[str, Any]:
        try:
            cp = Checkpoint.from_bytes(value)
        except AuditError:
            return {"kind": "other", "verified": None, "bytes": len(value)}
        out: dict[str, Any] = {"kind": "checkpoint", "checkpoint": cp.to_json_dict()}
        try:
            cp.verify_signature(self.checkpoint_keys)
        except AuditError as exc:
            out.update(verified=False, error=str(exc))
        else:
            out["verified"] = True
        return out
