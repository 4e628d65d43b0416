"""Keyed event ids (issue 13, part 6): stable per secret, unguessable without it."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from connector_data import AGENCY, ID_SECRET, NRM_EXAMPLE
from live_fakes import FakePublisher, missing_started

from broker.cli import main
from broker.config import ConfigError, load_config
from broker.scaffold import write_deployment
from connectors.council import read_ssda903
from connectors.ids import EventIds, event_ids_for, keyed_event_id
from connectors.live import COUNCIL_EVENT_TYPES, Intake
from connectors.live.dropfolder import DropFolder
from connectors.nrm import decision_event, referral_to_event

OTHER_SECRET = b"a different council secret, at least 32 bytes long"
WHEN = datetime(2026, 11, 24, 18, 5, tzinfo=UTC)
# The unkeyed schemes the connectors used before: anyone could recompute them.
SSDA903_V5 = uuid.uuid5(uuid.NAMESPACE_URL, "urn:safeguarding-broker:ssda903")
NRM_V5 = uuid.uuid5(uuid.NAMESPACE_URL, "urn:safeguarding-broker:nrm")
DROP_V5 = uuid.uuid5(uuid.NAMESPACE_URL, "urn:safeguarding-broker:drop-folder")


def test_keyed_id_is_the_documented_hmac_as_a_v4_uuid() -> None:
    mac = hmac.new(ID_SECRET, b"council.X\x1fMissing\x1f7", hashlib.sha256).digest()
    value = uuid.UUID(keyed_event_id(ID_SECRET, "council.X", "Missing", "7"))
    assert value.version == 4 and value.variant == uuid.RFC_4122
    # Every bit of the first 16 MAC bytes but the 6 version and variant bits.
    mask = int("ffffffffffff0fff3fffffffffffffff", 16)
    assert value.int & mask == int.from_bytes(mac[:16]) & mask


def test_ids_refuse_a_missing_or_short_secret() -> None:
    for secret in (b"", b"short"):
        with pytest.raises(ValueError, match="at least 32 bytes"):
            EventIds(AGENCY, secret)
    assert ID_SECRET.decode() not in repr(EventIds(AGENCY, ID_SECRET))


def _care_started_v5(event: dict[str, Any]) -> str:
    """The id the old unkeyed scheme gave a `child.care.started`, from its public inputs."""
    day = event["occurred_at"][:10]
    parts = (AGENCY, "Episodes", event["subject"], day, "child.care.started")
    return str(uuid.uuid5(SSDA903_V5, "\x1f".join(parts)))


def test_ssda903_ids_are_stable_per_secret_and_not_the_public_derivation(sample: Path) -> None:
    first = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET).collect()
    again = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET).collect()
    other = read_ssda903(sample, agency=AGENCY, id_secret=OTHER_SECRET).collect()
    ids = [e["event_id"] for e in first]
    assert ids == [e["event_id"] for e in again]  # a re-run publishes the same ids
    assert len(other) == len(first) and not set(ids) & {e["event_id"] for e in other}
    started = [e for e in first if e["event_type"] == "child.care.started"]
    assert started
    for event in started:
        # A brute-forcer who knows the true child id still cannot reproduce the id.
        assert event["event_id"] != _care_started_v5(event)
        assert uuid.UUID(event["event_id"]).version == 4


def test_nrm_ids_are_keyed(tmp_path: Path) -> None:
    if not NRM_EXAMPLE.is_file():
        pytest.skip(f"shared example payload not found at {NRM_EXAMPLE}")
    payload = json.loads(NRM_EXAMPLE.read_text())
    referral_id = payload["ExternalId"]
    event = referral_to_event(payload, agency=AGENCY, id_secret=ID_SECRET, submitted_at=WHEN)
    assert event == referral_to_event(
        payload, agency=AGENCY, id_secret=ID_SECRET, submitted_at=WHEN
    )
    keyed_other = referral_to_event(payload, agency=AGENCY, id_secret=OTHER_SECRET)
    assert keyed_other["event_id"] != event["event_id"]
    public = f"{AGENCY}\x1fnrm.referral.submitted\x1f{referral_id}"
    assert event["event_id"] != str(uuid.uuid5(NRM_V5, public))

    args = ("r1", AGENCY, "RG", "positive", "2027-01-02", "566910")
    decision = decision_event(*args, agency="nrm.sca", id_secret=ID_SECRET)
    assert decision == decision_event(*args, agency="nrm.sca", id_secret=ID_SECRET)
    assert decision["event_id"] != decision_event(*args, id_secret=OTHER_SECRET)["event_id"]
    public = "nrm.sca\x1fnrm.decision.made\x1fr1\x1freasonable_grounds\x1fpositive\x1f2027-01-02"
    assert decision["event_id"] != str(uuid.uuid5(NRM_V5, public))


def test_drop_folder_ids_are_keyed(tmp_path: Path) -> None:
    line = json.dumps(missing_started("C1"))

    publisher = FakePublisher(AGENCY, tmp_path / "keys")
    intake = Intake(publisher, COUNCIL_EVENT_TYPES)  # type: ignore[arg-type]

    def derived(secret: bytes, name: str) -> str:
        folder = DropFolder(tmp_path / name, intake, agency_id=AGENCY, id_secret=secret, settle_s=0)
        (tmp_path / name / "a.jsonl").write_text(line + "\n")
        (report,) = folder.poll_once()
        (accepted,) = report.accepted
        return str(accepted["event_id"])

    first = derived(ID_SECRET, "one")
    assert first == derived(ID_SECRET, "two")
    assert first != derived(OTHER_SECRET, "three")
    public = AGENCY + "\x1f" + hashlib.sha256(line.encode()).hexdigest()
    assert first != str(uuid.uuid5(DROP_V5, public))


# -- the secret in the config ---------------------------------------------------------------


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    return write_deployment(tmp_path / "deployment", bootstrap_servers="127.0.0.1:1")


def test_scaffold_writes_one_private_secret_per_agency(deployment: Path) -> None:
    config = load_config(deployment)
    secrets = set()
    for agency in config.agencies:
        path = agency.event_id_secret_file
        assert path is not None and path.is_absolute()  # resolved against the config
        assert path.parent == deployment.parent / "private"
        assert path.stat().st_mode & 0o777 == 0o600
        text = path.read_text().strip()
        assert len(bytes.fromhex(text)) == 32
        secrets.add(text)
        assert event_ids_for(config, agency.id).secret == text.encode()
    assert len(secrets) == len(config.agencies)


def _edit(config_path: Path, agency_id: str, **changes: Any) -> None:
    data = yaml.safe_load(config_path.read_text())
    for agency in data["agencies"]:
        if agency["id"] == agency_id:
            agency.update(changes)
            for key in [k for k, v in changes.items() if v is None]:
                del agency[key]
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_missing_or_readable_secret_is_refused_with_the_fix(deployment: Path) -> None:
    _edit(deployment, AGENCY, event_id_secret_file=None)
    with pytest.raises(ConfigError, match=r"has no `event_id_secret_file`.*openssl rand -hex 32"):
        event_ids_for(load_config(deployment), AGENCY)
    _edit(deployment, AGENCY, event_id_secret_file="private/nope.secret")
    with pytest.raises(ConfigError, match="does not exist"):
        event_ids_for(load_config(deployment), AGENCY)
    secret = deployment.parent / "private" / "weak.secret"
    secret.write_text("too short\n")
    secret.chmod(0o600)
    _edit(deployment, AGENCY, event_id_secret_file="private/weak.secret")
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        event_ids_for(load_config(deployment), AGENCY)
    secret.write_text("x" * 64)
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        event_ids_for(load_config(deployment), AGENCY)


@pytest.mark.parametrize(
    ("agency", "argv"),
    [
        ("council.E09000033", ["council", "ssda903", "--agency", "council.E09000033", "x"]),
        ("council.E09000033", ["nrm", "referral", "--agency", "council.E09000033", "p.json"]),
        ("nrm.sca", ["nrm", "decision", "--agency", "nrm.sca", "--referral-id", "R",
                     "--first-responder", "council.E09000033", "--stage", "rg", "--outcome",
                     "positive", "--date", "2026-11-24", "--subject", "S"]),
        ("police.met", ["police", "serve", "--agency", "police.met", "--drop-dir", "d"]),
    ],
)  # fmt: skip
def test_connector_without_a_secret_stops_with_one_line(
    deployment: Path, agency: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(deployment, agency, event_id_secret_file=None)
    status = main(["connect", *argv[:2], "--config", str(deployment), *argv[2:]])
    err = capsys.readouterr().err
    assert status == 2
    assert "`event_id_secret_file`" in err and "openssl rand -hex 32" in err
    assert err.count("\n") == 1 and "Traceback" not in err
