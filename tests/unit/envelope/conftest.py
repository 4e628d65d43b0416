"""Fixtures for envelope tests: fixed-time keys for an issuer and a router, a sample envelope."""

from __future__ import annotations

from pathlib import Path

import pytest
from envelope_samples import ISSUER, KEYS_FROM, NOW, RECIPIENT, ROUTER, sample_event

from broker.envelope import (
    Envelope,
    ForwardedEnvelope,
    KeyRegistry,
    SigningKey,
    disclose,
    generate_key,
    issue,
    load_signing_key,
)
from broker.envelope.keys import ROUTER_ROLES


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    generate_key(ISSUER, directory, key_id="k1", valid_from=KEYS_FROM)
    generate_key(ROUTER, directory, key_id="r1", valid_from=KEYS_FROM, roles=ROUTER_ROLES)
    return directory


@pytest.fixture(scope="session")
def issuer_key(key_dir: Path) -> SigningKey:
    return load_signing_key(key_dir / f"{ISSUER}.k1.key.pem")


@pytest.fixture(scope="session")
def router_key(key_dir: Path) -> SigningKey:
    return load_signing_key(key_dir / f"{ROUTER}.r1.key.pem")


@pytest.fixture()
def keys(key_dir: Path) -> KeyRegistry:
    return KeyRegistry.from_dir(key_dir)


@pytest.fixture()
def envelope(issuer_key: SigningKey) -> Envelope:
    return issue(sample_event("child.missing.started"), issuer=ISSUER, key=issuer_key, now=NOW)


@pytest.fixture()
def forwarded(envelope: Envelope, router_key: SigningKey) -> ForwardedEnvelope:
    return disclose(
        envelope,
        ["missing_type", "risk_level", "clothing"],
        derived={"child_pseudonym": "p-1234"},
        agreements=["dsa.police-missing@3"],
        recipient=RECIPIENT,
        router_key=router_key,
        now=NOW,
    )
