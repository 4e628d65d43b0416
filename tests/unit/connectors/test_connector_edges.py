"""Bad input at the connectors' own edges (docs/bad-input.md): the NRM payload file, SSDA903
cells, and events a connector builds itself, all held to the rules of broker/inbound.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from connector_data import AGENCY, ID_SECRET
from live_fakes import FakePublisher, missing_started

from broker.cli import main
from broker.scaffold import write_deployment
from connectors.council import read_ssda903
from connectors.council.ssda903 import Reason
from connectors.live import COUNCIL_EVENT_TYPES, Intake


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_deployment(tmp_path / "deployment", bootstrap_servers="127.0.0.1:1")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b'{"ExternalId": ' + b"9" * 100_000 + b"}", "more than 40 digits"),
        ('{"ExternalId": "Zoë"}'.encode("latin-1"), "not UTF-8"),
        (b'{"ExternalId": "a", "ExternalId": "b"}', "a key appears twice"),
        (b"{" + b" " * (9 * 1024 * 1024) + b"}", "over the limit of"),
    ],
)
def test_a_hostile_nrm_payload_file_is_one_clear_error(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], payload: bytes, message: str
) -> None:
    path = tmp_path / "payload.json"
    path.write_bytes(payload)
    status = main(["connect", "nrm", "referral", "--config", str(config), "--agency",
                   "council.E09000033", str(path)])
    err = capsys.readouterr().err
    assert status == 2 and message in err and str(path) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ssda903_bad_bytes_and_control_characters_cost_one_cell_or_row(tmp_path: Path) -> None:
    folder = tmp_path / "ssda903"
    folder.mkdir()
    (folder / "header.csv").write_bytes(
        b"CHILD,SEX,DOB,ETHNIC,UPN,MOTHER,MC_DOB\n"
        b"1001,1,01/01/2010,WBRI,,,\n"
        b"10\xe902,1,01/01/2010,WBRI,,,\n"  # Latin-1 in the key column: the row goes
        + "1003,1,01/01/2010,WBRI,A12\u202e34,,\n".encode()  # bidi override in UPN: cell nulled
        + b"1004,1,01/01/2010,WBRI,,,\n"
    )
    (folder / "missing.csv").write_bytes(
        b"CHILD,DOB,MISSING,MIS_START,MIS_END\n"
        b"1001,01/01/2010,M,01/02/2020,\n"
        + "10\u000005,01/01/2010,M,01/02/2020,\n".encode()  # NUL in CHILD: the row goes
        + b"1003,01/01/2010,M,01/02/2020,\n"
        b"1004,01/01/2010,M,01/02/2020,\n"
    )
    result = read_ssda903(folder, agency=AGENCY, id_secret=ID_SECRET)
    events = result.collect()
    started = sorted(
        e["fields"]["la_child_id"] for e in events if e["event_type"] == "child.missing.started"
    )
    assert started == ["1001", "1003", "1004"]
    invalid = [p for p in result.problems if p.reason == Reason.INVALID_TEXT]
    assert sorted((p.table, p.row, p.column, p.rejected) for p in invalid) == [
        ("Header", 3, "CHILD", True),
        ("Header", 4, "UPN", False),
        ("Missing", 3, "CHILD", True),
    ]
    assert all("U+" in p.detail and "\u202e" not in p.detail for p in invalid)


def test_the_intake_applies_the_text_rules_to_already_decoded_events(tmp_path: Path) -> None:
    """An event that never went through parse_line (a connector's own) meets the same rules."""
    publisher = FakePublisher(AGENCY, tmp_path / "keys")
    intake = Intake(publisher, COUNCIL_EVENT_TYPES)
    hostile = missing_started("C2", first_name="Bob\u0000\u202e\u001b[31m")
    results = intake.submit([missing_started("C1"), hostile, missing_started("C3")], client="t")
    assert [r.accepted for r in results] == [True, False, True]
    assert "U+0000 NUL" in str(results[1].reason)
    assert "Bob" not in json.dumps(results[1].to_json())
