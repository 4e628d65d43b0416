"""Reading topics for auditors: every record of a topic, or those between two times.

The one place the audit commands read Kafka (through `KafkaClients`). Reads are `read_committed`
(an aborted routing transaction is not part of the log) and bounded: the end of each partition is
fixed when the read starts, so a read always finishes even while the router keeps writing.
`--from`/`--to` become offsets with Kafka's `offsets_for_times` (record timestamps, which are the
producer's send time): the first record at or after `--from`, up to the first at or after `--to`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import TopicPartition

from broker.errors import BrokerError
from broker.kafka.client import KafkaClients, KafkaDenied, reached

# Large fetches: auditors read whole topics, so fewer round trips matter more than latency.
# No CRC-32C check of record batches: kafka-python computes it in pure Python (80% of a read's
# time without the optional `crc32c` package), and every byte an auditor relies on is covered by
# something stronger (SHA-256 chains and Merkle roots, Ed25519 signatures, disclosure digests),
# so a damaged record is still found, as altered, undecodable or failing its signature.
_FETCH_OPTIONS: dict[str, Any] = {
    "check_crcs": False,
    "fetch_max_wait_ms": 100,
    "max_partition_fetch_bytes": 8 * 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "max_poll_records": 5000,
    "receive_buffer_bytes": 4 * 1024 * 1024,
}


_MAX_IDLE_POLLS = 60


class TopicNotFound(BrokerError):
    """A topic the auditor asked for does not exist."""


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record as read: where it is, its timestamp (ms since the epoch), key, value."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class Span:
    """Offsets to read in one partition: `start` included, `end` excluded."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def parse_when(text: str) -> datetime:
    """A `--from`/`--to` value: ISO 8601 date or time; a time without a zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BrokerError(
            f"'{text}' is not an ISO 8601 date or time: write e.g. 2026-11-24 or "
            "2026-11-24T18:00:00Z"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _millis(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class TopicReader:
    """Bounded `read_committed` reads of whole topics or of a time range."""

    def __init__(self, clients: KafkaClients) -> None:
        self.clients = clients
        self.consumer = clients.consumer(group_id=None, **_FETCH_OPTIONS)

    def close(self) -> None:
        self.consumer.close(autocommit=False)

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def partitions(self, topic: str) -> list[TopicPartition]:
        found = self.consumer.partitions_for_topic(topic)
        if not found:
            why = self.clients.explain_missing(topic)
            if isinstance(why, KafkaDenied):
                raise why
            raise TopicNotFound(
                f"topic {topic} does not exist: check the name (and the config's Kafka cluster)"
            )
        return [TopicPartition(topic, p) for p in sorted(found)]

    def spans(
        self,
        topic: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Span]:
        """Per partition, the offsets of the records from `start` (included) to `end` (excluded)."""
        tps = self.partitions(topic)
        first = self.consumer.beginning_offsets(tps)
        last = self.consumer.end_offsets(tps)  # last stable offset under read_committed
        lo = dict(first)
        hi = dict(last)
        if start is not None:
            found = self.consumer.offsets_for_times({tp: _millis(start) for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                lo[tp] = last[tp] if hit is None else max(first[tp], hit.offset)
        if end is not None:
            found = self.consumer.offsets_for_times({tp: _millis(end) for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                if hit is not None:
                    hi[tp] = min(last[tp], hit.offset)
        return [Span(tp.topic, tp.partition, lo[tp], max(lo[tp], hi[tp])) for tp in tps]

    def read(self, spans: Iterable[Span]) -> Iterator[list[Message]]:
        """Batches of the records of `spans`, each partition in offset order."""
        wanted = {TopicPartition(s.topic, s.partition): s for s in spans if s.size > 0}
        if not wanted:
            return
        self.consumer.assign(list(wanted))
        self.consumer.resume(*wanted)  # a partition read before stays paused otherwise
        for tp, span in wanted.items():
            self.consumer.seek(tp, span.start)
        pending = set(wanted)
        idle = 0
        while pending:
            polled = self.consumer.poll(timeout_ms=1000)
            idle = 0 if polled else idle + 1
            if idle >= _MAX_IDLE_POLLS:
                raise BrokerError(
                    f"reading {', '.join(sorted({tp.topic for tp in pending}))} stalled: no "
                    "records for a minute before the end fixed when the read began; check "
                    "that Kafka is up"
                )
            for tp, records in polled.items():
                span = wanted[tp]
                batch = [
                    Message(
                        tp.topic,
                        tp.partition,
                        r.offset,
                        r.timestamp,
                        r.key,
                        r.value,
                        tuple(r.headers or ()),
                    )
                    for r in records
                    if r.offset < span.end
                ]
                if batch:
                    yield batch
            done = [tp for tp in pending if reached(self.consumer, tp, wanted[tp].end)]
            if done:
                self.consumer.pause(*done)
                pending.difference_update(done)

    def read_topic(
        self, topic: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> Iterator[Message]:
        """Every record of `topic` between two times (default: all), partition by partition
        interleaved, each in offset order."""
        for batch in self.read(self.spans(topic, start=start, end=end)):
            yield from batch
