"""Agency keys: files, passphrases, terms, rotation, revocation, the registry and the CLI."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from envelope_samples import ISSUER, sample_event

from broker.cli import main
from broker.envelope import (
    KeyFileError,
    KeyRegistry,
    PublicKeyInfo,
    VerificationError,
    generate_key,
    issue,
    load_public_key,
    load_signing_key,
    verify_envelope,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_generate_writes_pkcs8_pem_and_public_json(tmp_path: Path) -> None:
    private, public = generate_key(ISSUER, tmp_path, key_id="2026a", valid_from=T0)
    assert private.name == f"{ISSUER}.2026a.key.pem" and public.name == f"{ISSUER}.2026a.pub.json"
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    data = json.loads(public.read_text())
    assert data["agency"] == ISSUER and data["key_id"] == "2026a"
    assert data["valid_from"] == "2026-01-01T00:00:00Z"
    assert data["valid_until"] is None and data["revoked_at"] is None
    key = load_signing_key(private)
    assert (key.agency_id, key.key_id, key.valid_from) == (ISSUER, "2026a", T0)
    assert load_public_key(public).same_key(key.public_key_info())


def test_default_key_id_is_a_public_key_hash(tmp_path: Path) -> None:
    private, _ = generate_key(ISSUER, tmp_path)
    key = load_signing_key(private)
    assert len(key.key_id) == 16 and int(key.key_id, 16) >= 0


def test_passphrase_protected_key(tmp_path: Path) -> None:
    private, _ = generate_key(ISSUER, tmp_path, key_id="p", passphrase="correct horse")
    assert b"ENCRYPTED" in private.read_bytes()
    assert load_signing_key(private, "correct horse").key_id == "p"
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_signing_key(private, "wrong")
    with pytest.raises(KeyFileError):
        load_signing_key(private)


def test_never_overwrites_and_checks_ids(tmp_path: Path) -> None:
    generate_key(ISSUER, tmp_path, key_id="same")
    with pytest.raises(KeyFileError, match="exists"):
        generate_key(ISSUER, tmp_path, key_id="same")
    with pytest.raises(KeyFileError, match=r"kind\.code"):
        generate_key("council", tmp_path)
    with pytest.raises(KeyFileError, match="key id"):
        generate_key(ISSUER, tmp_path, key_id="a.b")
    with pytest.raises(KeyFileError, match="after"):
        generate_key(ISSUER, tmp_path, valid_from=T0, valid_until=T0)


def test_mismatched_public_file_is_refused(tmp_path: Path) -> None:
    private, public = generate_key(ISSUER, tmp_path, key_id="a")
    _, other = generate_key(ISSUER, tmp_path, key_id="b")
    public.write_text(other.read_text())
    with pytest.raises(KeyFileError, match="public half"):
        load_signing_key(private)


def test_registry_rotation(tmp_path: Path) -> None:
    """Old key valid until the switch, new key from it: events verify by their issue time."""
    switch = T0 + timedelta(days=180)
    old_private, _ = generate_key(ISSUER, tmp_path, key_id="old", valid_from=T0, valid_until=switch)
    new_private, _ = generate_key(ISSUER, tmp_path, key_id="new", valid_from=switch)
    keys = KeyRegistry.from_dir(tmp_path)
    assert {k.key_id for k in keys.keys(ISSUER)} == {"old", "new"}
    event = sample_event("nrm.decision.made")
    before = issue(
        event, issuer=ISSUER, key=load_signing_key(old_private), now=switch - timedelta(1)
    )
    after = issue(event, issuer=ISSUER, key=load_signing_key(new_private), now=switch)
    assert verify_envelope(before, keys).header.key_id == "old"
    assert verify_envelope(after, keys).header.key_id == "new"
    with pytest.raises(KeyFileError, match="not valid"):
        issue(event, issuer=ISSUER, key=load_signing_key(old_private), now=switch)


def test_registry_lookup_codes(tmp_path: Path) -> None:
    _, public = generate_key(
        ISSUER, tmp_path, key_id="k", valid_from=T0, valid_until=T0 + timedelta(1)
    )
    keys = KeyRegistry([load_public_key(public)])
    assert keys.lookup(ISSUER, "k", T0, role="issuer").key_id == "k"
    for at in (T0 - timedelta(seconds=1), T0 + timedelta(1)):
        with pytest.raises(VerificationError) as info:
            keys.lookup(ISSUER, "k", at, role="issuer")
        assert info.value.code == "key_not_valid"
    keys.revoke(ISSUER, "k", T0 + timedelta(hours=1))
    assert keys.lookup(ISSUER, "k", T0, role="issuer").key_id == "k"
    with pytest.raises(VerificationError) as info:
        keys.lookup(ISSUER, "k", T0 + timedelta(hours=2), role="issuer")
    assert info.value.code == "revoked_key"
    with pytest.raises(KeyFileError):
        keys.revoke(ISSUER, "missing", T0)


def test_registry_refuses_a_reused_key_id(tmp_path: Path) -> None:
    _, first = generate_key(ISSUER, tmp_path / "a", key_id="k")
    _, second = generate_key(ISSUER, tmp_path / "b", key_id="k")
    keys = KeyRegistry([load_public_key(first)])
    with pytest.raises(KeyFileError, match="already used"):
        keys.add(load_public_key(second))


def test_public_key_json_round_trip(tmp_path: Path) -> None:
    _, public = generate_key(ISSUER, tmp_path, valid_from=T0)
    info = load_public_key(public)
    again = PublicKeyInfo.from_json(info.to_json())
    assert again.same_key(info) and again.valid_from == info.valid_from
    broken = {**info.to_json(), "public_key": "not base64!"}
    with pytest.raises(KeyFileError, match="needs agency"):
        PublicKeyInfo.from_json(broken)


def test_cli_generate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEY_PASSPHRASE", "s3cret passphrase")
    status = main(
        [
            "keys", "generate", "police.met", "--out", str(tmp_path), "--key-id", "k2026",
            "--passphrase-env", "KEY_PASSPHRASE", "--valid-from", "2026-01-01T00:00:00Z",
            "--valid-until", "2027-01-01T00:00:00Z",
        ]
    )  # fmt: skip
    assert status == 0
    out = capsys.readouterr().out
    assert "k2026" in out and "s3cret" not in out
    key = load_signing_key(tmp_path / "police.met.k2026.key.pem", "s3cret passphrase")
    assert key.valid_until == datetime(2027, 1, 1, tzinfo=UTC)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "keys",
                "generate",
                "police.met",
                "--out",
                str(tmp_path),
                "--passphrase-env",
                "UNSET_VAR_X",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "UNSET_VAR_X" in err and len(err.strip().splitlines()) == 1
    assert (
        main(["keys", "generate", "police.met", "--out", str(tmp_path), "--valid-from", "soon"])
        == 2
    )
    assert "--valid-from" in capsys.readouterr().err


def test_cli_generate_roles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["keys", "generate", "--out", str(tmp_path)]
    assert main([*args, "police.met", "--key-id", "p1"]) == 0
    assert main([*args, "router.main", "--key-id", "r1", "--role", "router",
                 "--role", "checkpoint"]) == 0  # fmt: skip
    assert "roles:       checkpoint, router" in capsys.readouterr().out
    assert load_public_key(tmp_path / "police.met.p1.pub.json").roles == ("issuer",)
    router = json.loads((tmp_path / "router.main.r1.pub.json").read_text())
    assert router["roles"] == ["checkpoint", "router"]
    with pytest.raises(SystemExit):  # argparse: not a role
        main([*args, "police.met", "--key-id", "p2", "--role", "admin"])


def test_key_file_roles_are_checked(tmp_path: Path) -> None:
    _, public = generate_key(ISSUER, tmp_path, key_id="k", valid_from=T0)
    data = json.loads(public.read_text())
    for roles in ([], ["issuer", "superuser"], "issuer", [1]):
        with pytest.raises(KeyFileError, match="roles"):
            PublicKeyInfo.from_json({**data, "roles": roles})
    keys = KeyRegistry([PublicKeyInfo.from_json({**data, "roles": ["checkpoint"]})])
    with pytest.raises(VerificationError) as info:
        keys.lookup(ISSUER, "k", T0, role="issuer")
    assert info.value.code == "wrong_role"
    assert keys.lookup(ISSUER, "k", T0, role="checkpoint").key_id == "k"
