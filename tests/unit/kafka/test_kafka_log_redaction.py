"""Issue 15, part 5: kafka-python's log records never carry record contents, at any level.

Real kafka-python objects holding a personal value (a record batch, a consumer record, raw
bytes) are logged the way kafka-python logs them at DEBUG; the text that reaches a handler
names their type only. The same objects formatted directly do show the value, so the check can
fail.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import SaslAuthenticationFailedError
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.structs import TopicPartition

import broker.kafka.client  # noqa: F401  (installs the redaction, as every Kafka user does)
from broker.kafka.logs import safe_arg

NAME = b"Aaliyah Okafor-Quintrell"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    root = logging.getLogger()
    kafka = logging.getLogger("kafka")
    saved = (root.level, kafka.level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    kafka.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        kafka.setLevel(saved[1])


def hostile_objects() -> list[object]:
    builder = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20)
    builder.append(0, key=b"WCC-1", value=b'{"first_name": "' + NAME + b'"}', headers=[])
    builder.close()
    record = ConsumerRecord(
        "feed.police.met", 0, 0, 5, 0, 0, b"k", NAME, [("h", NAME)], None, 1, len(NAME), 0
    )
    return [NAME, bytearray(NAME), memoryview(NAME), builder.records(), record, [record], {1: NAME}]


def test_record_contents_never_reach_a_handler(captured: io.StringIO) -> None:
    for obj in hostile_objects():
        for name in ("kafka.net.connection", "kafka.protocol.parser", "kafka.producer.sender"):
            logging.getLogger(name).debug("%s Response %d: %s", "node=1", 7, obj)
            logging.getLogger(name).debug("Sending Produce Request: %r", obj)
    text = captured.getvalue()
    assert "Response 7" in text and "Sending Produce Request" in text
    assert NAME.decode() not in text and "Aaliyah" not in text
    # The objects themselves do print the value: the redaction is what keeps it out.
    assert any("Aaliyah" in f"{obj!r}" for obj in hostile_objects())


def test_useful_arguments_are_kept(captured: io.StringIO) -> None:
    partition = TopicPartition("ingress.council.E09000033", 3)
    failure = SaslAuthenticationFailedError("bad credentials")
    assert safe_arg(partition) is partition
    assert safe_arg(failure) is failure  # client._BootstrapFailures needs the exception
    assert safe_arg([partition, 3, "x"]) == [partition, 3, "x"]
    assert safe_arg(ValueError(NAME)) == "<ValueError>"
    logging.getLogger("kafka.consumer.fetcher").debug(
        "Fetch position for %s is %d (%s)", partition, 42, failure
    )
    assert "TopicPartition(topic='ingress.council.E09000033', partition=3)" in captured.getvalue()
    assert "is 42 ([Error 58] SaslAuthenticationFailedError: bad credentials)" in (
        captured.getvalue()
    )


def test_other_loggers_are_untouched(captured: io.StringIO) -> None:
    logging.getLogger("broker.tests").debug("%r", b"bytes of our own")
    assert "b'bytes of our own'" in captured.getvalue()
