"""The statistics subscriber's Kafka source: the verified `feed.<agency>` applied to a StatsState.

Records are read with `FeedReader` (`read_committed`, every signature and digest checked); only
verified events reach the state. The feed position (the next offset of every partition) is kept
in the state itself (`StatsState.position`) and saved with it in one atomic snapshot, so a
restart continues exactly where the saved facts stop: no consumer-group commit can run ahead of
or fall behind the snapshot. The consumer therefore has no group; it seeks to the saved offsets.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from broker.config import BrokerConfig
from broker.feed import FeedReader
from broker.kafka.credentials import STATS
from broker.stats.events import StatsState
from broker.stats.exceptions import StatsError

POSITION_SOURCE = "kafka"
# While a long backlog is read, the state is handed to `checkpoint` at most this often.
CHECKPOINT_EVERY_S = 30.0
POLL_MS = 500


@dataclass
class ReadReport:
    """What one `read_into` call consumed."""

    records: int = 0
    stopped: bool = False  # `should_stop` ended it before the feed's end


def kafka_position(topic: str, offsets: Mapping[int, int]) -> dict[str, Any]:
    """The `StatsState.position` of a Kafka feed: topic and next offset per partition."""
    return {
        "source": POSITION_SOURCE,
        "topic": topic,
        "offsets": {str(p): int(o) for p, o in sorted(offsets.items())},
    }


def saved_offsets(position: Mapping[str, Any], topic: str) -> dict[int, int]:
    """The offsets a saved position holds for `topic` (empty: start from the beginning).

    A position from another source or topic means the snapshot belongs to something else:
    continuing from it would mix two feeds, so it is refused.
    """
    if not position:
        return {}
    if position.get("source") != POSITION_SOURCE or position.get("topic") != topic:
        raise StatsError(
            f"the snapshot was not made from {topic} (it records "
            f"{position.get('source') or 'no'} source {position.get('topic') or ''}); "
            "give --rebuild to recount from the feed's beginning, or another --snapshot"
        )
    try:
        return {int(p): int(o) for p, o in dict(position["offsets"]).items()}
    except (KeyError, TypeError, ValueError):
        raise StatsError(
            "the snapshot's feed position is damaged; give --rebuild to recount from the "
            "feed's beginning"
        ) from None


class KafkaFeedSource:
    """Reads one agency's verified feed from a saved position into a `StatsState`."""

    def __init__(
        self,
        config: BrokerConfig,
        agency_id: str,
        *,
        position: Mapping[str, Any] | None = None,
    ) -> None:
        # The statistics collection reads a stats agency's feed as its own principal.
        principal = STATS if config.agency(agency_id).kind == "stats" else None
        self.reader = FeedReader(config, agency_id, from_beginning=True, principal=principal)
        self.topic = self.reader.topic
        self.offsets = self._start_at(saved_offsets(position or {}, self.topic))

    def _start_at(self, offsets: dict[int, int]) -> dict[int, int]:
        """Seek every partition to its saved offset (new partitions: their beginning)."""
        consumer = self.reader.consumer
        partitions = self.reader.partitions
        unknown = set(offsets) - {tp.partition for tp in partitions}
        if unknown:
            raise StatsError(
                f"the snapshot names partition(s) {sorted(unknown)} that {self.topic} does not "
                "have: the feed was re-created; give --rebuild"
            )
        first = consumer.beginning_offsets(partitions)
        last = consumer.end_offsets(partitions)
        start: dict[int, int] = {}
        for tp in partitions:
            offset = offsets.get(tp.partition, first[tp])
            if offset > last[tp]:
                raise StatsError(
                    f"the snapshot is ahead of {self.topic} partition {tp.partition} (offset "
                    f"{offset} > end {last[tp]}): the feed was re-created; give --rebuild"
                )
            if offset < first[tp]:
                raise StatsError(
                    f"{self.topic} partition {tp.partition} no longer holds offsets "
                    f"{offset} to {first[tp] - 1} (topic retention deleted them): those events "
                    "cannot be counted; raise the feed's retention, then --rebuild to recount "
                    "what remains"
                )
            consumer.seek(tp, offset)
            start[tp.partition] = offset
        return start

    @property
    def position(self) -> dict[str, Any]:
        """Where the next read starts, in the form saved with the state."""
        return kafka_position(self.topic, self.offsets)

    def read_into(
        self,
        state: StatsState,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        checkpoint: Callable[[StatsState], None] | None = None,
    ) -> ReadReport:
        """Apply every record up to the feed's current end (or until `should_stop()`).

        `should_stop` is asked after each polled batch; `state.position` always matches the
        facts applied, so the state may be saved whenever this returns (or in `checkpoint`,
        called at most every `CHECKPOINT_EVERY_S` seconds while a long backlog is read).
        Raises `PersonalFieldError` if a record carries personal data: nothing of that batch
        after the record is applied, and the caller must not save.
        """
        report = ReadReport()
        last_checkpoint = time.monotonic()
        registry = self.reader.registry
        for batch in self.reader.batches(follow=False, poll_ms=POLL_MS):
            report.records += len(batch)
            for item in batch:
                if item.event is None:
                    state.rejected["unverified"] += 1
                    code = item.error.code if item.error else "unknown"
                    print(
                        f"NOT VERIFIED {self.topic}/{item.partition}@{item.offset}: {code}",
                        file=sys.stderr,
                    )
                    continue
                state.apply(item.event.to_json(registry))
            self.offsets = self._consumer_offsets()
            state.position = self.position
            if should_stop():
                report.stopped = True
                break
            if checkpoint is not None and time.monotonic() - last_checkpoint >= CHECKPOINT_EVERY_S:
                checkpoint(state)
                last_checkpoint = time.monotonic()
        else:
            self.offsets = self._consumer_offsets()
            state.position = self.position
        return report

    def _consumer_offsets(self) -> dict[int, int]:
        """The consumer's next offset per partition (past transaction markers too)."""
        consumer = self.reader.consumer
        return {tp.partition: int(consumer.position(tp)) for tp in self.reader.partitions}

    def close(self) -> None:
        self.reader.close()
