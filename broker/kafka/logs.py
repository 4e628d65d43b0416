"""kafka-python's log records, stripped of record contents at every level, `-v` included.

kafka-python 3.0.12 logs whole protocol requests and responses at DEBUG (`Sending request ...
%s`, `Response %d ...: %s`, `Sending Produce Request: %r`): their text holds the raw record
bytes, and so a child's name in the clear. Filtering a handler or a logger would not do (a
handler added later, pytest's, or a descendant logger's records would pass by), so a log-record
factory, installed once when `broker.kafka.client` is imported, rewrites the arguments of every
record a `kafka` logger makes, before any handler sees it:

- kept: numbers, strings (kafka-python passes ids, topics, hosts and group names as `str`; record
  keys and values are bytes), exceptions whose arguments are such values (their messages name
  the failure, and `client._BootstrapFailures` needs the objects), topic-partitions, containers
  of these, and
  kafka-python's connection and coordinator objects (their text is node, host and state);
- replaced by `<TypeName>`: bytes of any kind, protocol requests and responses, record
  batches, consumer records and anything else.

Messages kafka-python formats itself (a few f-strings) hold group ids, node ids and partition
assignments only.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from typing import Any

_REDACTED_MODULES = ("kafka.protocol", "kafka.record", "kafka.consumer", "kafka.producer")
_KEPT_KAFKA_TYPES = frozenset({"TopicPartition", "OffsetAndMetadata", "OffsetAndTimestamp"})
_MAX_ITEMS = 200


def _placeholder(value: Any) -> str:
    return f"<{type(value).__name__}>"


def safe_arg(value: Any, depth: int = 0) -> Any:
    """`value` if its text can hold no record content, else a placeholder naming its type."""
    if value is None or isinstance(value, (bool, int, float, str, enum.Enum)):
        return value
    if isinstance(value, BaseException):  # kept unless its arguments carry more than text
        safe = depth < 3 and all(safe_arg(a, depth + 1) is a for a in value.args)
        return value if safe else _placeholder(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _placeholder(value)
    kind = type(value)
    module = kind.__module__ or ""
    if kind.__name__ in _KEPT_KAFKA_TYPES and module.startswith("kafka"):
        return value if all(safe_arg(v, depth + 1) is v for v in value) else _placeholder(value)
    if isinstance(value, (list, tuple, set, frozenset)) and kind in (list, tuple, set, frozenset):
        if depth >= 3 or len(value) > _MAX_ITEMS:
            return _placeholder(value)
        items = [safe_arg(v, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return kind(items)
    if isinstance(value, Mapping) and kind is dict:
        if depth >= 3 or len(value) > _MAX_ITEMS:
            return _placeholder(value)
        return {safe_arg(k, depth + 1): safe_arg(v, depth + 1) for k, v in value.items()}
    if module.startswith("kafka") and not module.startswith(_REDACTED_MODULES):
        return value  # connections, coordinators, the cluster view: node, host, state
    return _placeholder(value)


def _is_kafka(name: str) -> bool:
    return name == "kafka" or name.startswith("kafka.")


def redacting_factory(
    previous: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _is_kafka(record.name):
            if not isinstance(record.msg, str):
                record.msg = _placeholder(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(safe_arg(a) for a in record.args)
            elif isinstance(record.args, Mapping):
                record.args = {k: safe_arg(v) for k, v in record.args.items()}
        return record

    factory.redacts_kafka = True  # type: ignore[attr-defined]
    return factory


def redact_kafka_logs() -> None:
    """Install the redacting factory (once; idempotent)."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "redacts_kafka", False):
        logging.setLogRecordFactory(redacting_factory(current))
