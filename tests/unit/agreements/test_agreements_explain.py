"""`broker agreements explain` on sample events, through the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from agreement_samples import EXAMPLES, WESTMINSTER

from broker.cli import main

HIGH_RISK: dict[str, Any] = {
    "issuer": WESTMINSTER, "event_type": "child.missing.started", "event_id": "ev-1",
    "subject": "WCC-000123", "occurred_at": "2026-11-24T18:05:00Z",
    "fields": {
        "la_child_id": "WCC-000123", "first_name": "Amira", "last_name": "Example",
        "dob": "2011-05-02", "age_band": "13-15", "sex": "f", "uasc": True,
        "trafficking_concern": True, "exploitation_concerns": ["trafficking", "cce"],
        "missing_type": "M", "missing_since": "2026-11-24T17:30:00Z", "risk_level": "high",
        "last_seen_location": "Victoria coach station", "last_seen_postcode_district": "SW1W",
        "placement_postcode_district": "W2", "physical_description": "slim, 150cm",
        "clothing": "grey hoodie", "associates": "none known", "places_frequented": "station",
        "phone_numbers": "07700 900123", "social_media": "none", "medical_needs": "asthma",
        "photo_ref": "photo-1",
    },
}
PHILOMENA = ("physical_description", "clothing", "associates", "places_frequented",
             "phone_numbers", "social_media", "medical_needs", "photo_ref", "last_seen_location")
PERSONAL = ("first_name", "last_name", "dob", "la_child_id", *PHILOMENA)


def _explain(tmp_path: Path, capsys: pytest.CaptureFixture[str], event: dict[str, Any],
             *extra: str) -> dict[str, dict[str, str]]:
    """Run explain; return recipient -> field -> disclosure column, parsed from the tables."""
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    args = ["agreements", "explain", "--agreements", str(EXAMPLES), "--event", str(path),
            "--now", "2026-11-24T18:06:00Z", *extra]
    assert main(args) == 0
    tables: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in capsys.readouterr().out.splitlines():
        title = re.match(r"^(\S+) receives, under ", line)
        if title:
            current = tables.setdefault(title.group(1), {})
        elif line.startswith("Rules considered"):
            current = None
        elif current is not None and line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            current[cells[0]] = cells[1]
    return tables


def _shared(table: dict[str, str]) -> set[str]:
    return {name for name, how in table.items() if how.startswith("shared")}


def test_high_risk_missing_police_get_philomena_stats_get_only_coarse_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = _explain(tmp_path, capsys, HIGH_RISK)
    assert set(tables) == {"police.met", "stats.national"}
    assert set(PHILOMENA) <= _shared(tables["police.met"])
    assert {"first_name", "last_name", "dob"} <= _shared(tables["police.met"])
    stats = tables["stats.national"]
    assert not set(PERSONAL) & _shared(stats)
    assert stats["child_pseudonym"] == "derived pseudonym(la_child_id)"
    assert stats["missing_date"] == "derived date_only(missing_since)"
    assert {"age_band", "last_seen_postcode_district"} <= _shared(stats)
    assert all(stats[name] == "withheld" for name in PERSONAL)
    # The council's own reference for the child goes to the police, never to statistics.
    assert "subject" in _shared(tables["police.met"])
    assert stats["subject"] == "withheld"


def test_away_episode_without_concern_gives_police_the_reduced_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    away = json.loads(json.dumps(HIGH_RISK))
    away["fields"].update(missing_type="A", risk_level="low", trafficking_concern=False,
                          exploitation_concerns=[])
    police = _explain(tmp_path, capsys, away)["police.met"]
    assert _shared(police) == {"subject", "la_child_id", "age_band", "sex", "missing_type",
                               "missing_since", "risk_level", "placement_postcode_district",
                               "last_seen_postcode_district"}
    assert all(police[name] == "withheld" for name in PHILOMENA)


def test_guardian_appears_when_appointed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = _explain(tmp_path, capsys, HIGH_RISK, "--guardian", "guardian.ictg")
    assert "guardian.ictg" in tables


def test_issuer_option_and_deny_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {k: v for k, v in HIGH_RISK.items() if k != "issuer"}
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    args = ["agreements", "explain", "--agreements", str(EXAMPLES), "--event", str(path),
            "--issuer", "council.W06000015", "--now", "2024-01-01T00:00:00Z"]
    assert main(args) == 0
    assert "No recipient receives this event" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "words"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"event_type": "child.missing.started"}), "missing occurred_at, issuer"),
    (json.dumps({**HIGH_RISK, "fields": {**HIGH_RISK["fields"], "risk_level": "extreme"}}),
     "risk_level"),
])
def test_bad_event_files_are_one_line_errors_without_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, words: str
) -> None:
    path = tmp_path / "event.json"
    path.write_text(content, encoding="utf-8")
    args = ["agreements", "explain", "--agreements", str(EXAMPLES), "--event", str(path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err
    assert "extreme" not in err and "Amira" not in err


def test_output_never_shows_shared_personal_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(HIGH_RISK), encoding="utf-8")
    main(["agreements", "explain", "--agreements", str(EXAMPLES), "--event", str(path)])
    out = capsys.readouterr().out
    for value in ("Amira", "grey hoodie", "07700 900123", "WCC-000123"):
        assert value not in out
