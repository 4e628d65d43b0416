"""The deployment config file: Kafka connection, agency registry, agreements, router identity.

One YAML file, validated with pydantic. Relative paths are resolved against the file's own
directory, so a config and its keys can move together. Every mistake becomes a `ConfigError`
naming the file, the line and field, and what to do; see docs/config.md for a full example.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from broker.dedup import DEFAULT_MAX_EVENTS, DEFAULT_WINDOW_S, DedupPolicy
from broker.errors import BrokerError
from broker.ids import AGENCY_ID_PATTERN

AgencyId = Annotated[str, StringConstraints(pattern=AGENCY_ID_PATTERN)]
_ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


class ConfigError(BrokerError):
    """The config file is missing, malformed or inconsistent."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicSettings(_Strict):
    """How the broker creates the topics it needs when they are missing."""

    create: bool = True
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class KafkaSettings(_Strict):
    """Connection to Kafka and how each principal authenticates.

    Secured (the default of `broker kafka start` and of every deployment the project writes):
    `SASL_SSL` with `SCRAM-SHA-512`, the cluster's CA certificate in `ssl_cafile`, and one
    credential file per principal (`<principal>.json`, mode 0600) in `credentials_dir`. Each
    command connects as the principal it acts for: an agency's id for `publish`/`feed`, the
    router's id, `auditor`, `stats`, `operator` (see broker.kafka.credentials).
    `PLAINTEXT` is for an `--insecure` experiment only.
    """

    bootstrap_servers: str
    security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512"] = "SCRAM-SHA-512"
    credentials_dir: Path | None = None
    ssl_cafile: Path | None = None
    topics: TopicSettings = TopicSettings()
    request_timeout_ms: int = Field(default=30000, ge=1000)

    @property
    def secured(self) -> bool:
        return self.security_protocol == "SASL_SSL"

    def client_options(self, principal: str | None = None) -> dict[str, Any]:
        """Options common to every kafka-python client that connects as `principal`."""
        from broker.kafka.credentials import sasl_ssl_options

        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if not self.secured:
            return options
        if principal is None:
            raise ConfigError(
                "a secured Kafka connection needs a principal to connect as (internal error: "
                "the command did not say which)"
            )
        # Both checked when the config is loaded.
        assert self.credentials_dir is not None and self.ssl_cafile is not None
        options.update(
            sasl_ssl_options(self.credentials_dir, principal, self.ssl_cafile, self.sasl_mechanism)
        )
        return options


class Agency(_Strict):
    """One agency of the registry. The private key is only needed by that agency's publisher."""

    id: AgencyId
    name: str
    signing_key: Path | None = None
    passphrase_env: Annotated[str, StringConstraints(pattern=_ENV_NAME)] | None = None
    # Keys the ids its connectors derive (connectors/ids.py); only its connectors need it.
    event_id_secret_file: Path | None = None

    @property
    def kind(self) -> str:
        return self.id.split(".", 1)[0]


class RouterSettings(_Strict):
    """The routing service's identity, key and tuning."""

    id: AgencyId = "router.main"
    signing_key: Path
    passphrase_env: Annotated[str, StringConstraints(pattern=_ENV_NAME)] | None = None
    pseudonym_secret_env: Annotated[str, StringConstraints(pattern=_ENV_NAME)] = (
        "BROKER_PSEUDONYM_SECRET"
    )
    pseudonym_secret_file: Path | None = None
    group_id: str = "broker-router"
    instance_id: str = "router-0"
    batch_max_records: int = Field(default=500, ge=1)
    poll_timeout_ms: int = Field(default=50, ge=1)
    transaction_timeout_ms: int = Field(default=15000, ge=1000)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Where /metrics and /healthz listen: loopback unless a scraper elsewhere needs them (in a
    # Kubernetes pod, 0.0.0.0 with a NetworkPolicy that admits only Prometheus).
    metrics_host: str = "127.0.0.1"
    checkpoint_interval_s: float = Field(default=30.0, gt=0)
    # An event's issued_at may differ from the time the broker received it by at most this.
    max_clock_skew_s: float = Field(default=300.0, gt=0)
    # No call into the Kafka client waits longer than this; then the producer is replaced.
    kafka_timeout_s: float = Field(default=10.0, gt=0)
    # No committed transaction for this long while there is work: the router reports stuck.
    stuck_after_s: float = Field(default=30.0, gt=0)
    # Fail closed: when the registry topics could not be read to their end for this long, the
    # router holds routing (no decision, no commit) until it can again.
    registry_max_stale_s: float = Field(default=30.0, gt=0)
    # The de-duplication window per ingress partition (docs/faults.md, "Bounded state"): an
    # event id is a duplicate while it was routed less than this long before, and among the
    # last this many events routed; audit replay judges with the same window.
    dedup_window_s: float = Field(default=DEFAULT_WINDOW_S, gt=0)
    dedup_window_events: int = Field(default=DEFAULT_MAX_EVENTS, ge=1, le=100_000)
    # A snapshot of every owned partition's state every this many ingress records routed, so
    # a new owner reads the snapshot and what follows instead of the whole history; 0: never.
    snapshot_every_records: int = Field(default=5000, ge=0)
    # ...and as soon as one partition has had this many routing transactions since its last
    # snapshot: each takes a `w|` slot, so this bounds the slots compaction keeps per
    # partition whatever the batch sizes (small batches at low rates, halved ones after
    # failures, a takeover that continues the slots of the router before it).
    snapshot_every_batches: int = Field(default=1000, ge=1)

    @property
    def dedup_policy(self) -> DedupPolicy:
        return DedupPolicy(self.dedup_window_s, self.dedup_window_events)


class RegistrySettings(_Strict):
    """The registry authority: who signs `registry.keys` records (docs/wire-format.md, "The
    key registry"). Its `registry-admin` public key is pinned from `keys_dir`, never taken from
    the topic; `signing_key` is only needed where `broker keys publish|revoke|rotate` run."""

    id: AgencyId = "registry.main"
    signing_key: Path | None = None
    passphrase_env: Annotated[str, StringConstraints(pattern=_ENV_NAME)] | None = None


class AlertsSettings(_Strict):
    """The alerts service (docs/alerts.md): an agency of the registry (`id`, with its own issuer
    key there) that reads its feed, keeps per-child clocks in `state.<id>` and publishes signed
    `alert.raised` events to its ingress topic."""

    id: AgencyId = "alerts.main"
    rules_dir: Path
    # The key that seals its state records: its own secret, never the router's.
    state_secret_env: Annotated[str, StringConstraints(pattern=_ENV_NAME)] = (
        "BROKER_ALERTS_STATE_SECRET"
    )
    state_secret_file: Path | None = None
    instance_id: str = "alerts-0"
    batch_max_records: int = Field(default=500, ge=1)
    poll_timeout_ms: int = Field(default=100, ge=1)
    # How often clocks are checked when no input arrives.
    tick_s: float = Field(default=1.0, gt=0)
    transaction_timeout_ms: int = Field(default=15000, ge=1000)
    kafka_timeout_s: float = Field(default=10.0, gt=0)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    @property
    def group_id(self) -> str:
        """Its consumer group: inside the `feed-<id>.` groups every agency owns."""
        return f"feed-{self.id}.alerts"

    @property
    def transactional_prefix(self) -> str:
        return f"{self.id}-"

    @property
    def state_topic(self) -> str:
        return f"state.{self.id}"


class BrokerConfig(_Strict):
    """The whole deployment config file."""

    kafka: KafkaSettings
    keys_dir: Path = Field(description="directory of public key files (*.pub.json)")
    agreements_dir: Path
    agencies: list[Agency] = Field(min_length=1)
    router: RouterSettings
    # Without it, keys come from keys_dir alone (no live registry is followed).
    registry: RegistrySettings | None = None
    # Without it, no alerts service runs (and no ACL for one is generated).
    alerts: AlertsSettings | None = None
    source: Path = Field(default=Path("config.yaml"), exclude=True)

    def agency(self, agency_id: str) -> Agency:
        for agency in self.agencies:
            if agency.id == agency_id:
                return agency
        raise ConfigError(
            f"{self.source}: agency {agency_id} is not in the `agencies` registry: "
            "add it there (id, name, signing_key) or correct the id"
        )

    @property
    def agency_ids(self) -> list[str]:
        return [agency.id for agency in self.agencies]

    @cached_property
    def pseudonym_secret(self) -> bytes:
        """The router's secret for recipient-specific pseudonyms (env var, else file)."""
        value = os.environ.get(self.router.pseudonym_secret_env)
        if value:
            return value.encode()
        if self.router.pseudonym_secret_file is not None:
            try:
                return self.router.pseudonym_secret_file.read_bytes().strip()
            except OSError:
                pass
        raise ConfigError(
            f"{self.source}: no pseudonym secret: set ${self.router.pseudonym_secret_env} or "
            "router.pseudonym_secret_file to a file holding a long random secret"
        )

    @cached_property
    def alerts_state_secret(self) -> bytes:
        """The alerts service's secret for sealing its state (env var, else file)."""
        settings = self.alerts
        if settings is None:
            raise ConfigError(f"{self.source}: no `alerts` section: add one (docs/alerts.md)")
        value = os.environ.get(settings.state_secret_env)
        if value:
            return value.encode()
        if settings.state_secret_file is not None:
            try:
                return settings.state_secret_file.read_bytes().strip()
            except OSError:
                pass
        raise ConfigError(
            f"{self.source}: no alerts state secret: set ${settings.state_secret_env} or "
            "alerts.state_secret_file to a file holding a long random secret"
        )

    def pseudonym_key(self, recipient: str) -> bytes:
        """A key per recipient, so that pseudonyms cannot be linked across recipients."""
        return hmac.new(self.pseudonym_secret, recipient.encode(), hashlib.sha256).digest()


def topic_ingress(agency_id: str) -> str:
    return f"ingress.{agency_id}"


def topic_feed(agency_id: str) -> str:
    return f"feed.{agency_id}"


TOPIC_AUDIT = "audit.decisions"
TOPIC_CHECKPOINTS = "audit.checkpoints"
TOPIC_QUARANTINE = "quarantine"
TOPIC_ROUTER_STATE = "router.state"
TOPIC_REGISTRY_KEYS = "registry.keys"
TOPIC_REGISTRY_AGREEMENTS = "registry.agreements"
_INGRESS = re.compile(r"^ingress\.(.+)$")


def agency_of_ingress(topic: str) -> str | None:
    match = _INGRESS.match(topic)
    return match.group(1) if match else None


_PATH_FIELDS = (
    ("keys_dir",),
    ("agreements_dir",),
    ("router", "signing_key"),
    ("router", "pseudonym_secret_file"),
    ("registry", "signing_key"),
    ("alerts", "rules_dir"),
    ("alerts", "state_secret_file"),
    ("kafka", "ssl_cafile"),
    ("kafka", "credentials_dir"),
)


def load_config(path: Path) -> BrokerConfig:
    """Read and validate a config file; relative paths are taken from the file's directory."""
    from broker.agreements.loader import YamlLimitError, line_of, parse_yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path} ({exc.strerror}): check the --config path"
        ) from None
    try:
        data, lines, duplicates = parse_yaml(text)
    except Exception as exc:  # yaml.YAMLError and its marks
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        if isinstance(exc, YamlLimitError):
            raise ConfigError(f"{where}: refused: {exc.problem}") from None
        raise ConfigError(f"{where}: not valid YAML: fix the syntax at that line") from None
    if duplicates:
        key, line = duplicates[0]
        raise ConfigError(f"{path}:{line}: key `{key}` appears twice: keep one")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping (see docs/config.md)")
    base = path.resolve().parent
    _resolve_paths(data, base)
    try:
        config = BrokerConfig.model_validate({**data, "source": path})
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        loc = tuple(first["loc"])
        field = ".".join(map(str, loc)) or "file"
        line = line_of(lines, loc)
        fix = (
            f"add `{loc[-1]}`"
            if first["type"] == "missing"
            else "remove it or correct its spelling"
            if first["type"] == "extra_forbidden"
            else "correct the value (see docs/config.md)"
        )
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{path}:{line}: `{field}`: {first['msg']}: {fix}{more}") from None
    _check_consistency(config, path)
    return config


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for loc in _PATH_FIELDS:
        holder: Any = data
        for key in loc[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and isinstance(holder.get(loc[-1]), str):
            holder[loc[-1]] = str(base / holder[loc[-1]])
    for agency in data.get("agencies") or []:
        for key in ("signing_key", "event_id_secret_file"):
            if isinstance(agency, dict) and isinstance(agency.get(key), str):
                agency[key] = str(base / agency[key])


def _check_consistency(config: BrokerConfig, path: Path) -> None:
    kafka = config.kafka
    if kafka.secured:
        if kafka.ssl_cafile is None or not kafka.ssl_cafile.is_file():
            missing = "" if kafka.ssl_cafile is None else f" ({kafka.ssl_cafile} does not exist)"
            raise ConfigError(
                f"{path}: kafka.ssl_cafile must name the Kafka cluster's CA certificate (PEM) "
                f"for SASL_SSL{missing}: for the local Kafka it is <data_dir>/client/ca.pem"
            )
        if kafka.credentials_dir is None or not kafka.credentials_dir.is_dir():
            raise ConfigError(
                f"{path}: kafka.credentials_dir must name the directory of Kafka credential "
                "files (<principal>.json, mode 0600) for SASL_SSL: create it and issue "
                "credentials with `broker kafka credentials issue`"
            )
    seen: set[str] = set()
    for agency in config.agencies:
        if agency.id in seen:
            raise ConfigError(f"{path}: agency {agency.id} is listed twice: keep one entry")
        seen.add(agency.id)
    from broker.kafka.credentials import RESERVED, principal_of

    owners: dict[str, str] = {}
    registry = [config.registry.id] if config.registry is not None else []
    for owner in [*(agency.id for agency in config.agencies), config.router.id, *registry]:
        principal = principal_of(owner)
        if principal in RESERVED or principal in owners:
            other = owners.get(principal, "a built-in principal")
            raise ConfigError(
                f"{path}: {owner} would connect to Kafka as {principal}, as {other} does "
                "(principals are ids in lower case with - for _): rename one of them"
            )
        owners[principal] = owner
    if config.alerts is not None:
        if config.alerts.id not in seen:
            raise ConfigError(
                f"{path}: alerts.id {config.alerts.id} is not in the `agencies` registry: add "
                "it there with its own signing_key (it issues alert events like any agency)"
            )
        if not config.alerts.rules_dir.is_dir():
            raise ConfigError(
                f"{path}: alerts.rules_dir {config.alerts.rules_dir} is not a directory: point "
                "it at the folder of alert rule files (alerts/rules/)"
            )
    if not config.keys_dir.is_dir():
        raise ConfigError(
            f"{path}: keys_dir {config.keys_dir} is not a directory: create it and put the "
            "agencies' *.pub.json files there (broker keys generate)"
        )
    if not config.agreements_dir.is_dir():
        raise ConfigError(
            f"{path}: agreements_dir {config.agreements_dir} is not a directory: point it at "
            "the folder of agreement YAML files"
        )
