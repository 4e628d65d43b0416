"""Fixtures of the connector integration tests: a private deployment per test (router helpers)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from broker.kafka.local import ClusterAccess

# The router acceptance tests' helpers (private agencies per test, reading topics, routing).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "router"))

from router_helpers import Deployment, make_deployment

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


@pytest.fixture
def deployment(tmp_path: Path, kafka_access: ClusterAccess) -> Deployment:
    return make_deployment(tmp_path / "deployment", kafka_access)


@pytest.fixture
def ssda903_sample() -> Path:
    path = SHARED_DATA / "ssda903-fake"
    if not path.is_dir():
        pytest.skip(f"shared sample data not found at {path}")
    return path


@pytest.fixture
def nrm_example() -> Path:
    path = SHARED_DATA / "nrm" / "referral_payload_example.json"
    if not path.is_file():
        pytest.skip(f"shared example payload not found at {path}")
    return path
