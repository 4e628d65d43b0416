"""The live key registry's pure core: signed `registry.keys` records applied to a KeyRegistry.

Only the registry authority's registry-admin key, pinned from keys_dir, makes a record count;
everything else (unsigned, signed by an issuer's key, tampered, malformed) is ignored and
counted, never applied, never an exception.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.config import BrokerConfig, load_config
from broker.envelope import VerificationError
from broker.envelope.keys import (
    ROLE_ISSUER,
    ROLE_REGISTRY_ADMIN,
    PublicKeyInfo,
    SigningKey,
    generate_key,
    load_public_key,
    load_signing_key,
)
from broker.registry.live import LiveKeys
from broker.registry.records import (
    ADMIN_KEY,
    BAD_SIGNATURE,
    KEY_CONFLICT,
    MALFORMED,
    NON_CANONICAL,
    UNKNOWN_SIGNER,
    WRONG_ROLE,
    KeyRecord,
)
from broker.scaffold import REGISTRY_ID, write_deployment

POLICE = "police.met"
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> BrokerConfig:
    return load_config(write_deployment(tmp_path_factory.mktemp("dep"), bootstrap_servers="x:1"))


@pytest.fixture(scope="module")
def admin(config: BrokerConfig) -> SigningKey:
    assert config.registry is not None and config.registry.signing_key is not None
    return load_signing_key(config.registry.signing_key)


def police_key(config: BrokerConfig) -> PublicKeyInfo:
    return next(k for k in LiveKeys.from_config(config).keys.keys(POLICE))


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_scaffold_names_a_registry_authority_with_a_pinned_admin_key(
    config: BrokerConfig, admin: SigningKey
) -> None:
    assert config.registry is not None and config.registry.id == REGISTRY_ID
    live = LiveKeys.from_config(config)
    pinned = live.admin_keys.keys()
    assert [k.key_id for k in pinned] == [admin.key_id]
    assert pinned[0].roles == (ROLE_REGISTRY_ADMIN,)
    assert pinned[0].same_key(admin.public_key_info())


def test_a_signed_record_round_trips_and_applies(config: BrokerConfig, admin: SigningKey) -> None:
    key = police_key(config)
    record = KeyRecord.sign(key, admin, published_at=T0)
    data = record.to_bytes()
    assert data[:2] == b"\xc3\x01"
    assert KeyRecord.from_bytes(data) == record
    live = LiveKeys.from_config(config)
    assert live.apply(record.kafka_key, data, 0, ms(T0)) is None
    assert live.applied == 1 and live.position == 1 and not live.ignored


def test_a_revocation_takes_effect_in_the_same_registry_object(
    config: BrokerConfig, admin: SigningKey
) -> None:
    live = LiveKeys.from_config(config)
    keys = live.keys  # what the router's core holds
    key = police_key(config)
    revoked = KeyRecord.sign(dataclasses.replace(key, revoked_at=T0), admin, published_at=T0)
    assert live.apply(revoked.kafka_key, revoked.to_bytes(), 7, ms(T0)) is None
    keys.lookup(POLICE, key.key_id, T0 - timedelta(seconds=1), role=ROLE_ISSUER)
    with pytest.raises(VerificationError) as caught:
        keys.lookup(POLICE, key.key_id, T0 + timedelta(seconds=1), role=ROLE_ISSUER)
    assert caught.value.code == "revoked_key"
    assert live.position == 8

    # A later record without the revocation (say, the folder published again) cannot undo it.
    again = KeyRecord.sign(key, admin, published_at=T0 + timedelta(minutes=1))
    assert live.apply(again.kafka_key, again.to_bytes(), 8, ms(T0) + 60_000) is None
    entry = keys.get(POLICE, key.key_id)
    assert entry is not None and entry.revoked_at == T0


def _forged_by_issuer(config: BrokerConfig, key: PublicKeyInfo) -> tuple[bytes, bytes]:
    """The police sign a record un-revoking... anything: with their own issuer key."""
    police = next(a for a in config.agencies if a.id == POLICE)
    assert police.signing_key is not None
    issuer = load_signing_key(police.signing_key)
    record = KeyRecord.sign(key, issuer, published_at=T0)
    return record.kafka_key, record.to_bytes()


def _issuer_key_named_as_authority(tmp_path: Path, key: PublicKeyInfo) -> tuple[bytes, bytes]:
    """Signed by a key that claims the authority's id but is not in keys_dir."""
    private, _ = generate_key(REGISTRY_ID, tmp_path, roles=(ROLE_REGISTRY_ADMIN,))
    record = KeyRecord.sign(key, load_signing_key(private), published_at=T0)
    return record.kafka_key, record.to_bytes()


def _unsigned(admin: SigningKey, key: PublicKeyInfo) -> tuple[bytes, bytes]:
    record = dataclasses.replace(KeyRecord.sign(key, admin, published_at=T0), signature=bytes(64))
    return record.kafka_key, record.to_bytes()


def test_forged_and_unsigned_records_are_ignored_and_counted(
    config: BrokerConfig, admin: SigningKey, tmp_path: Path
) -> None:
    live = LiveKeys.from_config(config)
    key = police_key(config)
    stolen = dataclasses.replace(key, key_id="stolen", valid_from=T0)  # a key the police add
    seen: list[str] = []
    live.on_ignored = seen.append

    genuine = KeyRecord.sign(key, admin, published_at=T0)
    good = genuine.to_bytes()
    tampered = bytearray(good)
    tampered[-70] ^= 0x01  # inside the signed body: published_at / signer bytes
    cases = [
        (_forged_by_issuer(config, stolen), UNKNOWN_SIGNER),
        (_issuer_key_named_as_authority(tmp_path, stolen), UNKNOWN_SIGNER),
        (_unsigned(admin, stolen), BAD_SIGNATURE),
        ((genuine.kafka_key, b""), MALFORMED),
        ((genuine.kafka_key, None), MALFORMED),
        ((genuine.kafka_key, b"\xc3\x01junk"), MALFORMED),
        ((genuine.kafka_key, good + b"\x00"), MALFORMED),
        ((b"police.met/other", good), MALFORMED),
        ((None, good), MALFORMED),
    ]
    for offset, ((kafka_key, value), reason) in enumerate(cases):
        assert live.apply(kafka_key, value, offset, ms(T0)) == reason, (offset, reason)
    flipped = live.apply(genuine.kafka_key, bytes(tampered), 99, ms(T0))
    assert flipped in (BAD_SIGNATURE, MALFORMED, NON_CANONICAL, UNKNOWN_SIGNER)
    assert live.applied == 0
    assert sum(live.ignored.values()) == len(cases) + 1 == len(seen)
    assert live.keys.get(POLICE, "stolen") is None
    assert live.position == 100


def test_a_key_without_the_registry_admin_role_cannot_sign_records(
    config: BrokerConfig, tmp_path: Path
) -> None:
    """The authority's own id with only an issuer role, even if it sits in keys_dir."""
    private, public = generate_key(REGISTRY_ID, tmp_path, roles=(ROLE_ISSUER,))
    live = LiveKeys.from_config(config)
    live.admin_keys.add(load_public_key(public))  # pinned, but not registry-admin
    record = KeyRecord.sign(police_key(config), load_signing_key(private), published_at=T0)
    assert live.apply(record.kafka_key, record.to_bytes(), 0, ms(T0)) == WRONG_ROLE


def test_records_may_not_grant_registry_admin_nor_replace_a_key(
    config: BrokerConfig, admin: SigningKey, tmp_path: Path
) -> None:
    live = LiveKeys.from_config(config)
    _, public = generate_key(POLICE, tmp_path, roles=(ROLE_REGISTRY_ADMIN,))
    grant = KeyRecord.sign(load_public_key(public), admin, published_at=T0)
    assert live.apply(grant.kafka_key, grant.to_bytes(), 0, ms(T0)) == ADMIN_KEY

    _, other = generate_key(POLICE, tmp_path / "other")
    swapped = dataclasses.replace(load_public_key(other), key_id=police_key(config).key_id)
    swap = KeyRecord.sign(swapped, admin, published_at=T0)
    assert live.apply(swap.kafka_key, swap.to_bytes(), 1, ms(T0)) == KEY_CONFLICT


def test_non_canonical_roles_are_refused(config: BrokerConfig, admin: SigningKey) -> None:
    """Roles out of order would give a second byte string for the same record."""
    from broker.registry import records

    key = dataclasses.replace(police_key(config), roles=("router", "checkpoint"))
    record = KeyRecord.sign(key, admin, published_at=T0)
    datum = record._avro(record.signature)
    datum["roles"] = ["router", "checkpoint"]
    data = records._CODEC.encode(datum)
    assert data != record.to_bytes()
    live = LiveKeys.from_config(config)
    assert live.apply(record.kafka_key, data, 0, ms(T0)) == NON_CANONICAL


def test_records_judge_the_admin_key_at_kafka_receipt_time(
    config: BrokerConfig, admin: SigningKey
) -> None:
    """A record the broker received before the admin key was valid does not count."""
    record = KeyRecord.sign(police_key(config), admin, published_at=T0)
    live = LiveKeys.from_config(config)
    assert live.apply(record.kafka_key, record.to_bytes(), 0, 0) == "signer_not_valid"


def test_a_revocation_cannot_reach_back_before_kafka_received_it(
    config: BrokerConfig, admin: SigningKey
) -> None:
    """Stated an hour earlier, it takes effect when the broker got it: events judged in
    between stay judged (router and replay agree)."""
    live = LiveKeys.from_config(config)
    key = police_key(config)
    stated = T0 - timedelta(hours=1)
    record = KeyRecord.sign(dataclasses.replace(key, revoked_at=stated), admin, published_at=T0)
    assert live.apply(record.kafka_key, record.to_bytes(), 0, ms(T0)) is None
    entry = live.keys.get(POLICE, key.key_id)
    assert entry is not None and entry.revoked_at == T0
    live.keys.lookup(POLICE, key.key_id, T0 - timedelta(minutes=30), role=ROLE_ISSUER)


def test_a_record_sign_verify_round_trip_has_a_fixed_domain(
    config: BrokerConfig, admin: SigningKey
) -> None:
    """The signed input starts with the registry's own context string, so no other signature
    of a registry-admin key (nor of any other kind) can pass for a registry record."""
    record = KeyRecord.sign(police_key(config), admin, published_at=T0)
    signed = record.signed_bytes()
    assert signed.startswith(b"uk.safeguarding.registry.key.v1\x00\xc3\x01")
    assert admin.public_key_info().verify(record.signature, signed)
    assert not admin.public_key_info().verify(record.signature, signed[1:])
