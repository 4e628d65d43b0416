"""Fixtures of the alerts acceptance tests: a private deployment with an alerts service."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "router"))

from alerts_helpers import AlertsDeployment, make_alerts_deployment

from broker.kafka.local import ClusterAccess


@pytest.fixture
def alerts_deployment(tmp_path: Path, kafka_access: ClusterAccess) -> AlertsDeployment:
    return make_alerts_deployment(tmp_path / "deployment", kafka_access)
