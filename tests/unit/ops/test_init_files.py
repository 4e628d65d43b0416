"""`broker init` without a cluster, doctor's file checks, and Strimzi's secret as a credential."""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.alerts.check import load_rules
from broker.config import load_config
from broker.kafka.credentials import CredentialError, read_credential
from broker.kafka.local import ClusterAccess
from broker.ops.doctor import _agreements, _keys
from broker.ops.init import init_deployment, next_commands, parse_agencies
from broker.scaffold import ALERT_AGREEMENTS, ALERTS_ID
from broker.scaffold import ALERT_RULES as SAFEGUARDING_RULES

AGENCIES = {"council.E06000001": "Hartlepool", "police.cleveland": "Cleveland Police"}
# Westminster alone would not do: the example agreements name three London councils.
LONDON = {
    "council.E09000033": "Westminster",
    "council.E09000022": "Lambeth",
    "council.E09000028": "Southwark",
    "police.met": "Met",
}


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_init_writes_keys_and_secrets_private_and_never_overwrites(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    report = init_deployment(directory, ClusterAccess("127.0.0.1:1"), agencies=AGENCIES,
                             provision=False)
    config = load_config(report.config)
    assert config.agency_ids == list(AGENCIES)
    assert stat.S_IMODE((directory / "private").stat().st_mode) == 0o700
    private = sorted((directory / "private").iterdir())
    assert len(private) == 4 + 1 + 2  # 4 keys, the pseudonym secret, 2 event id secrets
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in private)
    # No example agreement concerns these agencies: a template, which the router does not load.
    assert [p.name for p in (directory / "agreements").iterdir()] == ["TEMPLATE.yaml.example"]
    assert report.example_agency is None
    assert [c.split()[1] for c in next_commands(report)] == ["doctor", "route"]
    before = _digests(directory)
    again = init_deployment(directory, ClusterAccess("127.0.0.1:1"), agencies=AGENCIES,
                            provision=False)
    assert again.made == []
    assert _digests(directory) == before


def test_init_copies_only_the_agreements_whose_parties_are_registered(tmp_path: Path) -> None:
    report = init_deployment(tmp_path / "d", ClusterAccess("127.0.0.1:1"), agencies=LONDON,
                             provision=False)
    copied = sorted(p.name for p in (tmp_path / "d" / "agreements").glob("*.yaml"))
    # Not those naming the NRM, the guardian service or the statistics collection.
    assert copied == ["council-police-missing.v1.yaml", "council-police-missing.v2.yaml",
                      "police-council-missing-reports.westminster.v1.yaml"]
    assert report.example_agency == "council.E09000033" and report.feed_agency == "police.met"
    assert _agreements(load_config(report.config))[0].ok


def test_doctor_names_an_expiring_key_and_a_stray_recipient(tmp_path: Path) -> None:
    report = init_deployment(tmp_path / "d", ClusterAccess("127.0.0.1:1"), agencies=LONDON,
                             provision=False)
    config = load_config(report.config)
    now = datetime.now(UTC)
    assert [f.ok for f in _keys(config, now, timedelta(days=30))] == [True]
    key = next((tmp_path / "d" / "keys").glob("police.met.*.pub.json"))
    ends = (now + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    key.write_text(json.dumps({**json.loads(key.read_text()), "valid_until": ends}))
    (found,) = _keys(config, now, timedelta(days=30))
    assert not found.ok and "the issuer key of police.met expires at" in str(found)
    assert _keys(config, now, timedelta(days=1))[0].ok  # outside a one-day window
    (gone,) = _keys(config, now + timedelta(days=4), timedelta(days=1))
    assert "police.met has no issuer key valid now" in str(gone)
    source = tmp_path / "d" / "agreements" / "council-police-missing.v1.yaml"
    (tmp_path / "d" / "agreements" / "stray.yaml").write_text(
        source.read_text().replace("recipient: police.met", "recipient: police.btp")
        .replace("id: dsa.london-councils-met.missing-children", "id: dsa.stray")
    )
    problems = [f for f in _agreements(config) if not f.ok]
    assert len(problems) == 1
    assert "recipient police.btp is not in the agency registry" in str(problems[0])


def test_a_strimzi_user_secret_mounted_as_a_folder_is_a_credential(tmp_path: Path) -> None:
    secret = tmp_path / "router.main" / "password"
    secret.parent.mkdir()
    secret.write_text("s3cret-from-strimzi\n")
    secret.chmod(0o400)
    credential = read_credential(tmp_path, "router.main")
    assert (credential.username, credential.password) == ("router.main", "s3cret-from-strimzi")
    secret.chmod(0o644)
    with pytest.raises(CredentialError, match="can be read by other users"):
        read_credential(tmp_path, "router.main")


def test_init_with_the_alerts_service_writes_its_rules_agreements_and_state_secret(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "d"
    agencies = parse_agencies([])  # the defaults: the demo agencies and the alerts service
    assert ALERTS_ID in agencies
    report = init_deployment(directory, ClusterAccess("127.0.0.1:1"), agencies=agencies,
                             provision=False)
    config = load_config(report.config)
    assert report.alerts and config.alerts is not None and config.alerts.id == ALERTS_ID
    # Its rules are copied into the deployment, to be edited there, and pass the check.
    assert config.alerts.rules_dir == directory / "alerts" / "rules"
    assert sorted(p.name for p in config.alerts.rules_dir.glob("*.yaml")) == sorted(
        p.name for p in SAFEGUARDING_RULES.glob("*.yaml")
    )
    assert load_rules(config.alerts.rules_dir)
    # The agreements that feed it and carry its alerts; and a state secret of its own.
    copied = {p.name for p in (directory / "agreements").glob("*.yaml")}
    assert {p.name for p in ALERT_AGREEMENTS.glob("*.yaml")} <= copied
    secret = directory / "private" / "alerts-state.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert config.alerts_state_secret != config.pseudonym_secret
    assert _agreements(config)[0].ok
    before = _digests(directory)
    assert init_deployment(directory, ClusterAccess("127.0.0.1:1"), agencies=agencies,
                           provision=False).made == []
    assert _digests(directory) == before


def test_init_without_the_alerts_service_writes_no_alerts_section(tmp_path: Path) -> None:
    report = init_deployment(tmp_path / "d", ClusterAccess("127.0.0.1:1"), agencies=LONDON,
                             provision=False)
    assert not report.alerts and load_config(report.config).alerts is None
    assert not (tmp_path / "d" / "alerts").exists()
