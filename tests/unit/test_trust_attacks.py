"""Issue 13: trust that does not depend on the transport.

Each test plays a principal that can write somewhere it should not (a police connector writing
to the NRM feed or to audit.checkpoints; an issuer with a revoked key backdating an event) and
checks that no reader accepts what it wrote. A scaffolded deployment, no Kafka.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.agreements import load_agreements
from broker.audit.checkpoint import Checkpoint
from broker.audit.cli import key_lookup
from broker.audit.findings import FindingCode
from broker.audit.record import Outcome
from broker.audit.replay import Judge, PartitionReplay, Recorded
from broker.audit.verify import verify_log
from broker.config import BrokerConfig, load_config
from broker.envelope import (
    ForwardedEnvelope,
    KeyRegistry,
    SigningKey,
    issue,
    load_signing_key,
)
from broker.feed import FeedVerifier
from broker.router.core import IngressRecord, RouterCore
from broker.router.state import PartitionState
from broker.scaffold import REPO_ROOT, write_deployment

EVENTS = REPO_ROOT / "examples" / "events"
WESTMINSTER = "council.E09000033"
POLICE = "police.met"
NRM = "nrm.sca"
TOPIC = f"ingress.{WESTMINSTER}"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> BrokerConfig:
    path = write_deployment(tmp_path_factory.mktemp("dep"), bootstrap_servers="127.0.0.1:9")
    return load_config(path)


def _key(config: BrokerConfig, agency: str) -> SigningKey:
    path = config.agency(agency).signing_key
    assert path is not None
    return load_signing_key(path)


def _core(config: BrokerConfig, keys: KeyRegistry | None = None) -> RouterCore:
    return RouterCore(
        keys=keys or KeyRegistry.from_dir(config.keys_dir),
        agreements=load_agreements(config.agreements_dir),
        router_key=load_signing_key(config.router.signing_key),
        agencies=config.agency_ids,
        pseudonym_key=config.pseudonym_key,
        max_skew=timedelta(seconds=config.router.max_clock_skew_s),
    )


def _event(index: int = 3) -> dict[str, object]:
    lines = (EVENTS / f"{WESTMINSTER}.jsonl").read_text().splitlines()
    event: dict[str, object] = json.loads(lines[index])  # 3: child.missing.started, M, high
    return event


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _routed(config: BrokerConfig, now: datetime) -> tuple[PartitionState, dict[str, bytes]]:
    """Route one real event; return the partition state and the feed records by topic."""
    value = issue(_event(), issuer=WESTMINSTER, key=_key(config, WESTMINSTER), now=now).to_bytes()
    state = PartitionState.new(f"{TOPIC}/0")
    result = _core(config).route(IngressRecord(TOPIC, 0, 0, value, _ms(now)), state, now=now)
    assert result.outcome == Outcome.FORWARDED
    feeds = {o.topic: o.value for o in result.outputs if o.topic.startswith("feed.") and o.value}
    return state, feeds


# -- 1. roles: a derived section only from the configured router's router-role key ----------


def _resign_derived(forwarded: ForwardedEnvelope, key: SigningKey, **changes: object) -> bytes:
    """`forwarded` with its derived section changed and re-signed by `key`, as its owner would."""
    derived = dataclasses.replace(
        forwarded.derived, router=key.agency_id, router_key_id=key.key_id, **changes
    )  # type: ignore[arg-type]
    signature = key.sign(forwarded.router_signing_input(derived))
    signed = dataclasses.replace(derived, signature=signature)
    return dataclasses.replace(forwarded, derived=signed).to_bytes()


def test_police_key_cannot_forge_a_derived_section_on_the_nrm_feed(config: BrokerConfig) -> None:
    now = datetime.now(UTC)
    _, feeds = _routed(config, now)
    nrm = FeedVerifier.from_config(config, NRM)
    police_copy = ForwardedEnvelope.from_bytes(feeds[f"feed.{POLICE}"])
    # The police, who legitimately received this event, re-address it to the NRM under an
    # agreement that does not exist, sign the derived section with their own key and write it
    # to feed.nrm.sca.
    forged = _resign_derived(
        police_copy,
        _key(config, POLICE),
        recipient=NRM,
        agreements=("dsa.made-up@1",),
    )
    item = nrm.verify(0, 0, forged, _ms(now))
    assert item.event is None and item.error is not None
    assert item.error.code == "wrong_router"
    # Claiming to be the configured router changes nothing: the police key is no router key
    # of router.main (police.met's key id names no router.main key; were it one, its role would
    # be issuer).
    pretend = _resign_derived(police_copy, _key(config, POLICE), recipient=NRM)
    pretend_env = ForwardedEnvelope.from_bytes(pretend)
    as_router = dataclasses.replace(
        pretend_env,
        derived=dataclasses.replace(pretend_env.derived, router=config.router.id),
    ).to_bytes()
    item = nrm.verify(0, 1, as_router, _ms(now))
    assert item.error is not None and item.error.code in ("unknown_key", "wrong_role")
    # The genuine forward to the police verifies for the police, so the check is not vacuous.
    police = FeedVerifier.from_config(config, POLICE)
    assert police.verify(0, 0, feeds[f"feed.{POLICE}"], _ms(now)).event is not None


def test_a_police_key_file_claiming_the_router_role_is_not_the_router(
    config: BrokerConfig, tmp_path: Path
) -> None:
    # Even if the police key were (wrongly) given the router role in the key folder, it is not
    # a key of the configured router identity.
    now = datetime.now(UTC)
    _, feeds = _routed(config, now)
    police = _key(config, POLICE)
    keys = KeyRegistry.from_dir(config.keys_dir)
    info = dataclasses.replace(police.public_key_info(), roles=("issuer", "router"))
    keys.add(info)
    verifier = dataclasses.replace(FeedVerifier.from_config(config, NRM), keys=keys)
    forged = _resign_derived(
        ForwardedEnvelope.from_bytes(feeds[f"feed.{POLICE}"]), police, recipient=NRM
    )
    item = verifier.verify(0, 0, forged, _ms(now))
    assert item.error is not None and item.error.code == "wrong_router"


def test_checkpoint_signed_by_the_police_key_fails_verification(config: BrokerConfig) -> None:
    now = datetime.now(UTC)
    records = _audit_values(config, now)
    lookup = key_lookup(KeyRegistry.from_dir(config.keys_dir), config.router.id)

    def checkpoint(key: SigningKey, agency: str) -> bytes:
        return Checkpoint.for_chain(
            records.state.chain,
            previous=None,
            issued_at=now,
            private_key=key,
            agency=agency,
            key_id=key.key_id,
        ).to_bytes()

    router_key = load_signing_key(config.router.signing_key)
    genuine = verify_log(records.values, [(0, 0, checkpoint(router_key, config.router.id))], lookup)
    assert genuine.ok, genuine.findings
    police = _key(config, POLICE)
    for agency in (POLICE, config.router.id):  # in its own name, or naming the router
        report = verify_log(records.values, [(0, 0, checkpoint(police, agency))], lookup)
        assert not report.ok
        # The forged checkpoint is refused, so the records it claimed to sign are unsigned.
        assert {f.code for f in report.findings} == {
            FindingCode.UNKNOWN_KEY,
            FindingCode.UNSIGNED_TAIL,
        }
        assert report.unsigned_tail == {records.state.chain.chain: len(records.values)}


@dataclasses.dataclass
class _Audit:
    state: PartitionState
    values: list[tuple[int, int, bytes]]


def _audit_values(config: BrokerConfig, now: datetime) -> _Audit:
    """Route two events and keep the audit records the router wrote."""
    core = _core(config)
    state = PartitionState.new(f"{TOPIC}/0")
    values: list[tuple[int, int, bytes]] = []
    for offset, index in enumerate((3, 4)):
        event = issue(_event(index), issuer=WESTMINSTER, key=_key(config, WESTMINSTER), now=now)
        result = core.route(
            IngressRecord(TOPIC, 0, offset, event.to_bytes(), _ms(now)), state, now=now
        )
        values += [(0, len(values), o.value) for o in result.outputs
                   if o.topic == "audit.decisions" and o.value]  # fmt: skip
    return _Audit(state, values)


def test_checkpoint_needs_the_checkpoint_role(config: BrokerConfig) -> None:
    # The router's own key, registered with the router role only, cannot sign checkpoints.
    now = datetime.now(UTC)
    records = _audit_values(config, now)
    router_key = load_signing_key(config.router.signing_key)
    keys = KeyRegistry.from_dir(config.keys_dir)
    keys.add(dataclasses.replace(router_key.public_key_info(), roles=("router",)))
    cp = Checkpoint.for_chain(
        records.state.chain,
        previous=None,
        issued_at=now,
        private_key=router_key,
        agency=config.router.id,
        key_id=router_key.key_id,
    ).to_bytes()
    report = verify_log(records.values, [(0, 0, cp)], key_lookup(keys, config.router.id))
    assert {f.code for f in report.findings} == {FindingCode.UNKNOWN_KEY, FindingCode.UNSIGNED_TAIL}


# -- 2. time: keys judged when the broker received the event ---------------------------------


def test_backdated_event_signed_with_a_just_revoked_key_is_quarantined(
    config: BrokerConfig,
) -> None:
    received = datetime.now(UTC).replace(microsecond=0)
    key = _key(config, WESTMINSTER)
    keys = KeyRegistry.from_dir(config.keys_dir)
    keys.revoke(WESTMINSTER, key.key_id, received - timedelta(seconds=1))
    # Signed after the revocation, dated 30 s earlier, when the key was still good.
    value = issue(
        _event(), issuer=WESTMINSTER, key=key, now=received - timedelta(seconds=30)
    ).to_bytes()
    state = PartitionState.new(f"{TOPIC}/0")
    result = _core(config, keys).route(
        IngressRecord(TOPIC, 0, 0, value, _ms(received)), state, now=received
    )
    assert result.outcome == Outcome.QUARANTINED
    assert result.record.reason == "revoked_key"
    assert not [o for o in result.outputs if o.topic.startswith("feed.")]
    # Audit replay judges at the same record timestamp and agrees with the router.
    judge = Judge(
        keys=keys,
        agreements=load_agreements(config.agreements_dir),
        agencies=config.agency_ids,
    )
    from broker.audit.record import decode_fields

    audit = next(o.value for o in result.outputs if o.topic == "audit.decisions")
    assert audit is not None
    recorded = Recorded(0, 0, decode_fields(audit))
    replay = PartitionReplay(judge, TOPIC)
    assert replay.step(0, value, recorded, received) == []
    # Judged at the issuer's claimed time instead, the event would have passed: the record
    # timestamp is what makes the difference.
    replay = PartitionReplay(judge, TOPIC)
    assert replay.step(0, value, recorded, received - timedelta(seconds=30)) != []


def test_issued_at_far_from_the_receipt_time_is_quarantined(config: BrokerConfig) -> None:
    received = datetime.now(UTC)
    skew = timedelta(seconds=config.router.max_clock_skew_s)
    key = _key(config, WESTMINSTER)
    core = _core(config)
    for offset, (delta, expected) in enumerate(
        [
            (-skew - timedelta(seconds=1), Outcome.QUARANTINED),  # backdated
            (skew + timedelta(seconds=1), Outcome.QUARANTINED),  # post-dated
            (-skew + timedelta(seconds=1), Outcome.FORWARDED),  # within the allowance
        ]
    ):
        value = issue(_event(), issuer=WESTMINSTER, key=key, now=received + delta).to_bytes()
        state = PartitionState.new(f"{TOPIC}/0")
        result = core.route(
            IngressRecord(TOPIC, 0, offset, value, _ms(received)), state, now=received
        )
        assert result.outcome == expected, delta
        if expected == Outcome.QUARANTINED:
            assert result.record.reason == "clock_skew"
            (quarantine,) = [o for o in result.outputs if o.topic == "quarantine"]
            assert json.loads(dict(quarantine.headers)["detail"])["reason"] == "clock_skew"
