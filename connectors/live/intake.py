"""Validate, sign and publish live events, answering per event: the HTTP endpoint's and the
drop folder's common core.

`Intake` wraps the one `Publisher` of the process; requests may come from several threads, so
publishing and the wait for Kafka's acknowledgement happen under one lock (live volume is small;
what matters is that every answer is true: `accepted` means Kafka has the event).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from broker.errors import BrokerError
from broker.inbound import Rejection
from broker.kafka.client import KafkaUnavailable
from broker.publish import PublishReport

log = logging.getLogger(__name__)

COUNCIL_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "child.care.started",
        "child.placement.changed",
        "child.care.ended",
        "child.missing.started",
        "child.missing.ended",
        "child.return_interview.recorded",
        "nrm.referral.submitted",
        "guardian.appointed",
    }
)
POLICE_EVENT_TYPES: frozenset[str] = frozenset(
    {"police.missing_report.opened", "police.missing_report.closed"}
)
# Agency kind -> event types its live intake accepts.
EVENT_TYPES_BY_KIND: dict[str, frozenset[str]] = {
    "council": COUNCIL_EVENT_TYPES,
    "police": POLICE_EVENT_TYPES,
}
MAX_BATCH = 1000
# The reason given for every event not tried while Kafka is down (the drop folder retries on it).
KAFKA_UNAVAILABLE = "Kafka is unavailable: retry later"


class EventPublisher(Protocol):
    """What `Intake` needs of `broker.publish.Publisher`."""

    agency_id: str

    def publish(self, event: Any, *, where: str = ...) -> str: ...

    def flush(self, report: PublishReport) -> None: ...


@dataclass(frozen=True)
class EventResult:
    """The answer for one event of a request: accepted with its id, or rejected with a reason."""

    index: int
    event_id: str | None = None
    reason: str | None = None
    code: str | None = None  # the broker.inbound reason code, when that refused it

    @property
    def accepted(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict[str, Any]:
        if self.accepted:
            return {"index": self.index, "status": "accepted", "event_id": self.event_id}
        answer: dict[str, Any] = {"index": self.index, "status": "rejected", "reason": self.reason}
        if self.code is not None:
            answer["code"] = self.code
        return answer


class Intake:
    """Checks that each event is of a type this agency may send live, then signs and publishes."""

    def __init__(self, publisher: EventPublisher, event_types: frozenset[str]) -> None:
        self.publisher = publisher
        self.event_types = event_types
        self._lock = threading.Lock()

    def _check(self, event: Any) -> str | None:
        if not isinstance(event, dict):
            return "not a JSON object: send one EVENTS.md event object (or an array of them)"
        event_type = event.get("event_type")
        if not isinstance(event_type, str) or event_type not in self.event_types:
            return (
                "event_type: not an event type this endpoint accepts (one of "
                + ", ".join(sorted(self.event_types))
                + ")"
            )
        return None

    def submit(self, events: Sequence[Any], *, client: str) -> list[EventResult]:
        """Publish each valid event; return one result per event, in order.

        An entry may be a `broker.inbound.Rejection` (what `parse_body`/`parse_line` give for
        a bad one): it is answered as rejected with its code, and the others still go through.
        """
        if len(events) > MAX_BATCH:
            return [
                EventResult(i, reason=f"batch larger than {MAX_BATCH} events: split it")
                for i in range(len(events))
            ]
        results: dict[int, EventResult] = {}
        sent: dict[str, int] = {}
        with self._lock:
            unavailable = False
            for index, event in enumerate(events):
                if isinstance(event, Rejection):
                    results[index] = EventResult(index, reason=event.message, code=event.code)
                    continue
                problem = self._check(event)
                if problem is None and unavailable:
                    problem = KAFKA_UNAVAILABLE
                if problem is not None:
                    results[index] = EventResult(index, reason=problem)
                    continue
                try:
                    event_id = self.publisher.publish(event, where=str(index))
                except KafkaUnavailable:
                    unavailable = True
                    results[index] = EventResult(index, reason=KAFKA_UNAVAILABLE)
                except BrokerError as exc:  # names the field, never its value
                    results[index] = EventResult(index, reason=str(exc))
                except Exception as exc:  # a bug must not cost the other events their answer
                    log.error("event %d could not be signed (%s)", index, type(exc).__name__)
                    results[index] = EventResult(
                        index, reason=f"could not be signed ({type(exc).__name__}): report it"
                    )
                else:
                    results[index] = EventResult(index, event_id=event_id)
                    sent[str(index)] = index
            report = PublishReport()
            if sent:
                self.publisher.flush(report)
        for where, reason in report.rejected:
            if where in sent:
                results[sent[where]] = EventResult(sent[where], reason=reason)
        ordered = [results[i] for i in range(len(events))]
        accepted = sum(1 for r in ordered if r.accepted)
        log.info(
            "client %s: %d event(s) accepted, %d rejected",
            client,
            accepted,
            len(ordered) - accepted,
        )
        return ordered
