"""Kafka principals and their SCRAM-SHA-512 credentials.

Every client of the broker authenticates to Kafka as one principal (SASL_SSL, SCRAM-SHA-512):
one per agency (its id), one for the router (its id, e.g. `router.main`, shared by all its
instances), `auditor`, `stats` (the statistics collection), `registry` (the registry
authority, sole writer of `registry.keys` and `registry.agreements`) and `operator` (the only
super user besides the brokers). A credential is a JSON file `<principal>.json` holding the
user name and password, mode 0600, in the directory the config names (`kafka.credentials_dir`);
it is never inline in the config. `broker kafka credentials issue|revoke|list` manages them.
On Kubernetes the Secret Strimzi makes for a `KafkaUser` may be mounted instead, as the folder
`<principal>/` holding its `password` key (the user name is the principal).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.errors import BrokerError

OPERATOR = "operator"
AUDITOR = "auditor"
STATS = "stats"
REGISTRY = "registry"  # the registry authority: the only writer of registry.keys/agreements
BROKER = "kafka-broker"  # the brokers' own principal (their certificate's CN), a super user
RESERVED = frozenset({OPERATOR, AUDITOR, STATS, REGISTRY, BROKER})
MECHANISM = "SCRAM-SHA-512"
SUFFIX = ".json"


class CredentialError(BrokerError):
    """A Kafka credential file is missing, unreadable, too open, or malformed."""


@dataclass(frozen=True)
class Credential:
    """A principal's SCRAM user name and password. The password never appears in its repr."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, password=<hidden>)"


def principal_of(agency_id: str) -> str:
    """The Kafka principal (SCRAM user name) of an agency or router id.

    Lower case with `-` for `_`, so that the same name is valid as a Kubernetes resource name
    (Strimzi names a KafkaUser's principal after the resource); the config refuses two ids
    that would share a principal.
    """
    return agency_id.lower().replace("_", "-")


def credential_path(directory: Path, principal: str) -> Path:
    return directory / f"{principal}{SUFFIX}"


def new_password() -> str:
    """A random password with 256 bits of entropy."""
    return secrets.token_urlsafe(32)


def write_credential(directory: Path, credential: Credential) -> Path:
    """Write `<principal>.json` with mode 0600 (created that way: never briefly readable)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = credential_path(directory, credential.username)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"username": credential.username, "password": credential.password}, handle)
        handle.write("\n")
    tmp.replace(path)
    return path


def read_credential(directory: Path, principal: str) -> Credential:
    """Read a principal's credential; refuse a file others may read, as ssh does for keys."""
    path = credential_path(directory, principal)
    strimzi = directory / principal / "password"
    if not path.exists() and strimzi.is_file():
        return _read_strimzi_secret(strimzi, principal)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CredentialError(
            f"no Kafka credential for {principal}: {path} does not exist: issue one with "
            f"`broker kafka credentials issue --config CONFIG {principal}` (as the operator) "
            "or copy the file the operator gave you there"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialError(
            f"the Kafka credential {path} can be read by other users "
            f"(mode {stat.S_IMODE(mode):o}): run `chmod 600 {path}`"
        )
    try:
        data = json.loads(path.read_text())
        credential = Credential(username=str(data["username"]), password=str(data["password"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise CredentialError(
            f"the Kafka credential {path} is not a JSON object with `username` and "
            "`password`: issue it again with `broker kafka credentials issue`"
        ) from None
    if credential.username != principal:
        raise CredentialError(
            f"the Kafka credential {path} is for {credential.username}, not {principal}: "
            "put each principal's credential in its own <principal>.json"
        )
    return credential


def sasl_ssl_options(
    credentials_dir: Path, principal: str, ca_file: Path, mechanism: str = MECHANISM
) -> dict[str, Any]:
    """The kafka-python options that connect over SASL_SSL as `principal` (its SCRAM credential
    read from `credentials_dir`), trusting the cluster CA in `ca_file` and checking the broker's
    host name: the one place they are built (a deployment's clients, the operator's)."""
    credential = read_credential(credentials_dir, principal)
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": credential.username,
        "sasl_plain_password": credential.password,
        "ssl_cafile": str(ca_file),
        "ssl_check_hostname": True,
    }


def _read_strimzi_secret(path: Path, principal: str) -> Credential:
    """The `password` key of the Secret Strimzi's user operator makes for a KafkaUser, mounted
    as the directory `<credentials_dir>/<principal>/` (docs/operations.md, Kubernetes)."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO) & ~stat.S_IRGRP:
        raise CredentialError(
            f"the Kafka credential {path} can be read by other users "
            f"(mode {stat.S_IMODE(mode):o}): mount the secret with defaultMode 0400 (or 0440)"
        )
    password = path.read_text().strip()
    if not password:
        raise CredentialError(f"the Kafka credential {path} is empty: check the KafkaUser secret")
    return Credential(username=principal, password=password)
