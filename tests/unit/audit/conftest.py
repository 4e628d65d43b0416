"""Fixtures for audit tests (sample builders live in audit_samples.py)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@pytest.fixture(scope="session")
def router_key() -> Ed25519PrivateKey:
    """The router's checkpoint signing key for a test session."""
    return Ed25519PrivateKey.generate()
