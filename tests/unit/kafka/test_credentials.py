"""Credential files: 0600, refused when others may read them, never shown in a repr."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from broker.config import KafkaSettings
from broker.kafka.credentials import (
    OPERATOR,
    Credential,
    CredentialError,
    read_credential,
    write_credential,
)
from broker.kafka.local import ClusterAccess
from broker.kafka.tls import BROKER_CN, make_local_ca


def test_written_with_mode_0600_and_read_back(tmp_path: Path) -> None:
    path = write_credential(tmp_path, Credential("police.met", "s3cret-value"))
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_credential(tmp_path, "police.met") == Credential("police.met", "s3cret-value")
    assert "s3cret-value" not in repr(read_credential(tmp_path, "police.met"))


def test_a_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write_credential(tmp_path, Credential("police.met", "pw"))
    path.chmod(0o644)
    with pytest.raises(CredentialError, match="chmod 600"):
        read_credential(tmp_path, "police.met")


def test_missing_and_mismatched_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="credentials issue"):
        read_credential(tmp_path, "police.met")
    write_credential(tmp_path, Credential("nrm.sca", "pw")).rename(tmp_path / "police.met.json")
    with pytest.raises(CredentialError, match=r"is for nrm\.sca"):
        read_credential(tmp_path, "police.met")


def test_local_ca_signs_a_broker_certificate_for_loopback(tmp_path: Path) -> None:
    files = make_local_ca(tmp_path / "tls")
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    chain = x509.load_pem_x509_certificates(
        files.broker_keystore.read_bytes().split(b"-----END PRIVATE KEY-----\n", 1)[1]
    )
    broker = chain[0]
    assert broker.issuer == ca.subject
    broker.verify_directly_issued_by(ca)
    assert broker.subject.rfc4514_string() == f"CN={BROKER_CN}"
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert files.ca_key.stat().st_mode & 0o777 == 0o600
    assert files.broker_keystore.stat().st_mode & 0o777 == 0o600


def test_a_deployments_clients_and_the_operator_connect_with_the_same_security(
    tmp_path: Path,
) -> None:
    """Both connect through `sasl_ssl_options`: SASL_SSL, SCRAM, the CA, host name checked."""
    write_credential(tmp_path, Credential(OPERATOR, "operator-pw"))
    ca = tmp_path / "ca.pem"
    settings = KafkaSettings(
        bootstrap_servers="127.0.0.1:1,127.0.0.1:2",
        security_protocol="SASL_SSL",
        credentials_dir=tmp_path,
        ssl_cafile=ca,
    )
    access = ClusterAccess("127.0.0.1:1,127.0.0.1:2", ca_file=ca, credentials_dir=tmp_path)
    expected = {
        "bootstrap_servers": ["127.0.0.1:1", "127.0.0.1:2"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": OPERATOR,
        "sasl_plain_password": "operator-pw",
        "ssl_cafile": str(ca),
        "ssl_check_hostname": True,
    }
    assert access.operator_options() == expected
    assert settings.client_options(OPERATOR) == {**expected, "request_timeout_ms": 30000}
    insecure = ClusterAccess("127.0.0.1:1")
    assert insecure.operator_options() == {"bootstrap_servers": ["127.0.0.1:1"]}
