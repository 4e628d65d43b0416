"""Fixtures of the router acceptance tests: a private deployment per test on the session Kafka."""

from __future__ import annotations

from pathlib import Path

import pytest
from router_helpers import Deployment, make_deployment

from broker.kafka.local import ClusterAccess


@pytest.fixture
def deployment(tmp_path: Path, kafka_access: ClusterAccess) -> Deployment:
    """Agencies, agreements, keys and config no other test shares (see router_helpers)."""
    return make_deployment(tmp_path / "deployment", kafka_access)
