"""`broker audit ...` on a real Kafka, on a log the real router wrote from a realistic scenario.

Tamper tests copy `audit.decisions` (or `audit.checkpoints`) into a new topic with one record
altered, deleted, reordered or replaced, and point the command at the copy (`--audit-topic`,
`--checkpoints-topic`): the finding must name the copy's partition and offset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit.checkpoint import Checkpoint
from broker.audit.cli import read_values
from broker.audit.proof import check_proof_file
from broker.audit.reader import TopicReader
from broker.audit.record import DecisionRecord, RecipientDecision, read_header, record_hash
from broker.cli import main
from broker.config import TOPIC_AUDIT, TOPIC_CHECKPOINTS, topic_ingress
from broker.envelope import Envelope, load_public_key
from broker.errors import BrokerError
from broker.feed import FeedReader
from broker.kafka.client import KafkaClients, TopicSpec
from broker.kafka.credentials import OPERATOR

from .conftest import Deployment

pytestmark = pytest.mark.integration

Partitions = dict[int, list[bytes]]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(list(argv))
    return status, capsys.readouterr().out


def read_partitions(d: Deployment, topic: str) -> Partitions:
    with TopicReader(KafkaClients(d.config.kafka, OPERATOR)) as reader:
        values = read_values(reader, topic)
    out: Partitions = defaultdict(list)
    for partition, _, value in sorted(values, key=lambda v: (v[0], v[1])):
        out[partition].append(value)
    return out


def write_copy(d: Deployment, partitions: Partitions, prefix: str) -> str:
    """A fresh topic with these values, partition by partition: offset = list index."""
    clients = KafkaClients(d.config.kafka, OPERATOR)
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    clients.ensure_topics([TopicSpec(topic, max(partitions) + 1)])
    producer = clients.producer()
    try:
        for partition, values in partitions.items():
            for value in values:
                producer.send(topic, value=value, partition=partition)
        producer.flush()
    finally:
        producer.close()
    return topic


def busiest_chain(partitions: Partitions) -> tuple[int, str, list[int]]:
    """(audit partition, chain id, indexes of its records) of the longest chain."""
    best: tuple[int, str, list[int]] = (0, "", [])
    for partition, values in partitions.items():
        by_chain: dict[str, list[int]] = defaultdict(list)
        for i, value in enumerate(values):
            by_chain[read_header(value).chain].append(i)
        for chain, indexes in by_chain.items():
            if len(indexes) > len(best[2]):
                best = (partition, chain, indexes)
    return best


def replay(
    capsys: pytest.CaptureFixture[str], deployment: Deployment, *options: str
) -> tuple[int, str]:
    """`broker audit replay` of the deployment, without the progress bar, with `options`."""
    return run(
        capsys, "audit", "replay", "--config", str(deployment.config_path), "--no-progress",
        *options,
    )


def findings_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FINDING ")]


# -- (1) a clean log verifies and replays without findings ------------------------------------


def test_verify_reports_no_findings_on_the_routed_log(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run(capsys, "audit", "verify", "--config", str(deployment.config_path))
    assert status == 0, out
    assert findings_of(out) == []
    assert f"{TOPIC_AUDIT}: {deployment.routed} decision record(s)" in out
    assert "first decision 20" in out and ", last 20" in out
    # Checkpoints were found (the whole number: "10 checkpoint(s)" also contains "0 checkpoint").
    checkpoints = re.search(r"(?<!\d)(\d+) checkpoint\(s\)", out)
    assert checkpoints is not None and int(checkpoints.group(1)) > 0, out


@pytest.mark.parametrize("workers", ["1", "3"])
def test_replay_reports_no_findings_and_compares_every_decision(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    status, out = replay(capsys, deployment, "--workers", workers)
    assert status == 0, out
    assert f"{deployment.routed} decision(s) re-evaluated and compared" in out
    # The scenario makes every kind of outcome the router has for valid input.
    for outcome in ("forwarded", "denied", "duplicate"):
        assert outcome in out


def test_replay_from_a_later_time_only_rebuilds_state(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = replay(capsys, deployment, "--from", "2999-01-01T00:00:00Z")
    assert status == 0, out
    assert "0 decision(s) re-evaluated" in out
    assert f"{deployment.routed} read for state before --from" in out


# -- (2) tampering is found, with the offset -------------------------------------------------


def tampered_verify(
    deployment: Deployment,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[list[bytes], list[int]], int],
) -> tuple[int, str, list[str]]:
    """Copy the audit log with `change(values of the partition, indexes of a chain)` applied;
    verify the copy; return (partition, copy topic, findings); `change` returns the offset."""
    partitions = read_partitions(deployment, TOPIC_AUDIT)
    partition, _, indexes = busiest_chain(partitions)
    assert len(indexes) >= 6
    offset = change(partitions[partition], indexes)
    topic = write_copy(deployment, partitions, "audit.copy")
    status, out = run(
        capsys,
        "audit",
        "verify",
        "--config",
        str(deployment.config_path),
        "--audit-topic",
        topic,
    )
    assert status == 1
    return offset, topic, [f for f in findings_of(out) if f.startswith(f"FINDING {topic}[")]


def test_altered_record_is_found_at_its_offset(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    def alter(values: list[bytes], indexes: list[int]) -> int:
        i = indexes[2]
        record = DecisionRecord.from_bytes(values[i])
        values[i] = dataclasses.replace(
            record, decided_at=record.decided_at + timedelta(1)
        ).to_bytes()
        return i

    offset, _topic, found = tampered_verify(deployment, capsys, alter)
    assert any(f" offset {offset} " in f and ": altered:" in f for f in found), found


def test_deleted_record_is_found_at_the_next_offset(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    def delete(values: list[bytes], indexes: list[int]) -> int:
        del values[indexes[2]]
        return indexes[3] - 1  # where the chain's next record now sits

    offset, _topic, found = tampered_verify(deployment, capsys, delete)
    assert any(f" offset {offset} " in f and ": deleted:" in f for f in found), found


def test_reordered_records_are_found_at_the_misplaced_offset(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    def swap(values: list[bytes], indexes: list[int]) -> int:
        i, j = indexes[2], indexes[3]
        values[i], values[j] = values[j], values[i]
        return j

    offset, _topic, found = tampered_verify(deployment, capsys, swap)
    assert any(f" offset {offset} " in f and ": reordered:" in f for f in found), found


def test_forged_checkpoint_fails_its_signature(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    partitions = read_partitions(deployment, TOPIC_CHECKPOINTS)
    values = partitions[0]
    real = Checkpoint.from_bytes(values[-1])
    forger = Ed25519PrivateKey.generate()
    forged = Checkpoint.create(
        chain=real.chain,
        tree_size=real.tree_size,
        root_hash=hashlib.sha256(b"another history").digest(),
        head_hash=real.head_hash,
        previous=real,
        issued_at=real.issued_at + timedelta(seconds=1),
        private_key=forger,
        agency=real.agency,
        key_id=real.key_id,
    )
    values.append(forged.to_bytes())
    topic = write_copy(deployment, partitions, "audit.checkpoints-copy")
    status, out = run(
        capsys,
        "audit",
        "verify",
        "--config",
        str(deployment.config_path),
        "--checkpoints-topic",
        topic,
    )
    assert status == 1
    offset = len(values) - 1
    assert findings_of(out) == [
        f for f in findings_of(out) if f"{topic}[0] offset {offset} " in f
    ], "only the forged checkpoint is reported (a bad signature masks nothing)"
    assert any(": bad_signature:" in f for f in findings_of(out))


def test_forged_well_linked_decision_after_the_last_checkpoint_fails_verify(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 13 part 7: a decision appended by anyone who can write to the topic, correctly
    linked into its chain, is covered by no signed checkpoint; the router signs every
    transaction, so verify must fail on it, not pass with a note."""
    partitions = read_partitions(deployment, TOPIC_AUDIT)
    partition, _chain, indexes = busiest_chain(partitions)
    values = partitions[partition]
    last = DecisionRecord.from_bytes(values[indexes[-1]])
    forged = dataclasses.replace(
        last,
        seq=last.seq + 1,
        prev_hash=record_hash(values[indexes[-1]]),
        ingress_offset=last.ingress_offset + 1,
        event_id=str(uuid.uuid4()),
        decided_at=last.decided_at + timedelta(seconds=1),
    )
    values.append(forged.to_bytes())
    topic = write_copy(deployment, partitions, "audit.copy")
    status, out = run(
        capsys, "audit", "verify", "--config", str(deployment.config_path), "--audit-topic", topic
    )
    assert status == 1, out
    found = findings_of(out)
    assert found == [
        f"FINDING {topic}[{partition}] offset {len(values) - 1} chain {last.chain}: unsigned_tail: "
        "the chain's last 1 record(s), from this one on, are covered by no valid signed "
        "checkpoint: the router signs each transaction's records, so these were not committed "
        "by it (or their checkpoint is missing)"
    ], out
    # The same copy without the forged record verifies: the router left no unsigned tail.
    values.pop()
    clean = write_copy(deployment, partitions, "audit.copy")
    status, out = run(
        capsys, "audit", "verify", "--config", str(deployment.config_path), "--audit-topic", clean
    )
    assert status == 0, out


def test_decision_that_does_not_match_the_agreements_is_found_by_replay(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """A router that forwarded one field more than the agreement allows, with a chain that links:
    `verify` of the chain alone cannot see it, `replay` names the decision's offset."""
    partitions = read_partitions(deployment, TOPIC_AUDIT)
    partition, _chain, indexes = busiest_chain(partitions)
    values = partitions[partition]
    target = next(
        i
        for i in indexes[:-1]
        if any(r.fields_withheld for r in DecisionRecord.from_bytes(values[i]).recipients)
    )
    record = DecisionRecord.from_bytes(values[target])
    leaked = next(r for r in record.recipients if r.fields_withheld)
    field = leaked.fields_withheld[0]
    changed = RecipientDecision(
        leaked.recipient,
        (*leaked.fields_forwarded, field),
        tuple(f for f in leaked.fields_withheld if f != field),
        leaked.derived,
        leaked.agreements,
    )
    recipients = tuple(changed if r is leaked else r for r in record.recipients)
    values[target] = dataclasses.replace(record, recipients=recipients).to_bytes()
    prev = record_hash(values[target])
    for i in indexes:  # re-link the rest of the chain, as a dishonest router would have
        if i <= target:
            continue
        later = dataclasses.replace(DecisionRecord.from_bytes(values[i]), prev_hash=prev)
        values[i] = later.to_bytes()
        prev = record_hash(values[i])
    topic = write_copy(deployment, partitions, "audit.copy")

    status, out = replay(capsys, deployment, "--audit-topic", topic)
    assert status == 1
    found = findings_of(out)
    assert len(found) == 1, found
    assert found[0].startswith(f"FINDING {topic}[{partition}] offset {target}: ")
    assert "decision_mismatch" in found[0]
    assert f"{leaked.recipient} fields_forwarded: recorded +{field}" in found[0]
    # The chain itself links: only the signed checkpoints betray the rewritten history.
    status, out = run(
        capsys, "audit", "verify", "--config", str(deployment.config_path), "--audit-topic", topic
    )
    assert not any(f"FINDING {topic}" in f for f in findings_of(out))
    assert any("root_mismatch" in f or "head_mismatch" in f for f in findings_of(out))


def test_decision_deleted_from_the_log_is_found_by_replay(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    partitions = read_partitions(deployment, TOPIC_AUDIT)
    partition, _, indexes = busiest_chain(partitions)
    record = DecisionRecord.from_bytes(partitions[partition][indexes[1]])
    del partitions[partition][indexes[1]]
    topic = write_copy(deployment, partitions, "audit.copy")
    status, out = replay(capsys, deployment, "--audit-topic", topic)
    assert status == 1
    where = f"{record.ingress_topic}[{record.ingress_partition}] offset {record.ingress_offset}"
    assert [f for f in findings_of(out) if "undecided" in f] == [
        f for f in findings_of(out) if where in f
    ]
    assert any(where in f for f in findings_of(out))


def test_replay_with_two_workers_reports_exactly_what_one_process_does(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--workers 2` shares the chains between two processes and merges their reports: on a
    log with a decision the agreements do not allow, a decision deleted from another chain and
    a decision recorded twice, its output is the output of `--workers 1`, line for line."""
    partitions = read_partitions(deployment, TOPIC_AUDIT)
    partition, chain, indexes = busiest_chain(partitions)
    values = partitions[partition]
    target = next(
        i
        for i in indexes
        if any(r.fields_withheld for r in DecisionRecord.from_bytes(values[i]).recipients)
    )
    record = DecisionRecord.from_bytes(values[target])
    leaked = next(r for r in record.recipients if r.fields_withheld)
    changed = dataclasses.replace(
        leaked,
        fields_forwarded=(*leaked.fields_forwarded, leaked.fields_withheld[0]),
        fields_withheld=leaked.fields_withheld[1:],
    )
    recipients = tuple(changed if r is leaked else r for r in record.recipients)
    values[target] = dataclasses.replace(record, recipients=recipients).to_bytes()
    values.append(values[indexes[-1]])  # recorded twice
    lengths: dict[str, int] = defaultdict(int)
    for vs in partitions.values():
        for v in vs:
            lengths[read_header(v).chain] += 1
    others = [
        (p, i)
        for p, vs in partitions.items()
        for i, v in enumerate(vs)
        if (header := read_header(v)).chain != chain
        and lengths[header.chain] >= 3
        and DecisionRecord.from_bytes(v).seq == 1
    ]
    assert others, "the scenario routes more than one ingress partition"
    other_partition, other_index = others[-1]
    del partitions[other_partition][other_index]  # the second decision of another chain
    topic = write_copy(deployment, partitions, "audit.copy")

    outputs = {}
    for workers in ("1", "2"):
        status, out = replay(capsys, deployment, "--audit-topic", topic, "--workers", workers)
        assert status == 1, out
        outputs[workers] = out
    assert outputs["2"] == outputs["1"]
    found = " ".join(findings_of(outputs["1"]))
    for code in ("decision_mismatch", "double_decision", "undecided"):
        assert code in found, found


# -- (3) inclusion proofs ----------------------------------------------------------------------


def forwarded_event_id(deployment: Deployment) -> str:
    values = read_partitions(deployment, TOPIC_AUDIT)
    for partition_values in values.values():
        for value in partition_values:
            record = DecisionRecord.from_bytes(value)
            if record.outcome.value == "forwarded" and record.seq > 2:
                assert record.event_id is not None
                return record.event_id
    raise AssertionError("no forwarded decision")


def router_key_file(deployment: Deployment) -> Path:
    return next(deployment.config.keys_dir.glob("router.main.*.pub.json"))


def test_inclusion_proof_checks_offline_and_fails_after_any_byte_changes(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    event_id = forwarded_event_id(deployment)
    proof = tmp_path / "proof.json"
    status, _ = run(
        capsys,
        "audit",
        "proof",
        "--config",
        str(deployment.config_path),
        "--event-id",
        event_id,
        "--out",
        str(proof),
    )
    assert status == 0
    key = router_key_file(deployment)
    status, out = run(capsys, "audit", "check-proof", str(proof), "--key", str(key))
    assert status == 0 and out.startswith(f"OK: decision {event_id} ")

    data = proof.read_bytes()
    public = load_public_key(key).public_key
    check_proof_file(data, public)
    for position in sorted({*range(0, len(data), 53), len(data) - 1}):
        for flip in (0x01, 0x20):
            damaged = bytearray(data)
            damaged[position] ^= flip
            with pytest.raises(BrokerError):
                check_proof_file(bytes(damaged), public)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0x01
    proof.write_bytes(bytes(damaged))
    status, out = run(capsys, "audit", "check-proof", str(proof), "--key", str(key))
    assert status == 1 and out.startswith("FAILED ")


def test_proof_for_an_unknown_event_is_a_clear_error(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["audit", "proof", "--config", str(deployment.config_path), "--event-id", "no-such-event"]
    )
    assert status != 0
    assert "no decision for event no-such-event" in capsys.readouterr().err


# -- (4) disclosures ---------------------------------------------------------------------------


def received_from_feeds(deployment: Deployment, subject: str, issuer: str) -> set[tuple[str, str]]:
    """(recipient, event id) of every verified feed event about the subject.

    By the ids of the events about it on the issuer's ingress topic: a recipient not granted the
    subject (the statistics collection) receives no subject to match on."""
    with TopicReader(KafkaClients(deployment.config.kafka, OPERATOR)) as ingress:
        records = list(ingress.read_topic(topic_ingress(issuer)))
    issued = [Envelope.from_bytes(r.value or b"") for r in records]
    about = {e.header.event_id for e in issued if e.subject == subject}
    assert about
    got: set[tuple[str, str]] = set()
    for agency in deployment.config.agency_ids:
        try:
            reader = FeedReader(deployment.config, agency, from_beginning=True)
        except BrokerError:
            continue  # no feed topic
        try:
            for batch in reader.batches(follow=False):
                for item in batch:
                    assert item.event is not None, "feeds verify"
                    header = item.event.header
                    if header.event_id in about and header.issuer == issuer:
                        assert item.event.subject in (subject, None)
                        got.add((agency, header.event_id))
        finally:
            reader.close()
    return got


def trafficked_child(deployment: Deployment) -> tuple[str, dict[str, Any]]:
    """A council child with a guardian and an NRM referral: the most recipients."""
    for event in deployment.events["council.E09000033"]:
        if event["event_type"] == "nrm.referral.submitted":
            return event["subject"], event
    raise AssertionError("the scenario has no NRM referral")


def test_disclosures_list_exactly_the_recipients_that_received_the_childs_events(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    subject, _ = trafficked_child(deployment)
    issuer = "council.E09000033"
    status, out = run(
        capsys,
        "audit",
        "disclosures",
        "--config",
        str(deployment.config_path),
        "--subject",
        subject,
        "--issuer",
        issuer,
        "--format",
        "json",
    )
    assert status == 0
    rows = json.loads(out)["disclosures"]
    listed = {(row["recipient"], row["event_id"]) for row in rows}
    expected = received_from_feeds(deployment, subject, issuer)
    assert listed == expected
    assert {"police.met", "nrm.sca", "guardian.ictg", "stats.national"} <= {r for r, _ in listed}
    assert all(row["agreements"] and "@" in row["agreements"][0] for row in rows)


def test_disclosures_print_field_names_never_values(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    subject, referral = trafficked_child(deployment)
    fields = referral["fields"]
    personal = [fields["first_name"], fields["last_name"], fields["dob"], fields["nationality"]]
    for fmt in ("table", "csv", "json"):
        status, out = run(
            capsys,
            "audit",
            "disclosures",
            "--config",
            str(deployment.config_path),
            "--subject",
            subject,
            "--format",
            fmt,
        )
        assert status == 0
        assert "first_name" in out
        assert not [value for value in personal if value in out], fmt


def test_with_values_is_refused_unless_the_deployment_allows_it(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    subject, referral = trafficked_child(deployment)
    argv = ["audit", "disclosures", "--config", str(deployment.config_path), "--subject", subject,
            "--with-values", "--format", "json"]  # fmt: skip
    monkeypatch.delenv("BROKER_AUDIT_ALLOW_VALUES", raising=False)
    assert main(argv) == 2
    assert "BROKER_AUDIT_ALLOW_VALUES" in capsys.readouterr().err

    monkeypatch.setenv("BROKER_AUDIT_ALLOW_VALUES", "yes")
    status, out = run(capsys, *argv)
    assert status == 0
    rows = json.loads(out)["disclosures"]
    nrm = next(r for r in rows if r["recipient"] == "nrm.sca")
    assert nrm["values"]["first_name"] == referral["fields"]["first_name"]
    assert set(nrm["values"]) == set(nrm["fields"])


# -- dump ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic", ["ingress.police.met", "feed.police.met", "audit.decisions", "audit.checkpoints"]
)
def test_dump_verifies_every_record_it_prints(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], topic: str
) -> None:
    status, out = run(capsys, "audit", "dump", "--config", str(deployment.config_path),
                      "--topic", topic)  # fmt: skip
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines and all(line["verified"] is not False for line in lines)
    assert all(line["verified"] is True for line in lines if topic != "audit.decisions")
    assert "first_name" not in {k for line in lines for k in line}  # names only, no values key


def test_dump_between_two_times(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", "dump", "--config", str(deployment.config_path), "--topic", TOPIC_AUDIT]
    _, everything = run(capsys, *argv)
    times = sorted(json.loads(line)["timestamp"] for line in everything.splitlines())
    _, none = run(capsys, *argv, "--from", "2999-01-01")
    assert none == ""
    _, before = run(capsys, *argv, "--to", times[0])
    assert before == ""
    _, upto_last = run(capsys, *argv, "--from", times[0], "--to", "2999-01-01")
    assert len(upto_last.splitlines()) == len(times)


def test_dump_reports_a_tampered_ingress_event(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    partitions = read_partitions(deployment, "ingress.police.met")
    partition = next(p for p, v in partitions.items() if v)
    value = bytearray(partitions[partition][0])
    value[-3] ^= 0x01
    partitions[partition][0] = bytes(value)
    topic = write_copy(deployment, partitions, "ingress.police.met-copy")
    status, out = run(capsys, "audit", "dump", "--config", str(deployment.config_path),
                      "--topic", topic)  # fmt: skip
    assert status == 1
    first = json.loads(out.splitlines()[0])
    assert first["offset"] == 0 and first["verified"] is False and first["error"]


# -- bench on an existing deployment (figures are printed, not asserted) -------------------------


def test_bench_audit_prints_throughput(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run(
        capsys, "bench", "audit", "--config", str(deployment.config_path), "--workers", "2"
    )
    assert status == 0, out
    assert re.search(r"records/s \(goal >= 20,000: (met|MISSED)\); findings 0", out), out
    assert f"replay, 1 process: {deployment.routed} decisions re-evaluated" in out, out
    assert re.search(r"replay, 2 worker processes: .* the same report as 1 process", out), out
    assert re.search(r"replay 2 workers / 1 process: \d+\.\d\d by records/s", out), out
    # Issue 19: replay against its floor measured in the same run, on the deployment's records.
    floor = re.search(
        r"replay floor: (\d+) µs CPU/record = decode (\d+) \+ verify (\d+) \+ decide (\d+) "
        r"\(bare costs on (\d+) of the ingress records",
        out,
    )
    assert floor and all(int(part) > 0 for part in floor.groups()), out
    assert re.search(r"replay / floor: \d+\.\d\d \(CPU per record, 1 process; goal <= 1\.5", out)
    assert "replay / plain read:" in out
