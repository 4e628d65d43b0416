"""Issue 6, acceptance 4: the live HTTP endpoint and drop folder, through the router to feeds.

The endpoint refuses calls without a valid bearer token, answers a mixed batch per event (the
reason names the field, never the value), and what it accepted reaches exactly the feeds the
example agreements name: the council's missing events the police, the police's report the
council.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from connect_helpers import route
from router_helpers import (
    BASE_AGENCIES,
    MET,
    WESTMINSTER,
    Deployment,
    event,
    feeds,
)

from broker.publish import Publisher
from connectors.ids import event_ids_for
from connectors.live import (
    COUNCIL_EVENT_TYPES,
    POLICE_EVENT_TYPES,
    Intake,
    TokenStore,
    new_token,
)
from connectors.live.dropfolder import DropFolder
from connectors.live.server import LiveHTTPServer

pytestmark = pytest.mark.integration


@contextmanager
def endpoint(
    dep: Deployment, base: str, types: frozenset[str], tokens: Path
) -> Iterator[tuple[LiveHTTPServer, Intake]]:
    publisher = Publisher(dep.config, dep.id(base))
    intake = Intake(publisher, types)
    server = LiveHTTPServer(
        "127.0.0.1", 0, agency_id=dep.id(base), intake=intake, tokens=TokenStore.load(tokens)
    ).serve_in_thread()
    try:
        yield server, intake
    finally:
        server.stop()
        publisher.close()


def post(url: str, body: Any, token: str | None, scheme: str = "Bearer") -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_endpoint_authenticates_answers_per_event_and_routes(
    deployment: Deployment, tmp_path: Path
) -> None:
    dep = deployment
    tag = uuid.uuid4().hex[:8]
    tokens = tmp_path / "tokens.txt"
    council_token = new_token(tokens, "mosaic")
    police_token = new_token(tokens, "compact")
    assert council_token not in tokens.read_text()  # only hashes are stored

    westminster = dep.id(WESTMINSTER)
    started = event("child.missing.started", "WCC-1", f"s-{tag}", missing_type="M")
    ended = event("child.missing.ended", "WCC-1", f"e-{tag}", missing_type="M")
    bad_value = "extremely-high-risk-9f3"
    invalid = event("child.missing.started", "WCC-2", f"i-{tag}", risk_level=bad_value)
    no_subject = {k: v for k, v in event("child.care.ended", "x", f"n-{tag}").items()}
    del no_subject["subject"]
    police_type = event("police.missing_report.opened", "MPS-1", f"p0-{tag}")
    report = event(
        "police.missing_report.opened",
        "MPS-1",
        f"p-{tag}",
        local_authority=westminster,
        force=dep.id(MET),
    )

    with endpoint(dep, WESTMINSTER, COUNCIL_EVENT_TYPES, tokens) as (council, intake):
        # Unauthenticated: no token, an unknown token, the wrong scheme.
        for token, scheme in (
            (None, "Bearer"),
            ("not-a-token", "Bearer"),
            (council_token, "Basic"),
        ):
            status, body = post(council.url, started, token, scheme)
            assert status == 401, (token, scheme)
            assert "results" not in body

        status, body = post(
            council.url, [started, invalid, police_type, no_subject, ended, 7], council_token
        )
        assert status == 207
        results = body["results"]
        assert [r["status"] for r in results] == [
            "accepted", "rejected", "rejected", "rejected", "accepted", "rejected",
        ]  # fmt: skip
        assert (body["accepted"], body["rejected"]) == (2, 4)
        assert results[0]["event_id"] == started["event_id"]
        assert results[4]["event_id"] == ended["event_id"]
        assert "risk_level" in results[1]["reason"]
        assert "event_type" in results[2]["reason"]
        assert "subject" in results[3]["reason"]
        assert "JSON object" in results[5]["reason"]
        assert bad_value not in json.dumps(body)

        # All rejected: 422; not JSON: 400.
        status, body = post(council.url, [invalid], council_token)
        assert status == 422 and body["results"][0]["status"] == "rejected"
        garbled = urllib.request.Request(
            council.url,
            data=b"[{not json",
            headers={"Authorization": f"Bearer {council_token}"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(garbled, timeout=30)
        assert refused.value.code == 400
        refused.value.close()

        # The drop folder: one good line (no event id: one is derived) and one bad line.
        drop = tmp_path / "drop"
        secret = event_ids_for(dep.config, westminster).secret
        folder = DropFolder(drop, intake, agency_id=westminster, id_secret=secret, settle_s=0)
        dropped = event("child.missing.started", "WCC-3", "unused", missing_type="M")
        del dropped["event_id"]
        (drop / "batch.jsonl").write_text(json.dumps(dropped) + "\n{not json\n")
        (first,) = folder.poll_once()
        assert first.lines == 2
        assert not (drop / "batch.jsonl").exists()
        assert (drop / "failed" / "batch.jsonl").exists()
        written = json.loads((drop / "failed" / "batch.jsonl.report.json").read_text())
        assert written["accepted"] == 1 and written["rejections"][0]["line"] == 2
        dropped_id = written["events"][0]["event_id"]
        # Dropped again: the same derived id, so the router will see a duplicate.
        (drop / "again.jsonl").write_text(json.dumps(dropped) + "\n")
        (again,) = folder.poll_once()
        assert again.accepted[0]["event_id"] == dropped_id
        assert (drop / "done" / "again.jsonl.report.json").exists()

    with endpoint(dep, MET, POLICE_EVENT_TYPES, tokens) as (police, _):
        status, body = post(police.url, report, police_token)  # one event, not an array
        assert status == 200 and body["results"][0]["event_id"] == report["event_id"]
        status, body = post(police.url, started, police_token)
        assert status == 422  # a council event type is not the police's to send

    route(dep, 5)  # started, ended, dropped twice, the police report
    got = {
        base: sorted(i.event.header.event_id for i in items if i.event)
        for base, items in feeds(dep).items()
    }
    accepted_council = sorted([started["event_id"], ended["event_id"], dropped_id])
    assert got[MET] == accepted_council
    assert got[WESTMINSTER] == [report["event_id"]]
    rejected_ids = {invalid["event_id"], police_type["event_id"], no_subject["event_id"]}
    for base in BASE_AGENCIES:
        assert not rejected_ids & set(got[base]), base
