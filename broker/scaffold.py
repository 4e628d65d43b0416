"""A complete local deployment in one directory: keys for every agency and the router, a
pseudonym secret, and a config file using the example agreements. The demo and the integration
tests start from this; it is also a worked example of docs/config.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from broker.envelope import generate_key
from broker.envelope.keys import (
    PRIVATE_SUFFIX,
    ROLE_ISSUER,
    ROLE_REGISTRY_ADMIN,
    ROUTER_ROLES,
)
from broker.kafka.local import ClusterAccess

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_AGREEMENTS = REPO_ROOT / "agreements" / "examples"

DEMO_AGENCIES: dict[str, str] = {
    "council.E09000033": "Westminster City Council children's services",
    "council.E09000022": "Lambeth Council children's services",
    "council.E09000028": "Southwark Council children's services",
    "police.met": "Metropolitan Police missing persons unit",
    "nrm.sca": "NRM Single Competent Authority",
    "guardian.ictg": "Independent Child Trafficking Guardian service",
    "stats.national": "National statistics (children looked after)",
}
# The alerts service (docs/alerts.md): an agency of its own, with rules and agreements apart
# from the examples (a deployment without it is unchanged).
ALERTS_ID = "alerts.main"
ALERT_RULES = REPO_ROOT / "alerts" / "rules"
ALERT_AGREEMENTS = REPO_ROOT / "agreements" / "alerts"
ROUTER_ID = "router.main"
REGISTRY_ID = "registry.main"  # the registry authority: signs registry.keys records


def write_deployment(
    directory: Path,
    *,
    bootstrap_servers: str | ClusterAccess,
    agencies: dict[str, str] | None = None,
    agreements_dir: Path = EXAMPLE_AGREEMENTS,
    partitions: int = 3,
    router: dict[str, object] | None = None,
    alerts: dict[str, object] | None = None,
) -> Path:
    """Write keys and `config.yaml` into `directory`; return the config path.

    Given a secured cluster's `ClusterAccess`, the config connects with SASL_SSL and names its
    CA certificate and credentials directory (where `broker.kafka.operator.provision` issues
    each principal's credential); a bare address gives a PLAINTEXT config. With `alerts`
    (settings of the `alerts` section; its `id` must be one of `agencies`), the config runs an
    alerts service with a state secret of its own.
    """
    return ensure_deployment(
        directory,
        bootstrap_servers=bootstrap_servers,
        agencies=agencies,
        agreements_dir=agreements_dir,
        partitions=partitions,
        router=router,
        alerts=alerts,
    ).config


@dataclass
class Written:
    """What `ensure_deployment` made and what it found there already (and kept)."""

    config: Path
    made: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def ensure_deployment(
    directory: Path,
    *,
    bootstrap_servers: str | ClusterAccess,
    agencies: dict[str, str] | None = None,
    agreements_dir: Path = EXAMPLE_AGREEMENTS,
    partitions: int = 3,
    replication: int = 1,
    router: dict[str, object] | None = None,
    alerts: dict[str, object] | None = None,
    keep_config: bool = False,
) -> Written:
    """Make `directory` a deployment: a signing key per agency (issuer), the router (router and
    checkpoint) and the registry authority (registry-admin), secrets, and `config.yaml`.

    Never overwrites a key or a secret: an id that already has a private key in `private/` keeps
    it (and its public half in `keys/`), a secret file that exists is kept. With `keep_config`
    an existing `config.yaml` is left as it is. Private files are mode 0600 in a 0700 folder.
    """
    access = (
        bootstrap_servers
        if isinstance(bootstrap_servers, ClusterAccess)
        else ClusterAccess(bootstrap_servers)
    )
    kafka: dict[str, object] = {"bootstrap_servers": access.bootstrap_servers}
    if access.secured:
        kafka.update(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            ssl_cafile=str(access.ca_file),
            credentials_dir=str(access.credentials_dir),
        )
    agencies = agencies or DEMO_AGENCIES
    written = Written(directory / "config.yaml")
    keys = directory / "keys"
    private = directory / "private"
    keys.mkdir(parents=True, exist_ok=True)
    private.mkdir(parents=True, exist_ok=True)
    private.chmod(0o700)
    signing: dict[str, Path] = {}
    special = {ROUTER_ID: ROUTER_ROLES, REGISTRY_ID: (ROLE_REGISTRY_ADMIN,)}
    for agency_id in [*agencies, ROUTER_ID, REGISTRY_ID]:
        # The newest key (a rotation writes a new one beside the old).
        existing = sorted(
            private.glob(f"{agency_id}.*{PRIVATE_SUFFIX}"), key=lambda p: p.stat().st_mtime
        )
        if existing:
            signing[agency_id] = existing[-1]
            written.kept.append(existing[-1])
            continue
        roles = special.get(agency_id, (ROLE_ISSUER,))
        private_path, public_path = generate_key(agency_id, private, roles=roles)
        signing[agency_id] = private_path
        public_path.rename(keys / public_path.name)
        written.made += [private_path, keys / public_path.name]
    secret = private / "pseudonym.secret"
    if secret.exists():
        written.kept.append(secret)
    else:
        _write_new_secret(secret)
        written.made.append(secret)
    id_secrets: dict[str, Path] = {}
    for agency_id in agencies:
        path = private / f"{agency_id}.event-id.secret"
        if path.exists():
            written.kept.append(path)
        else:
            _write_secret(private, agency_id)
            written.made.append(path)
        id_secrets[agency_id] = path
    config: dict[str, object] = {
        "kafka": {
            **kafka,
            "topics": {
                "create": True,
                "partitions": partitions,
                "replication_factor": replication,
            },
        },
        "keys_dir": "keys",
        "agreements_dir": str(agreements_dir),
        "agencies": [
            {
                "id": agency_id,
                "name": name,
                "signing_key": str(signing[agency_id].relative_to(directory)),
                "event_id_secret_file": str(id_secrets[agency_id].relative_to(directory)),
            }
            for agency_id, name in agencies.items()
        ],
        "router": {
            "id": ROUTER_ID,
            "signing_key": str(signing[ROUTER_ID].relative_to(directory)),
            "pseudonym_secret_file": "private/pseudonym.secret",
            **(router or {}),
        },
        "registry": {
            "id": REGISTRY_ID,
            "signing_key": str(signing[REGISTRY_ID].relative_to(directory)),
        },
    }
    if alerts is not None:
        state_secret = private / "alerts-state.secret"
        if state_secret.exists():
            written.kept.append(state_secret)
        else:
            _write_new_secret(state_secret)
            written.made.append(state_secret)
        config["alerts"] = {
            "rules_dir": str(ALERT_RULES),
            "state_secret_file": str(state_secret.relative_to(directory)),
            **alerts,
        }
    if keep_config and written.config.exists():
        written.kept.append(written.config)
    else:
        written.config.write_text(yaml.safe_dump(config, sort_keys=False))
        written.made.append(written.config)
    return written


def _write_new_secret(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(os.urandom(32).hex())


def _write_secret(private: Path, agency_id: str) -> Path:
    """An agency's event id secret (32 random bytes as hex), created with mode 0600."""
    path = private / f"{agency_id}.event-id.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(os.urandom(32).hex() + "\n")
    path.chmod(0o600)  # an existing file keeps its mode through O_CREAT
    return path
