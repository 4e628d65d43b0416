"""Issue 13, part 6: a subject that reveals nothing it should not, on the real Kafka.

Real-format events (an SSDA903 return through the council connector, and the example council,
police and NRM events) are published, routed under the example agreements, and the statistics
feed is read as raw Kafka records: no record key, header or value may hold a council's child id,
a police reference or an NRM referral id, while the police still receive the council's reference
for the child where their agreement shares `subject`.
"""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from router_helpers import (
    _ID_RE,
    MET,
    NRM,
    STATS,
    WESTMINSTER,
    Deployment,
    publish,
    read_feed,
    read_topic,
    route_all,
)

from broker.config import topic_feed, topic_ingress
from broker.envelope import ForwardedEnvelope
from broker.scaffold import REPO_ROOT
from connectors.council.ssda903 import read_ssda903
from connectors.ids import event_ids_for

pytestmark = pytest.mark.integration

SAMPLE = REPO_ROOT.parent / "shared" / "data" / "ssda903-fake"
EXAMPLES = REPO_ROOT / "examples" / "events"
# Children of the sample with missing episodes (away and missing), six-digit ids: a chance match
# of one in random bytes or hex text is negligible.
CHILDREN = ("123379", "162514", "204965", "274474")
# Fields holding an issuer's own reference: never for the statistics collection.
REFERENCE_FIELDS = ("la_child_id", "police_ref", "referral_id")


def _examples(dep: Deployment, base: str) -> list[dict[str, Any]]:
    """The example events of one agency, agency ids rewritten to this deployment's."""
    text = (EXAMPLES / f"{base}.jsonl").read_text()
    text = _ID_RE.sub(lambda m: f"{m.group(1)}_{dep.suffix}", text)
    return [json.loads(line) for line in text.splitlines()]


def _ssda903_subset(out: Path) -> Path:
    """The sample's four tables holding only `CHILDREN`."""
    out.mkdir(parents=True)
    for table in sorted(SAMPLE.glob("*.csv")):
        with table.open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = [r for r in reader if r["CHILD"] in CHILDREN]
            columns = list(reader.fieldnames or [])
        with (out / table.name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(rows)
    return out


def _references(events: list[dict[str, Any]]) -> set[str]:
    """Every subject and own-reference field value of `events`."""
    found = {str(e["subject"]) for e in events}
    for e in events:
        found |= {str(e["fields"][n]) for n in REFERENCE_FIELDS if e["fields"].get(n)}
    return found


def _unkeyed_guesses(agency: str, events: list[dict[str, Any]]) -> set[str]:
    """What a brute-forcer knowing each SSDA903 event's true child id would compute with the
    old unkeyed scheme, for the events whose key is its date (and, missing, its type)."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:safeguarding-broker:ssda903")
    guesses = set()
    for e in events:
        day, kind, child = e["occurred_at"][:10], e["event_type"], str(e["subject"])
        if kind in ("child.care.started", "child.placement.changed"):
            keys = [("Episodes", day)]
        elif kind.startswith("child.missing."):
            start = (e["fields"].get("missing_since") or "")[:10]
            code = e["fields"].get("missing_type")
            keys = [("Missing", f"{start}|{code}|{n}") for n in (1, 2, 3)]
        else:
            continue
        for table, key in keys:
            guesses.add(str(uuid.uuid5(namespace, "\x1f".join((agency, table, child, key, kind)))))
    return guesses


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"sample data absent: {SAMPLE}")
def test_statistics_feed_holds_no_issuer_reference_police_get_theirs(
    deployment: Deployment, tmp_path: Path
) -> None:
    dep = deployment
    ssda903 = read_ssda903(
        _ssda903_subset(tmp_path / "ssda903"),
        agency=dep.id(WESTMINSTER),
        id_secret=event_ids_for(dep.config, dep.id(WESTMINSTER)).secret,
    )
    council = [*ssda903.collect(), *_examples(dep, WESTMINSTER)]
    police, nrm = _examples(dep, MET), _examples(dep, NRM)
    assert {str(e["subject"]) for e in council} >= set(CHILDREN)
    published = {WESTMINSTER: council, MET: police, NRM: nrm}
    for issuer, events in published.items():
        publish(dep, issuer, events)
    route_all(dep, sum(len(v) for v in published.values()))

    references = {
        issuer: _references(events) for issuer, events in published.items()
    }  # fmt: skip
    assert set(CHILDREN) <= references[WESTMINSTER]
    assert "MPS-MISPER-26-55120" in references[MET] and "NRM-2026-118842" in references[NRM]
    every_reference = {r.encode() for refs in references.values() for r in refs}

    # The statistics feed as raw records: key, headers and value.
    stats = read_topic(dep, topic_feed(dep.id(STATS)))
    issuers = {ForwardedEnvelope.from_bytes(r.value or b"").header.issuer for r in stats}
    assert issuers == {dep.id(WESTMINSTER), dep.id(MET), dep.id(NRM)}, "stats got too little"
    for record in stats:
        raw = [record.key or b"", record.value or b""]
        raw += [name.encode() + value for name, value in record.headers]
        leaked = sorted(ref.decode() for ref in every_reference if any(ref in b for b in raw))
        assert not leaked, f"{record.partition}@{record.offset}: issuer references reach stats"
    stats_ids = set()
    for item in read_feed(dep, STATS):
        assert item.event is not None, item.error
        assert item.event.subject is None and item.event.to_json()["subject"] is None
        stats_ids.add(item.event.event_id)
    # Every recipient gets the event id: keyed, so the public derivation the connector used
    # before (UUIDv5 of agency, table, child, date, type) matches none, even for the true ids.
    guesses = _unkeyed_guesses(dep.id(WESTMINSTER), council)
    assert len(guesses) >= len(CHILDREN) and not stats_ids & guesses

    # The police: granted `subject` for the council's events, they receive the child's id,
    # verified, in the feed JSON; their feed record keys are still no subject.
    received = read_feed(dep, MET)
    by_id = {item.event.event_id: item.event for item in received if item.event is not None}
    assert len(by_id) == len(received), [i.error for i in received if i.error]
    missing = [e for e in council if e["event_type"] == "child.missing.started"]
    sent = [e for e in missing if e["event_id"] in by_id]
    assert {str(e["subject"]) for e in sent} >= set(CHILDREN) & {str(e["subject"]) for e in missing}
    assert len(sent) >= len(CHILDREN)
    for evt in sent:
        got = by_id[evt["event_id"]].to_json()
        assert got["subject"] == evt["subject"]
        assert got["fields"]["la_child_id"] == evt["fields"]["la_child_id"]
    police_raw = read_topic(dep, topic_feed(dep.id(MET)))
    assert any(CHILDREN[0].encode() in (r.value or b"") for r in police_raw)  # the check can fire
    assert not any((r.key or b"") in every_reference for r in police_raw)

    # Ingress stays keyed by the raw subject: read only by the router and auditors (entitled).
    ingress = read_topic(dep, topic_ingress(dep.id(WESTMINSTER)))
    assert {r.key for r in ingress} == {str(e["subject"]).encode() for e in council}
