"""Issue 6, acceptance 5: an NRM referral from the example payload, and decisions that reach
only the referring council's feed under the example agreements (via `broker connect nrm`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from connect_helpers import route
from router_helpers import (
    BASE_AGENCIES,
    LAMBETH,
    NRM,
    STATS,
    WESTMINSTER,
    Deployment,
    feeds,
)

from broker.cli import main

pytestmark = pytest.mark.integration


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out.split()  # the event ids published


def test_decision_reaches_only_the_referring_council(
    deployment: Deployment, nrm_example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dep = deployment
    config = str(dep.config_path)
    payload = json.loads(nrm_example.read_text())
    referral_id = payload["ExternalId"]
    (referral_event,) = _run(
        capsys, "connect", "nrm", "referral", "--config", config,
        "--agency", dep.id(WESTMINSTER), str(nrm_example), "--child-id", "WCC-2026-0147",
    )  # fmt: skip

    def decide(referrer: str, referral: str, subject: str) -> str:
        (event_id,) = _run(
            capsys, "connect", "nrm", "decision", "--config", config, "--agency", dep.id(NRM),
            "--referral-id", referral, "--first-responder", dep.id(referrer), "--stage", "RG",
            "--outcome", "positive", "--date", "2026-11-24", "--subject", subject,
        )  # fmt: skip
        return event_id

    westminster_decision = decide(WESTMINSTER, referral_id, "WCC-2026-0147")
    lambeth_decision = decide(LAMBETH, "NRM-2026-117001", "LBL-0001")

    route(dep, 3)
    received = feeds(dep)
    decisions = {
        base: [
            i.event for i in items if i.event and i.event.header.event_type == "nrm.decision.made"
        ]
        for base, items in received.items()
    }
    assert [e.header.event_id for e in decisions[WESTMINSTER]] == [westminster_decision]
    assert [e.header.event_id for e in decisions[LAMBETH]] == [lambeth_decision]
    # No other agency gets them, except the national collection: only stage, outcome and date
    # (the referral id as a pseudonym), under its own agreement.
    for base in BASE_AGENCIES:
        if base not in (WESTMINSTER, LAMBETH, STATS):
            assert decisions[base] == [], base
    for stat in decisions[STATS]:
        shown_to_stats = stat.to_json()
        assert set(shown_to_stats["fields"]) == {"stage", "outcome", "decision_date"}
        assert all(a.startswith("dsa.national-collection.") for a in shown_to_stats["agreements"])
    shown = decisions[WESTMINSTER][0].to_json()
    assert shown["fields"]["referral_id"] == referral_id
    assert shown["fields"]["first_responder"] == dep.id(WESTMINSTER)
    # The referral itself went to the NRM.
    nrm_ids = [i.event.header.event_id for i in received[NRM] if i.event]
    assert nrm_ids == [referral_event]
