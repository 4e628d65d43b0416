"""Live intake without Kafka: per-event answers, the HTTP endpoint's statuses, the drop folder."""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from connector_data import ID_SECRET
from live_fakes import FakePublisher, missing_started

from connectors.live import COUNCIL_EVENT_TYPES, POLICE_EVENT_TYPES, Intake, TokenStore, new_token
from connectors.live.dropfolder import DropFolder
from connectors.live.intake import MAX_BATCH
from connectors.live.server import MAX_BODY_BYTES, LiveHTTPServer

AGENCY = "council.E09000033"
SECRET_VALUE = "Jane Doe 07700 900123"  # a personal value that must never be echoed


@pytest.fixture
def publisher(tmp_path: Path) -> FakePublisher:
    return FakePublisher(AGENCY, tmp_path / "keys")


@pytest.fixture
def intake(publisher: FakePublisher) -> Intake:
    return Intake(publisher, COUNCIL_EVENT_TYPES)


def test_each_event_gets_its_own_answer(intake: Intake, publisher: FakePublisher) -> None:
    good = missing_started("C1")
    bad_enum = missing_started("C2", risk_level=SECRET_VALUE)
    unknown_field = missing_started("C3", favourite_colour=SECRET_VALUE)
    police = {**missing_started("C4"), "event_type": "police.missing_report.opened"}
    results = intake.submit([good, bad_enum, unknown_field, police, "text", good], client="t")
    assert [r.accepted for r in results] == [True, False, False, False, False, True]
    assert "risk_level" in str(results[1].reason)
    assert "favourite_colour" in str(results[2].reason)
    assert "event_type" in str(results[3].reason)
    assert all(SECRET_VALUE not in json.dumps(r.to_json()) for r in results)
    assert publisher.published == [results[0].event_id, results[5].event_id]


def test_kafka_refusal_and_outage_are_rejections(intake: Intake, publisher: FakePublisher) -> None:
    first = {**missing_started("C1"), "event_id": "e-1"}
    second = {**missing_started("C2"), "event_id": "e-2"}
    publisher.nack.add("e-2")
    results = intake.submit([first, second], client="t")
    assert results[0].accepted and not results[1].accepted
    assert "Kafka did not accept" in str(results[1].reason)
    publisher.unavailable = True
    results = intake.submit([first, second], client="t")
    assert [r.reason for r in results] == ["Kafka is unavailable: retry later"] * 2


def test_batches_are_bounded(intake: Intake) -> None:
    results = intake.submit([missing_started()] * (MAX_BATCH + 1), client="t")
    assert not any(r.accepted for r in results)


def test_police_intake_takes_only_police_reports(publisher: FakePublisher) -> None:
    police = Intake(publisher, POLICE_EVENT_TYPES)
    (result,) = police.submit([missing_started()], client="t")
    assert not result.accepted


# -- the HTTP endpoint ------------------------------------------------------------------------


@pytest.fixture
def server(intake: Intake, tmp_path: Path) -> Iterator[tuple[LiveHTTPServer, str]]:
    tokens = tmp_path / "tokens.txt"
    token = new_token(tokens, "mosaic")
    live = LiveHTTPServer(
        "127.0.0.1", 0, agency_id=AGENCY, intake=intake, tokens=TokenStore.load(tokens)
    ).serve_in_thread()
    try:
        yield live, token
    finally:
        live.stop()


def call(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_http_statuses(server: tuple[LiveHTTPServer, str]) -> None:
    live, token = server
    auth = {"Authorization": f"Bearer {token}"}
    body = json.dumps(missing_started()).encode()
    assert call(live.url, body, {})[0] == 401
    assert call(live.url, body, {"Authorization": "Bearer nope"})[0] == 401
    status, answer = call(live.url, body, auth)
    assert status == 200 and answer["accepted"] == 1
    status, answer = call(live.url, json.dumps([missing_started(risk_level="x")]).encode(), auth)
    assert status == 422 and answer["rejected"] == 1
    mixed = json.dumps([missing_started(), missing_started(risk_level=SECRET_VALUE)]).encode()
    status, answer = call(live.url, mixed, auth)
    assert status == 207 and SECRET_VALUE not in json.dumps(answer)
    status, answer = call(live.url, f'{{"x": "{SECRET_VALUE}"'.encode(), auth)
    assert status == 400 and SECRET_VALUE not in answer["error"]
    assert call(live.url.replace("/events", "/other"), body, auth)[0] == 404
    # Too large: refused from the headers alone, before the body is read.
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    connection.putrequest("POST", "/events")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()


# -- the drop folder --------------------------------------------------------------------------


def test_drop_folder_moves_files_with_a_report(intake: Intake, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    folder = DropFolder(drop, intake, agency_id=AGENCY, id_secret=ID_SECRET, settle_s=0)
    good = json.dumps(missing_started("C1"))
    (drop / "ok.jsonl").write_text(good + "\n\n" + json.dumps(missing_started("C2")) + "\n")
    (drop / "mixed.jsonl").write_text(
        f'{good}\n{{"broken": "{SECRET_VALUE}"\n'
        + json.dumps(missing_started("C3", risk_level=SECRET_VALUE))
        + "\n"
    )
    (drop / "ignored.txt").write_text("not a drop file")
    reports = {r.file: r for r in folder.poll_once()}
    assert set(reports) == {"ok.jsonl", "mixed.jsonl"}
    assert (drop / "done" / "ok.jsonl").exists() and (drop / "failed" / "mixed.jsonl").exists()
    assert (drop / "ignored.txt").exists()
    ok = json.loads((drop / "done" / "ok.jsonl.report.json").read_text())
    assert (ok["lines"], ok["accepted"], ok["rejected"]) == (2, 2, 0)
    mixed_text = (drop / "failed" / "mixed.jsonl.report.json").read_text()
    mixed = json.loads(mixed_text)
    assert [r["line"] for r in mixed["rejections"]] == [2, 3]
    assert "risk_level" in mixed["rejections"][1]["reason"]
    assert SECRET_VALUE not in mixed_text
    # Same line, same derived event id, in whichever file: the router drops the repeat.
    assert mixed["events"][0]["event_id"] == ok["events"][0]["event_id"]
    # A second file of the same name does not overwrite the first.
    (drop / "ok.jsonl").write_text(good + "\n")
    folder.poll_once()
    assert (drop / "done" / "ok.1.jsonl").exists()


def test_drop_folder_waits_for_files_to_settle_and_for_kafka(
    intake: Intake, publisher: FakePublisher, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    folder = DropFolder(drop, intake, agency_id=AGENCY, id_secret=ID_SECRET, settle_s=60)
    path = drop / "new.jsonl"
    path.write_text(json.dumps(missing_started()) + "\n")
    assert folder.poll_once() == [] and path.exists()  # still being written, perhaps
    old = time.time() - 120
    os.utime(path, (old, old))
    publisher.unavailable = True
    claimed = drop / "processing" / "new.jsonl"
    assert folder.poll_once() == [] and claimed.exists()  # kept claimed, tried again next poll
    publisher.unavailable = False
    (report,) = folder.poll_once()
    assert len(report.accepted) == 1 and not claimed.exists() and not path.exists()
    assert (drop / "done" / "new.jsonl").exists()
