"""`broker keys publish|revoke|rotate|list --config CONFIG`: the live key registry; and the
work behind `broker agreements publish|withdraw|list` (the agreement registry).

`publish`, `revoke`, `rotate` and `withdraw` act as the registry authority (Kafka principal
`registry`, signing with `registry.signing_key`); `list` reads the live view as any principal
may.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.config import TOPIC_REGISTRY_AGREEMENTS, TOPIC_REGISTRY_KEYS, BrokerConfig, load_config
from broker.envelope.keys import (
    PUBLIC_SUFFIX,
    ROLE_REGISTRY_ADMIN,
    KeyRegistry,
    PublicKeyInfo,
    SigningKey,
    generate_key,
    load_public_key,
    load_signing_key,
)
from broker.kafka.credentials import REGISTRY
from broker.registry.exceptions import RegistryError
from broker.registry.live import (
    LiveAgreements,
    LiveKeys,
    RegistryFollower,
    follow,
    registry_time,
    summary,
)
from broker.registry.records import AgreementRecord, KeyRecord


def register(commands: Any) -> None:
    """Add the registry sub-commands to `broker keys`."""

    def add(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, help=help_text, description=description
        )
        parser.add_argument("--config", required=True, type=Path, help="deployment config")
        return parser

    publish = add(
        "publish",
        "seed registry.keys from keys_dir (signed by the registry authority)",
        "Publish every *.pub.json of keys_dir (or --file) as a signed registry.keys record. "
        "A revocation already on the topic stays in force.",
    )
    publish.add_argument("--file", type=Path, action="append", help="publish only this key file")
    publish.set_defaults(func=_publish)

    revoke = add(
        "revoke",
        "revoke a key through the registry, effective now (or --at)",
        "Publish a revocation: signatures the broker receives from then on are refused "
        "(revoked_key) by every router, feed reader and auditor following the registry.",
    )
    revoke.add_argument("agency_id", metavar="AGENCY_ID")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.add_argument("--at", help="ISO 8601 UTC time of the revocation (default: now)")
    revoke.set_defaults(func=_revoke)

    rotate = add(
        "rotate",
        "generate a new key with the same roles and publish it",
        "Generate a new key pair for AGENCY_ID with the roles of its newest key, publish it to "
        "registry.keys and write its .pub.json to keys_dir. The old key stays valid until you "
        "revoke it.",
    )
    rotate.add_argument("agency_id", metavar="AGENCY_ID")
    rotate.add_argument("--out", required=True, type=Path, help="directory for the new private key")
    rotate.add_argument("--key-id", help="key id (default: hash of the public key)")
    rotate.set_defaults(func=_rotate)

    export = add(
        "export",
        "write the live view as *.pub.json files",
        "Write every key of the live view (keys_dir with registry.keys applied, revocations "
        "included) to DIR as <agency>.<key_id>.pub.json: a snapshot to archive or to seed "
        "another deployment's keys_dir.",
    )
    export.add_argument("--out", required=True, type=Path, help="directory to write into")
    export.set_defaults(func=_export)

    listing = add(
        "list",
        "the keys in force: keys_dir and registry.keys",
        "Print the live view of the key registry.",
    )
    listing.add_argument("--agency", help="only this agency's keys")
    listing.set_defaults(func=_list)


def _require_registry(config: BrokerConfig) -> None:
    if config.registry is None:
        raise RegistryError(
            f"{config.source}: no `registry` section: add `registry: {{id: registry.main, "
            "signing_key: ...}` and put its registry-admin .pub.json in keys_dir"
        )


def _admin_key(config: BrokerConfig) -> SigningKey:
    _require_registry(config)
    assert config.registry is not None
    if config.registry.signing_key is None:
        raise RegistryError(
            f"{config.source}: registry.signing_key is not set: only the registry authority "
            "publishes, revokes and rotates keys"
        )
    env = config.registry.passphrase_env
    key = load_signing_key(config.registry.signing_key, os.environ.get(env) if env else None)
    # Its roles are those of its public half pinned in keys_dir (where every verifier looks).
    pinned = KeyRegistry.from_dir(config.keys_dir).get(key.agency_id, key.key_id)
    if pinned is None or not pinned.same_key(key.public_key_info()):
        raise RegistryError(
            f"{config.registry.signing_key}: its public half is not in keys_dir "
            f"{config.keys_dir}: copy its .pub.json there (verifiers pin it from there)"
        )
    key.roles = pinned.roles
    if key.agency_id != config.registry.id or ROLE_REGISTRY_ADMIN not in key.roles:
        raise RegistryError(
            f"{config.registry.signing_key} is not a registry-admin key of {config.registry.id}: "
            f"generate one with `broker keys generate {config.registry.id} --role registry-admin`"
        )
    return key


def publish_keys(config: BrokerConfig, keys: list[PublicKeyInfo]) -> list[KeyRecord]:
    """Sign `keys` as the registry authority and write them to `registry.keys`."""
    from broker.kafka.client import KafkaClients

    admin = _admin_key(config)
    now = registry_time()
    records = [KeyRecord.sign(key, admin, published_at=now) for key in keys]
    producer = KafkaClients(config.kafka, REGISTRY).producer()
    try:
        for record in records:
            producer.send(TOPIC_REGISTRY_KEYS, key=record.kafka_key, value=record.to_bytes())
        producer.flush()
    finally:
        producer.close()
    return records


def live_view(config: BrokerConfig) -> LiveKeys:
    _require_registry(config)
    return follow(config, REGISTRY)


def _time(value: str | None) -> datetime:
    if value is None:
        return registry_time()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RegistryError("--at must be an ISO 8601 time, e.g. 2026-01-01T00:00:00Z") from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _publish(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    paths = args.file or sorted(config.keys_dir.glob("*" + PUBLIC_SUFFIX))
    keys = [load_public_key(p) for p in paths]
    pinned = [k for k in keys if ROLE_REGISTRY_ADMIN in k.roles]
    keys = [k for k in keys if ROLE_REGISTRY_ADMIN not in k.roles]
    publish_keys(config, keys)
    print(f"published {len(keys)} key(s) to {TOPIC_REGISTRY_KEYS}")
    for key in pinned:
        print(f"not published: {key.agency_id}/{key.key_id} (registry-admin keys are pinned)")
    return 0


def revoke_key(config: BrokerConfig, agency_id: str, key_id: str, at: datetime) -> PublicKeyInfo:
    """Publish the revocation of `agency_id/key_id` at `at`; return the key's new terms."""
    key = live_view(config).keys.get(agency_id, key_id)
    if key is None:
        raise RegistryError(
            f"no key {agency_id}/{key_id} in keys_dir or {TOPIC_REGISTRY_KEYS}: "
            f"see `broker keys list --config {config.source}`"
        )
    if key.revoked_at is not None and key.revoked_at <= at:
        return key
    revoked = dataclasses.replace(key, revoked_at=at)
    publish_keys(config, [revoked])
    return revoked


def _revoke(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    key = revoke_key(config, args.agency_id, args.key_id, _time(args.at))
    assert key.revoked_at is not None
    print(f"revoked {key.agency_id}/{key.key_id} at {key.revoked_at.isoformat()}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    current = [k for k in live_view(config).keys.keys(args.agency_id) if k.revoked_at is None]
    if not current:
        raise RegistryError(
            f"{args.agency_id} has no unrevoked key to rotate: use `broker keys generate` and "
            "`broker keys publish`"
        )
    newest = max(current, key=lambda k: k.valid_from)
    if ROLE_REGISTRY_ADMIN in newest.roles:
        raise RegistryError("registry-admin keys are pinned in keys_dir: rotate them by hand")
    private_path, public_path = generate_key(
        args.agency_id, args.out, key_id=args.key_id, roles=newest.roles
    )
    info = load_public_key(public_path)
    publish_keys(config, [info])
    target = config.keys_dir / public_path.name
    if public_path.resolve() != target.resolve():
        public_path.replace(target)
    print(f"key id:      {info.key_id}")
    print(f"roles:       {', '.join(info.roles)}")
    print(f"private key: {private_path} (keep secret; point the agency's signing_key at it)")
    print(f"public key:  {target} (published to {TOPIC_REGISTRY_KEYS})")
    print(f"old key {args.agency_id}/{newest.key_id} stays valid until revoked")
    return 0


def _list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    live = live_view(config)
    folder = KeyRegistry.from_dir(config.keys_dir)
    print(f"{'agency':<22} {'key id':<18} {'roles':<20} {'valid from':<20} {'until':<20} revoked")
    for key in summary(live.keys.keys(args.agency)):
        start = key.valid_from.strftime("%Y-%m-%dT%H:%M:%SZ")
        until = key.valid_until.strftime("%Y-%m-%dT%H:%M:%SZ") if key.valid_until else "-"
        revoked = key.revoked_at.isoformat() if key.revoked_at else "-"
        source = "" if folder.get(key.agency_id, key.key_id) else " (registry only)"
        print(
            f"{key.agency_id:<22} {key.key_id:<18} {','.join(key.roles):<20} {start:<20} "
            f"{until:<20} {revoked}{source}"
        )
    ignored = ", ".join(f"{r} {n}" for r, n in sorted(live.ignored.items())) or "none"
    print(
        f"{TOPIC_REGISTRY_KEYS}: position {live.position}, {live.applied} record(s) applied, "
        f"ignored: {ignored}"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    import json

    config = load_config(args.config)
    live = live_view(config)
    args.out.mkdir(parents=True, exist_ok=True)
    keys = summary(live.keys.keys())
    for key in keys:
        path = args.out / f"{key.agency_id}.{key.key_id}{PUBLIC_SUFFIX}"
        path.write_text(json.dumps(key.to_json(), indent=2) + "\n", encoding="utf-8")
    print(
        f"wrote {len(keys)} key file(s) to {args.out} ({TOPIC_REGISTRY_KEYS} position "
        f"{live.position})"
    )
    return 0


# -- the agreement registry ----------------------------------------------------------------------


def _send(config: BrokerConfig, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from broker.kafka.client import KafkaClients

    producer = KafkaClients(config.kafka, REGISTRY).producer()
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def publish_agreements(config: BrokerConfig, files: list[Path]) -> list[AgreementRecord]:
    """Validate `files` together (as `broker agreements check` does, agencies of the config
    included), sign each as the registry authority and write them to `registry.agreements`.

    Raises `AgreementError` naming every problem, before anything is published."""
    from broker.agreements import AgreementError, Problem
    from broker.agreements.check import load_documents

    if not files:
        raise RegistryError(
            f"no agreement files given and none in agreements_dir {config.agreements_dir}"
        )
    documents: list[tuple[str, Path]] = []
    for path in files:
        try:
            documents.append((path.read_text(encoding="utf-8"), path))
        except (OSError, UnicodeDecodeError) as exc:
            raise AgreementError(
                [Problem(path, None, f"cannot read file ({type(exc).__name__})",
                         "give a readable UTF-8 agreement file")]
            ) from None  # fmt: skip
    sourced = load_documents(documents, agencies=config.agency_ids)
    admin = _admin_key(config)
    now = registry_time()
    records = [
        AgreementRecord.sign(one.agreement.id, one.agreement.version, text, admin, published_at=now)
        for one, (text, _) in zip(sourced, documents, strict=True)
    ]
    _send(config, TOPIC_REGISTRY_AGREEMENTS, [(r.kafka_key, r.to_bytes()) for r in records])
    return records


def live_agreements(config: BrokerConfig) -> LiveAgreements:
    """`agreements_dir` with `registry.agreements` applied, read to its end as `registry`."""
    from broker.kafka.client import KafkaClients

    _require_registry(config)
    keys, agreements = LiveKeys.from_config(config), LiveAgreements.from_config(config)
    follower = RegistryFollower(KafkaClients(config.kafka, REGISTRY), keys, agreements)
    try:
        follower.catch_up()
    finally:
        follower.close()
    return agreements


def withdraw_agreement(
    config: BrokerConfig, agreement_id: str, version: int, at: datetime | None
) -> AgreementRecord:
    """Publish the withdrawal of `agreement_id@version` from `at` (default: now)."""
    from broker.agreements.loader import agreement_files

    key = f"{agreement_id}@{version}"
    live = live_agreements(config)
    held = live.agreements.get(key)
    if held is None:
        raise RegistryError(
            f"no agreement version {key} in agreements_dir or {TOPIC_REGISTRY_AGREEMENTS}: "
            f"see `broker agreements list --config {config.source}`"
        )
    # The record carries the version's document: its registry record's, or its file's.
    document = live.documents.get(key)
    if document is None:
        for path in agreement_files(config.agreements_dir):
            if held.source is not None and path.resolve() == held.source.resolve():
                document = path.read_text(encoding="utf-8")
    if document is None:
        raise RegistryError(f"{key}: its document was not found; publish it first")
    record = AgreementRecord.sign(
        agreement_id, version, document, _admin_key(config),
        withdrawn_at=at.astimezone(UTC) if at is not None else registry_time(),
        published_at=registry_time(),
    )  # fmt: skip
    _send(config, TOPIC_REGISTRY_AGREEMENTS, [(record.kafka_key, record.to_bytes())])
    return record
