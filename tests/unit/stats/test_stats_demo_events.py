"""The demo's own events (examples/events) through the router's decision step under the example
agreements, verified as the statistics subscriber verifies them: the NRM tables are filled from
them, with the Home Office fields the feed carries, and the council is named as Westminster.

No Kafka here: `RouterCore` is the router's pure step (the demo runs the same with Kafka).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from broker.agreements import load_agreements
from broker.config import load_config
from broker.envelope import KeyRegistry, issue, load_signing_key, verify_forwarded
from broker.router.core import IngressRecord, RouterCore
from broker.router.state import PartitionState
from broker.scaffold import REPO_ROOT, write_deployment
from broker.stats import Period, StatsState, compute
from broker.stats.output import read_la_lookup, write_outputs

EVENTS = REPO_ROOT / "examples" / "events"
LOOKUP = REPO_ROOT.parent / "shared" / "domain" / "la_lookup.csv"
STATS = "stats.national"


@pytest.fixture(scope="module")
def stats_feed(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every example event, routed; what reached `feed.stats.national`, verified, feed form."""
    config = load_config(
        write_deployment(tmp_path_factory.mktemp("dep"), bootstrap_servers="127.0.0.1:9")
    )
    keys = KeyRegistry.from_dir(config.keys_dir)
    core = RouterCore(
        keys=keys,
        agreements=load_agreements(config.agreements_dir),
        router_key=load_signing_key(config.router.signing_key),
        agencies=config.agency_ids,
        pseudonym_key=config.pseudonym_key,
    )
    received: list[dict[str, Any]] = []
    for path in sorted(EVENTS.glob("*.jsonl")):
        agency = path.stem
        key_path = config.agency(agency).signing_key
        assert key_path is not None
        key = load_signing_key(key_path)
        state = PartitionState.new(f"ingress.{agency}/0")
        for offset, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            value = issue(json.loads(line), issuer=agency, key=key).to_bytes()
            result = core.route(IngressRecord(f"ingress.{agency}", 0, offset, value), state)
            for out in result.outputs:
                if out.topic == f"feed.{STATS}" and out.value is not None:
                    event = verify_forwarded(out.value, keys, router="router.main", recipient=STATS)
                    received.append(event.to_json())
    return received


def test_the_feed_carries_the_home_office_fields(stats_feed: list[dict[str, Any]]) -> None:
    referrals = [e for e in stats_feed if e["event_type"] == "nrm.referral.submitted"]
    assert referrals
    for event in referrals:
        fields = event["fields"]
        assert fields["first_responder_type"] == "local_authority"
        assert fields["age_at_exploitation"] == "child"
        assert fields["exploitation_types"] == ["criminal", "labour"]
        assert fields["exploitation_location"] == "both"
        assert "referral_id" not in fields and event["subject"] is None


def test_nrm_tables_are_filled_from_the_demo_events(
    stats_feed: list[dict[str, Any]], tmp_path: Path
) -> None:
    state = StatsState()
    state.apply_all(stats_feed)
    lookup = read_la_lookup(LOOKUP) if LOOKUP.exists() else {}
    years = [compute(state, p) for p in Period.reporting_years(2027)]
    out = write_outputs(years, tmp_path, state, lookup)
    with out["nrm"].open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    q4 = "Quarter 4 2026: October to December"
    child = "Child (17 and under)"

    def cell(table: str, category: str, age: str = child) -> str:
        (row,) = [
            r
            for r in rows
            if r["period_label"] == q4
            and r["nrm_table"] == table
            and r["age_at_exploitation"] == age
            and r["category"] == category
        ]
        return row["number"]

    assert cell("Referrals", "Total") == "1"
    assert cell("Referrals by exploitation type", "More than one exploitation type") == "1"
    assert cell("Referrals by exploitation location", "UK and overseas") == "1"
    assert cell("Referrals by first responder type", "Local authority") == "1"
    assert cell("Reasonable grounds decisions", "Positive") == "1"
    # The other example decision is about a referral the feed never carried.
    unknown = "Age not specified or unknown"
    assert cell("Conclusive grounds decisions", "Negative", unknown) == "1"
    if lookup:
        with out["statistics"].open(newline="", encoding="utf-8-sig") as handle:
            names = {r["la_name"] for r in csv.DictReader(handle) if r["new_la_code"]}
        assert names == {"Westminster"}
        assert "Westminster" in out["html"].read_text(encoding="utf-8")
