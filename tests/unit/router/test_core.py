"""The router's pure decision step: no Kafka, real keys, agreements and envelopes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.agreements import load_agreements
from broker.audit.record import DecisionRecord, Outcome, decode_fields
from broker.audit.replay import Judge, PartitionReplay, Recorded
from broker.config import TOPIC_AUDIT, TOPIC_QUARANTINE, ConfigError, load_config
from broker.envelope import (
    ForwardedEnvelope,
    KeyRegistry,
    SigningKey,
    disclose,
    issue,
    load_signing_key,
    verify_forwarded,
)
from broker.router.core import IngressRecord, Output, RouterCore
from broker.router.state import PartitionState
from broker.scaffold import REPO_ROOT, write_deployment

EVENTS = REPO_ROOT / "examples" / "events"
WESTMINSTER = "council.E09000033"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_deployment(tmp_path_factory.mktemp("dep"), bootstrap_servers="127.0.0.1:9")


@pytest.fixture
def core(deployment: Path) -> RouterCore:
    config = load_config(deployment)
    keys = KeyRegistry.from_dir(config.keys_dir)
    return RouterCore(
        keys=keys,
        agreements=load_agreements(config.agreements_dir),
        router_key=load_signing_key(config.router.signing_key),
        agencies=config.agency_ids,
        pseudonym_key=config.pseudonym_key,
    )


def _key(deployment: Path, agency: str) -> SigningKey:
    config = load_config(deployment)
    path = config.agency(agency).signing_key
    assert path is not None
    return load_signing_key(path)


def _events(agency: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (EVENTS / f"{agency}.jsonl").read_text().splitlines()]


def _route(
    core: RouterCore, state: PartitionState, value: bytes, topic: str, offset: int = 0
) -> tuple[Outcome, list[tuple[str, bytes | None, dict[str, bytes]]]]:
    result = core.route(IngressRecord(topic, 0, offset, value), state)
    return result.outcome, [(o.topic, o.value, dict(o.headers)) for o in result.outputs]


def test_missing_child_reaches_police_and_stats_with_their_fields(
    core: RouterCore, deployment: Path
) -> None:
    event = _events(WESTMINSTER)[3]  # child.missing.started, M, high risk
    value = issue(event, issuer=WESTMINSTER, key=_key(deployment, WESTMINSTER)).to_bytes()
    state = PartitionState.new(f"ingress.{WESTMINSTER}/0")
    outcome, outputs = _route(core, state, value, f"ingress.{WESTMINSTER}")
    assert outcome == Outcome.FORWARDED
    feeds = {topic: v for topic, v, _ in outputs if topic.startswith("feed.")}
    assert set(feeds) >= {"feed.police.met", "feed.stats.national"}
    police = verify_forwarded(
        feeds["feed.police.met"], core.keys, router="router.main", recipient="police.met"
    )
    assert {"physical_description", "clothing", "first_name", "dob"} <= set(police.fields)
    stats = verify_forwarded(
        feeds["feed.stats.national"], core.keys, router="router.main", recipient="stats.national"
    )
    assert not {"first_name", "last_name", "dob", "physical_description"} & set(stats.fields)
    assert "child_pseudonym" in stats.derived
    (audit,) = [v for topic, v, _ in outputs if topic == TOPIC_AUDIT]
    assert audit is not None
    record = DecisionRecord.from_bytes(audit)
    assert record.seq == 0
    assert {r.recipient for r in record.recipients} == set(p.removeprefix("feed.") for p in feeds)
    assert "Amina" not in audit.decode("latin-1")


def test_away_episode_without_concern_gives_police_the_reduced_set(
    core: RouterCore, deployment: Path
) -> None:
    event = _events(WESTMINSTER)[4]  # child.missing.started, A, low risk, no concern
    value = issue(event, issuer=WESTMINSTER, key=_key(deployment, WESTMINSTER)).to_bytes()
    state = PartitionState.new(f"ingress.{WESTMINSTER}/0")
    _, outputs = _route(core, state, value, f"ingress.{WESTMINSTER}")
    (police,) = [v for topic, v, _ in outputs if topic == "feed.police.met"]
    assert police is not None
    fields = set(ForwardedEnvelope.from_bytes(police).field_values())
    assert "physical_description" not in fields and "first_name" not in fields
    assert {"la_child_id", "missing_type", "risk_level"} <= fields


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b"\x00garbage", "bad_encoding"),
        (lambda b: b[:2] + bytes(8) + b[10:], "unknown_schema"),
        (lambda b: b[:-3] + bytes([b[-3] ^ 1]) + b[-2:], "bad_signature"),
    ],
)
def test_bad_input_is_quarantined_with_original_bytes(
    core: RouterCore, deployment: Path, mutate: object, reason: str
) -> None:
    event = _events(WESTMINSTER)[0]
    good = issue(event, issuer=WESTMINSTER, key=_key(deployment, WESTMINSTER)).to_bytes()
    bad = mutate(good)  # type: ignore[operator]
    state = PartitionState.new(f"ingress.{WESTMINSTER}/0")
    outcome, outputs = _route(core, state, bad, f"ingress.{WESTMINSTER}")
    assert outcome == Outcome.QUARANTINED
    (quarantine,) = [(v, h) for topic, v, h in outputs if topic == TOPIC_QUARANTINE]
    assert quarantine[0] == bad
    assert quarantine[1]["reason"] == reason.encode()
    assert not [topic for topic, _, _ in outputs if topic.startswith("feed.")]
    assert state.chain.next_seq == 1  # the quarantine decision is audited too


def test_wrong_ingress_and_duplicates(core: RouterCore, deployment: Path) -> None:
    event = _events("police.met")[0]
    value = issue(event, issuer="police.met", key=_key(deployment, "police.met")).to_bytes()
    state = PartitionState.new(f"ingress.{WESTMINSTER}/0")
    outcome, outputs = _route(core, state, value, f"ingress.{WESTMINSTER}")
    assert outcome == Outcome.QUARANTINED
    assert any(h.get("reason") == b"wrong_ingress" for _, _, h in outputs)

    state = PartitionState.new("ingress.police.met/0")
    first, _ = _route(core, state, value, "ingress.police.met", offset=0)
    again, outputs = _route(core, state, value, "ingress.police.met", offset=1)
    assert first == Outcome.FORWARDED
    assert again == Outcome.DUPLICATE
    assert any(h.get("reason") == b"duplicate" for _, _, h in outputs)
    assert not [topic for topic, _, _ in outputs if topic.startswith("feed.")]


def test_guardian_gets_later_events_only_after_appointment(
    core: RouterCore, deployment: Path
) -> None:
    key = _key(deployment, WESTMINSTER)
    events = _events(WESTMINSTER)
    missing = issue(events[3], issuer=WESTMINSTER, key=key).to_bytes()
    appointment = issue(events[1], issuer=WESTMINSTER, key=key).to_bytes()
    topic = f"ingress.{WESTMINSTER}"

    before = PartitionState.new(f"ingress.{WESTMINSTER}/0")
    _, outputs = _route(core, before, missing, topic)
    assert "feed.guardian.ictg" not in {t for t, _, _ in outputs}

    after = PartitionState.new(f"ingress.{WESTMINSTER}/0")
    _route(core, after, appointment, topic, offset=0)
    _, outputs = _route(core, after, missing, topic, offset=1)
    assert "feed.guardian.ictg" in {t for t, _, _ in outputs}


def test_a_router_fault_quarantines_instead_of_failing_the_batch(
    core: RouterCore, deployment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Amina")  # a message that must not leak

    monkeypatch.setattr("broker.router.core.disclose", broken)
    event = _events(WESTMINSTER)[3]
    value = issue(event, issuer=WESTMINSTER, key=_key(deployment, WESTMINSTER)).to_bytes()
    state = PartitionState.new(f"ingress.{WESTMINSTER}/0")
    outcome, outputs = _route(core, state, value, f"ingress.{WESTMINSTER}")
    assert outcome == Outcome.QUARANTINED
    (headers,) = [h for topic, _, h in outputs if topic == TOPIC_QUARANTINE]
    assert headers["reason"] == b"internal_error"
    assert b"Amina" not in headers["detail"]
    assert set(state.seen) == set()  # a later retry of the same event is not a "duplicate"


def test_replay_re_checks_every_ingress_record_as_the_router_did(
    core: RouterCore, deployment: Path
) -> None:
    """Router and audit replay share the ingress checks: for a good event, a repeat, a
    tombstone, bytes that are no envelope and an event on another agency's topic, replaying the
    router's own decisions finds no difference."""
    topic = f"ingress.{WESTMINSTER}"
    good = issue(_events(WESTMINSTER)[3], issuer=WESTMINSTER, key=_key(deployment, WESTMINSTER))
    met = "police.met"
    police = issue(_events(met)[0], issuer=met, key=_key(deployment, met))
    values: list[bytes | None] = [
        good.to_bytes(), good.to_bytes(), None, b"not an envelope", police.to_bytes(),
    ]  # fmt: skip
    state = PartitionState.new(f"{topic}/0")
    judge = Judge(keys=core.keys, agreements=core.agreements, agencies=core.agencies)
    replay = PartitionReplay(judge, topic)
    reasons = []
    for offset, value in enumerate(values):
        result = core.route(IngressRecord(topic, 0, offset, value), state)
        (audit,) = [o.value for o in result.outputs if o.topic == TOPIC_AUDIT]
        assert audit is not None
        fields = decode_fields(audit)
        reasons.append(fields["reason"])
        assert replay.step(offset, value, Recorded(0, offset, fields)) == [], fields["reason"]
    assert reasons == [None, "duplicate", "bad_encoding", "bad_encoding", "wrong_ingress"]


# The subject (issue 13): the issuer's own reference goes only where an agreement shares it.


def _feeds(result_outputs: list[Output]) -> dict[str, Output]:
    return {o.topic: o for o in result_outputs if o.topic.startswith("feed.")}


@pytest.mark.parametrize(
    ("agency", "index", "identifiers"),
    [
        (WESTMINSTER, 3, ("WCC-2026-0147",)),  # child.missing.started: la_child_id and subject
        ("police.met", 1, ("MPS-MISPER-26-55120",)),  # report closed: police_ref and subject
        ("nrm.sca", 0, ("NRM-2026-118842",)),  # decision: referral_id and subject
    ],
)
def test_statistics_never_receive_an_issuer_reference(
    core: RouterCore, deployment: Path, agency: str, index: int, identifiers: tuple[str, ...]
) -> None:
    event = _events(agency)[index]
    assert event["subject"] in identifiers
    value = issue(event, issuer=agency, key=_key(deployment, agency)).to_bytes()
    state = PartitionState.new(f"ingress.{agency}/0")
    result = core.route(IngressRecord(f"ingress.{agency}", 0, 0, value), state)
    stats = _feeds(result.outputs)["feed.stats.national"]
    assert stats.value is not None and stats.key is not None
    for identifier in identifiers:
        raw = identifier.encode()
        assert raw not in stats.value and raw not in stats.key
        assert all(raw not in v for _, v in stats.headers)
    received = verify_forwarded(
        stats.value, core.keys, router="router.main", recipient="stats.national"
    )
    assert received.subject is None and received.to_json()["subject"] is None
    (record,) = [r for r in result.record.recipients if r.recipient == "stats.national"]
    assert "subject" in record.fields_withheld and "subject" not in record.fields_forwarded


def test_police_granted_the_subject_receive_it(core: RouterCore, deployment: Path) -> None:
    event = _events(WESTMINSTER)[3]
    value = issue(event, issuer=WESTMINSTER, key=_key(deployment, WESTMINSTER)).to_bytes()
    state = PartitionState.new(f"ingress.{WESTMINSTER}/0")
    result = core.route(IngressRecord(f"ingress.{WESTMINSTER}", 0, 0, value), state)
    police = _feeds(result.outputs)["feed.police.met"]
    assert police.value is not None
    received = verify_forwarded(
        police.value, core.keys, router="router.main", recipient="police.met"
    )
    assert received.subject == event["subject"]
    (record,) = [r for r in result.record.recipients if r.recipient == "police.met"]
    assert "subject" in record.fields_forwarded


def test_feed_keys_keep_one_childs_order_without_naming_the_child(
    core: RouterCore, deployment: Path
) -> None:
    key = _key(deployment, WESTMINSTER)
    events = _events(WESTMINSTER)
    state = PartitionState.new(f"ingress.{WESTMINSTER}/0")
    keys: dict[str, set[bytes | None]] = {}
    for offset, index in enumerate((3, 5)):  # two events about the same child
        value = issue(events[index], issuer=WESTMINSTER, key=key).to_bytes()
        result = core.route(IngressRecord(f"ingress.{WESTMINSTER}", 0, offset, value), state)
        for topic, output in _feeds(result.outputs).items():
            keys.setdefault(topic, set()).add(output.key)
    assert events[3]["subject"] == events[5]["subject"]
    police, stats = keys["feed.police.met"], keys["feed.stats.national"]
    assert len(police) == 1 and len(stats) == 1  # one key per child and recipient: one partition
    assert police != stats  # not linkable across recipients
    assert str(events[3]["subject"]).encode() not in police | stats


def test_a_v1_event_goes_only_to_recipients_granted_the_subject(
    core: RouterCore, deployment: Path
) -> None:
    """A v1 header shows the subject to every recipient, so the router forwards a v1 event only
    where the subject is granted; audit replay re-checks it the same way."""
    topic = f"ingress.{WESTMINSTER}"
    event = _events(WESTMINSTER)[3]
    value = issue(event, issuer=WESTMINSTER, key=_key(deployment, WESTMINSTER), version=1)
    state = PartitionState.new(f"{topic}/0")
    result = core.route(IngressRecord(topic, 0, 0, value.to_bytes()), state)
    feeds = _feeds(result.outputs)
    assert "feed.police.met" in feeds and "feed.stats.national" not in feeds
    police = feeds["feed.police.met"].value
    assert police is not None
    received = verify_forwarded(police, core.keys, router="router.main", recipient="police.met")
    assert received.header.version == 1 and received.subject == event["subject"]
    assert {r.recipient for r in result.record.recipients} == {"police.met"}
    judge = Judge(keys=core.keys, agreements=core.agreements, agencies=core.agencies)
    (audit,) = [o.value for o in result.outputs if o.topic == TOPIC_AUDIT]
    assert audit is not None
    replay = PartitionReplay(judge, topic)
    assert replay.step(0, value.to_bytes(), Recorded(0, 0, decode_fields(audit))) == []


def test_replay_re_checks_a_decision_recorded_before_the_subject_was_granted(
    core: RouterCore, deployment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A router older than wire format v2 forwarded v1 events to every permitted recipient and
    named no subject in the audit record; replaying such a log raises no false finding."""
    topic = f"ingress.{WESTMINSTER}"
    event = _events(WESTMINSTER)[3]
    value = issue(event, issuer=WESTMINSTER, key=_key(deployment, WESTMINSTER), version=1)
    # The old router: every permitted recipient got the v1 event, subject and all.
    monkeypatch.setattr("broker.router.core.deliverable", lambda fields, version: True)
    monkeypatch.setattr(
        "broker.router.core.disclose",
        lambda envelope, fields, **kw: disclose(envelope, {*fields, "subject"}, **kw),
    )
    state = PartitionState.new(f"{topic}/0")
    result = core.route(IngressRecord(topic, 0, 0, value.to_bytes()), state)
    (audit,) = [o.value for o in result.outputs if o.topic == TOPIC_AUDIT]
    assert audit is not None
    fields = dict(decode_fields(audit))
    old = [
        {**r, "fields_forwarded": [f for f in r["fields_forwarded"] if f != "subject"],
         "fields_withheld": [f for f in r["fields_withheld"] if f != "subject"]}
        for r in fields["recipients"]
    ]  # fmt: skip
    assert {r["recipient"] for r in old} >= {"police.met", "stats.national"}
    judge = Judge(keys=core.keys, agreements=core.agreements, agencies=core.agencies)
    replay = PartitionReplay(judge, topic)
    legacy = {**fields, "recipients": old}
    assert replay.step(0, value.to_bytes(), Recorded(0, 0, legacy)) == []
    without_police = {**fields, "recipients": [r for r in old if r["recipient"] != "police.met"]}
    replay = PartitionReplay(judge, topic)
    assert replay.step(0, value.to_bytes(), Recorded(0, 0, without_police)) == [
        "recipient police.met allowed by the agreements but not recorded"
    ]


def test_a_router_without_pseudonym_secret_does_not_start(
    deployment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every feed record key is an HMAC under the recipient's pseudonym key: without the secret
    the router refuses to start rather than quarantining every event."""
    config = load_config(deployment)
    monkeypatch.delenv(config.router.pseudonym_secret_env, raising=False)
    config.router.__dict__["pseudonym_secret_file"] = None  # as if the config named none
    with pytest.raises(ConfigError, match="pseudonym secret"):
        RouterCore(
            keys=KeyRegistry.from_dir(config.keys_dir),
            agreements=load_agreements(config.agreements_dir),
            router_key=load_signing_key(config.router.signing_key),
            agencies=config.agency_ids,
            pseudonym_key=config.pseudonym_key,
        )


def test_each_recipients_pseudonym_key_is_derived_once(deployment: Path) -> None:
    """The secret is read (from its file or environment variable) once per recipient, not for
    every forward; the keys used are still the configured ones."""
    config = load_config(deployment)
    asked: list[str] = []

    def pseudonym_key(recipient: str) -> bytes:
        asked.append(recipient)
        return config.pseudonym_key(recipient)

    core = RouterCore(
        keys=KeyRegistry.from_dir(config.keys_dir),
        agreements=load_agreements(config.agreements_dir),
        router_key=load_signing_key(config.router.signing_key),
        agencies=config.agency_ids,
        pseudonym_key=pseudonym_key,
    )
    key = _key(deployment, WESTMINSTER)
    state = PartitionState.new(f"ingress.{WESTMINSTER}/0")
    recipients: set[str] = set()
    for offset, event in enumerate(_events(WESTMINSTER)[3:5]):  # two missing episodes
        value = issue(event, issuer=WESTMINSTER, key=key).to_bytes()
        outcome, outputs = _route(core, state, value, f"ingress.{WESTMINSTER}", offset)
        assert outcome == Outcome.FORWARDED
        recipients |= {t.removeprefix("feed.") for t, _, _ in outputs if t.startswith("feed.")}
    assert {"police.met", "stats.national"} <= recipients
    assert sorted(asked) == sorted({*recipients, "router.main"})  # each once
