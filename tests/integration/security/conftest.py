"""Fixtures of the security acceptance tests (issue 12) on the session's secured Kafka."""

from __future__ import annotations

import sys
from pathlib import Path

# The router acceptance tests' helpers: a private, provisioned deployment per test.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "router"))
