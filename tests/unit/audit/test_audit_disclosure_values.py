"""`audit disclosures --with-values` judges the issuer's key as the router did: at the time the
broker received the ingress record (its Kafka timestamp), never at the issuer-chosen issued_at."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from broker.audit.disclosures import DisclosureRow, add_values
from broker.config import BrokerConfig, load_config
from broker.envelope import KeyRegistry, issue, load_signing_key
from broker.scaffold import REPO_ROOT, write_deployment

WESTMINSTER = "council.E09000033"
TOPIC = f"ingress.{WESTMINSTER}"
LOC = (TOPIC, 0, 7)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> BrokerConfig:
    return load_config(write_deployment(tmp_path_factory.mktemp("dep"), bootstrap_servers="x:1"))


def _case(
    config: BrokerConfig, revoked: timedelta
) -> tuple[DisclosureRow, bytes, KeyRegistry, int]:
    """An event received now, dated 30 s earlier, by a key revoked at now + `revoked`."""
    received = datetime.now(UTC).replace(microsecond=0)
    path = config.agency(WESTMINSTER).signing_key
    assert path is not None
    key = load_signing_key(path)
    keys = KeyRegistry.from_dir(config.keys_dir)
    info = keys.get(WESTMINSTER, key.key_id)
    assert info is not None
    keys.add(
        dataclasses.replace(
            info, valid_from=received - timedelta(hours=1), revoked_at=received + revoked
        )
    )
    line = (REPO_ROOT / "examples" / "events" / f"{WESTMINSTER}.jsonl").read_text().splitlines()[3]
    envelope = issue(
        json.loads(line), issuer=WESTMINSTER, key=key, now=received - timedelta(seconds=30)
    )
    header = envelope.header
    row = DisclosureRow(
        decided_at=received,
        recipient="police.met",
        event_type=header.event_type,
        event_id=header.event_id,
        issuer=WESTMINSTER,
        subject="s",
        fields=("missing_type",),
        derived=(),
        agreements=("a@1",),
        ingress=LOC,
        audit=(0, 0),
    )
    return row, envelope.to_bytes(), keys, int(received.timestamp() * 1000)


def test_a_backdated_event_signed_after_its_key_was_revoked_shows_no_values(
    config: BrokerConfig,
) -> None:
    # Revoked 10 s before the broker received it, 20 s after the issued_at it claims.
    row, value, keys, received_ms = _case(config, -timedelta(seconds=10))
    (out,) = add_values([row], {LOC: value}, keys, received={LOC: received_ms})
    assert out.values == {"_not_verified": "revoked_key"}
    # Without a timestamp, the decision time (the router's clock) is used, not issued_at.
    (out,) = add_values([row], {LOC: value}, keys)
    assert out.values == {"_not_verified": "revoked_key"}


def test_a_key_revoked_after_receipt_still_shows_the_values(config: BrokerConfig) -> None:
    row, value, keys, received_ms = _case(config, timedelta(seconds=10))
    (out,) = add_values([row], {LOC: value}, keys, received={LOC: received_ms})
    assert out.values == {"missing_type": "M"}


def test_keys_may_be_chosen_per_row_by_its_registry_position(config: BrokerConfig) -> None:
    row, value, revoked, received_ms = _case(config, -timedelta(seconds=10))
    _, _, good, _ = _case(config, timedelta(seconds=10))
    row = dataclasses.replace(row, registry=(3, 1))
    (out,) = add_values([row], {LOC: value}, lambda r: revoked, received={LOC: received_ms})
    assert out.values == {"_not_verified": "revoked_key"}
    seen: list[tuple[int, int] | None] = []

    def at(r: DisclosureRow) -> KeyRegistry:
        seen.append(r.registry)
        return good

    (out,) = add_values([row], {LOC: value}, at, received={LOC: received_ms})
    assert seen == [(3, 1)] and out.values == {"missing_type": "M"}
