"""The agreement registry's pure core: signed `registry.agreements` records applied to an
AgreementSet, and the registry as it stood at a recorded position (`RegistryHistory`).

Only the registry authority's registry-admin key makes a record count; an agreement record
signed by any other key (an issuer's, a router's) is ignored and counted, never applied.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.agreements import EventView
from broker.config import BrokerConfig, load_config
from broker.envelope.keys import SigningKey, generate_key, load_signing_key
from broker.registry.live import (
    LiveAgreements,
    LiveKeys,
    RawRecord,
    RegistryHistory,
    RegistryPosition,
    seeder,
)
from broker.registry.records import (
    AGREEMENT_CONFLICT,
    BAD_SIGNATURE,
    INVALID_AGREEMENT,
    MALFORMED,
    UNKNOWN_SIGNER,
    WRONG_ROLE,
    AgreementRecord,
)
from broker.scaffold import REGISTRY_ID, write_deployment

COUNCIL = "council.E09000033"
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)  # after the keys exist

DOC = """\
id: dsa.test.live
version: {version}
title: A test agreement
providers: [council]
recipient: police.met
purpose: testing the live agreement registry
lawful_basis: ["UK GDPR Art 6(1)(e)"]
valid_from: 2025-01-01
retention: P1Y
contacts:
  - role: DPO
    agency: police.met
    email: dpo@example.org
rules:
  - name: missing
    event_types: [child.missing.started]
    share: [{share}]
"""


def doc(version: int, share: str = "missing_type, age_band") -> str:
    return DOC.format(version=version, share=share)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> BrokerConfig:
    root = tmp_path_factory.mktemp("dep")
    empty = root / "agreements"
    empty.mkdir()
    (empty / "seed.yaml").write_text(doc(1).replace("dsa.test.live", "dsa.test.seed"))
    return load_config(write_deployment(root, bootstrap_servers="x:1", agreements_dir=empty))


@pytest.fixture(scope="module")
def admin(config: BrokerConfig) -> SigningKey:
    assert config.registry is not None and config.registry.signing_key is not None
    return load_signing_key(config.registry.signing_key)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def event(at: datetime) -> EventView:
    return EventView(
        event_id="e1",
        event_type="child.missing.started",
        issuer=COUNCIL,
        subject="s1",
        occurred_at=at,
        fields={"missing_type": "M", "age_band": "13-15"},
    )


def granted(live: LiveAgreements, at: datetime) -> dict[str, tuple[str, ...]]:
    decision = live.agreements.decide(event(at), now=at)
    return {r: g.agreements for r, g in decision.grants.items()}


def test_a_signed_version_round_trips_and_applies(config: BrokerConfig, admin: SigningKey) -> None:
    record = AgreementRecord.sign("dsa.test.live", 1, doc(1), admin, published_at=NOW)
    data = record.to_bytes()
    assert AgreementRecord.from_bytes(data) == record
    live = LiveAgreements.from_config(config)
    assert granted(live, NOW) == {"police.met": ("dsa.test.seed@1",)}
    assert live.apply(record.kafka_key, data, 0, ms(NOW)) is None
    assert live.applied == 1 and live.position == 1
    assert granted(live, NOW + timedelta(seconds=1)) == {
        "police.met": ("dsa.test.live@1", "dsa.test.seed@1")
    }


def test_a_new_version_supersedes_the_lower_from_its_arrival(
    config: BrokerConfig, admin: SigningKey
) -> None:
    live = LiveAgreements.from_config(config)
    v1 = AgreementRecord.sign("dsa.test.live", 1, doc(1), admin, published_at=NOW)
    v2 = AgreementRecord.sign("dsa.test.live", 2, doc(2, "missing_type"), admin, published_at=NOW)
    assert live.apply(v1.kafka_key, v1.to_bytes(), 0, ms(NOW)) is None
    arrived = NOW + timedelta(seconds=10)
    assert live.apply(v2.kafka_key, v2.to_bytes(), 1, ms(arrived)) is None
    before = live.agreements.decide(
        event(arrived - timedelta(seconds=1)), now=arrived - timedelta(seconds=1)
    )
    after = live.agreements.decide(event(arrived), now=arrived)
    assert "dsa.test.live@1" in before.grants["police.met"].agreements
    assert "dsa.test.live@1" not in after.grants["police.met"].agreements
    assert "dsa.test.live@2" in after.grants["police.met"].agreements


def test_a_withdrawal_stops_disclosure_and_is_never_undone(
    config: BrokerConfig, admin: SigningKey
) -> None:
    live = LiveAgreements.from_config(config)
    v1 = AgreementRecord.sign("dsa.test.live", 1, doc(1), admin, published_at=NOW)
    live.apply(v1.kafka_key, v1.to_bytes(), 0, ms(NOW))
    withdrawn = dataclasses.replace(
        AgreementRecord.sign(
            "dsa.test.live", 1, doc(1), admin, withdrawn_at=NOW - timedelta(days=9)
        ),
    )
    at = NOW + timedelta(seconds=5)
    assert live.apply(withdrawn.kafka_key, withdrawn.to_bytes(), 1, ms(at)) is None
    # Effective from its arrival, never earlier (what was decided before stays decided).
    assert "dsa.test.live@1" in granted(live, at - timedelta(seconds=1))["police.met"]
    assert "dsa.test.live@1" not in granted(live, at)["police.met"]
    again = AgreementRecord.sign("dsa.test.live", 1, doc(1), admin)
    assert live.apply(again.kafka_key, again.to_bytes(), 2, ms(at + timedelta(seconds=1))) is None
    assert "dsa.test.live@1" not in granted(live, at + timedelta(seconds=2))["police.met"]


def test_an_agreement_signed_by_a_non_admin_key_is_ignored_and_counted(
    config: BrokerConfig, admin: SigningKey, tmp_path: Path
) -> None:
    counted: list[str] = []
    live = LiveAgreements.from_config(config)
    live.on_ignored = counted.append
    # An issuer's key of the authority's own id: right signer name, wrong role.
    private, public = generate_key(REGISTRY_ID, tmp_path)
    issuer = load_signing_key(private)
    forged = AgreementRecord.sign("dsa.test.live", 1, doc(1), issuer)
    assert live.apply(forged.kafka_key, forged.to_bytes(), 0, ms(NOW)) == UNKNOWN_SIGNER
    # A council's key under its own name.
    council_key = load_signing_key(next(config.keys_dir.parent.rglob(f"{COUNCIL}*.key.pem")))
    forged = AgreementRecord.sign("dsa.test.live", 1, doc(1), council_key)
    assert live.apply(forged.kafka_key, forged.to_bytes(), 1, ms(NOW)) == UNKNOWN_SIGNER
    assert live.applied == 0 and counted == [UNKNOWN_SIGNER, UNKNOWN_SIGNER]
    assert "dsa.test.live@1" not in str(granted(live, NOW))
    del public


def test_an_admin_key_is_required_even_of_the_authority(
    config: BrokerConfig, admin: SigningKey
) -> None:
    live = LiveAgreements.from_config(config)
    pinned = live.admin_keys.keys()[0]
    # The same key id pinned without the registry-admin role: wrong_role.
    live.admin_keys.add(dataclasses.replace(pinned, roles=("issuer",)))
    record = AgreementRecord.sign("dsa.test.live", 1, doc(1), admin)
    assert live.apply(record.kafka_key, record.to_bytes(), 0, ms(NOW)) == WRONG_ROLE


def test_tampered_malformed_invalid_and_conflicting_records_are_refused(
    config: BrokerConfig, admin: SigningKey
) -> None:
    live = LiveAgreements.from_config(config)
    record = AgreementRecord.sign("dsa.test.live", 1, doc(1), admin)
    tampered = dataclasses.replace(record, document=doc(1, "missing_type, age_band, dob"))
    assert live.apply(record.kafka_key, tampered.to_bytes(), 0, ms(NOW)) == BAD_SIGNATURE
    assert live.apply(b"other@1", record.to_bytes(), 1, ms(NOW)) == MALFORMED
    assert live.apply(record.kafka_key, record.to_bytes() + b"\x00", 2, ms(NOW)) == MALFORMED
    assert live.apply(record.kafka_key, None, 3, ms(NOW)) == MALFORMED
    data = bytearray(record.to_bytes())
    data[-70] ^= 0x01  # one bit of the signer key id, signature or digest: never applied
    assert live.apply(record.kafka_key, bytes(data), 4, ms(NOW)) is not None
    bad = AgreementRecord.sign("dsa.test.live", 1, doc(1, "no_such_field"), admin)
    assert live.apply(bad.kafka_key, bad.to_bytes(), 5, ms(NOW)) == INVALID_AGREEMENT
    named = AgreementRecord.sign("dsa.test.live", 3, doc(1), admin)  # document says version 1
    assert live.apply(named.kafka_key, named.to_bytes(), 6, ms(NOW)) == MALFORMED
    assert live.apply(record.kafka_key, record.to_bytes(), 7, ms(NOW)) is None
    other = AgreementRecord.sign("dsa.test.live", 1, doc(1, "missing_type"), admin)
    assert live.apply(other.kafka_key, other.to_bytes(), 8, ms(NOW)) == AGREEMENT_CONFLICT
    assert live.applied == 1 and live.position == 9


def test_history_gives_the_registry_as_it_was_at_a_position(
    config: BrokerConfig, admin: SigningKey
) -> None:
    v1 = AgreementRecord.sign("dsa.test.live", 1, doc(1), admin)
    v2 = AgreementRecord.sign("dsa.test.live", 2, doc(2, "missing_type"), admin)
    records = [
        RawRecord(v1.kafka_key, v1.to_bytes(), 0, ms(NOW)),
        RawRecord(v2.kafka_key, v2.to_bytes(), 1, ms(NOW + timedelta(seconds=5))),
    ]

    def seed() -> tuple[LiveKeys, LiveAgreements]:
        return LiveKeys.from_config(config), LiveAgreements.from_config(config)

    history = RegistryHistory(seed, [], records)
    assert history.end == RegistryPosition(0, 2)
    later = NOW + timedelta(seconds=10)
    cursor = history.cursor()
    _, at_1 = cursor.at(RegistryPosition(0, 1))
    assert "dsa.test.live@1" in at_1.decide(event(later), now=later).grants["police.met"].agreements
    _, at_2 = cursor.at(RegistryPosition(0, 2))
    grant = at_2.decide(event(later), now=later).grants["police.met"]
    assert "dsa.test.live@2" in grant.agreements and "dsa.test.live@1" not in grant.agreements
    assert cursor.rebuilds == 0
    _, back = cursor.at(RegistryPosition(0, 1))  # backwards: rebuilt from the seed
    assert cursor.rebuilds == 1
    assert (
        "dsa.test.live@2"
        not in back.decide(event(later), now=later).grants["police.met"].agreements
    )


def test_history_seeds_parse_the_agreement_files_once_and_share_no_state(
    tmp_path: Path,
) -> None:
    """A replay seeds a view per ingress partition: the files are parsed once (a file changed
    afterwards does not reach later seeds), and each seed's set is its own (a revocation in one
    partition's view does not reach another's)."""
    folder = tmp_path / "agreements"
    folder.mkdir()
    seed_file = folder / "seed.yaml"
    seed_file.write_text(doc(1).replace("dsa.test.live", "dsa.test.seed"))
    config = load_config(write_deployment(tmp_path, bootstrap_servers="x:1", agreements_dir=folder))
    seed = seeder(config)
    _, first = seed()
    seed_file.write_text(doc(2).replace("dsa.test.live", "dsa.test.seed"))
    _, second = seed()
    assert granted(first, NOW) == granted(second, NOW) == {"police.met": ("dsa.test.seed@1",)}
    assert first.agreements is not second.agreements
    first.agreements.revoke("dsa.test.seed", 1, NOW)
    assert granted(first, NOW) == {}
    assert granted(second, NOW) == {"police.met": ("dsa.test.seed@1",)}
    assert seeder(config)()[1].agreements.get("dsa.test.seed@2") is not None  # read anew
