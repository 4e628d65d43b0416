"""The cached partitioner puts every key where kafka-python's default partitioner does."""

from __future__ import annotations

import os
import random

from kafka.partitioner.default import DefaultPartitioner

from broker.kafka.client import CachedHashPartitioner, _key_hash


class _Cluster:
    """The three metadata calls a partitioner makes, for topics of 1, 3, 12 and 50 partitions."""

    def __init__(self) -> None:
        self.partitions = {f"t{n}": set(range(n)) for n in (1, 3, 12, 50)}

    def topics(self) -> set[str]:
        return set(self.partitions)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions[topic]

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions[topic]


def test_every_key_goes_to_the_default_partitioners_partition() -> None:
    cluster, cached, default = _Cluster(), CachedHashPartitioner(), DefaultPartitioner()
    rng = random.Random(19)
    keys = [os.urandom(rng.randrange(0, 90)) for _ in range(3000)]
    for key in keys + keys:  # the second time from the cache
        for topic in cluster.topics():
            expected = default.partition(topic, None, key, None, None, cluster)
            assert cached.partition(topic, None, key, None, None, cluster) == expected


def test_a_repeated_key_is_hashed_once() -> None:
    cluster, cached = _Cluster(), CachedHashPartitioner()
    key = b"audit-chain-" + os.urandom(8)
    before = _key_hash.cache_info()
    for _ in range(5):
        cached.partition("t12", None, key, None, None, cluster)
    after = _key_hash.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 4)


def test_a_record_without_a_key_goes_to_some_partition() -> None:
    cluster = _Cluster()
    assert CachedHashPartitioner().partition("t3", None, None, None, None, cluster) in {0, 1, 2}
