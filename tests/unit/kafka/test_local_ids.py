"""Cluster ids for `kafka-storage format` must never look like an option."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest

from broker.kafka import local


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    dash_first = bytes([0xFB]) + bytes(15)  # 0xfb encodes as "-" in URL-safe base64
    assert base64.urlsafe_b64encode(dash_first).decode().startswith("-")
    candidates = iter([dash_first, bytes(16)])
    monkeypatch.setattr("uuid.uuid4", lambda: SimpleNamespace(bytes=next(candidates)))
    cluster_id = local._kafka_uuid()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22


def test_random_cluster_ids_are_well_formed() -> None:
    ids = {local._kafka_uuid() for _ in range(2000)}
    assert len(ids) == 2000
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
