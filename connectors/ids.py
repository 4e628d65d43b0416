"""Keyed event ids: stable for one agency's source facts, unguessable without its secret.

A connector derives an event's `event_id` from the fact it records (agency, table, child,
date...; or the referral id), so re-reading the same return publishes the same ids and the
router drops repeats. The id is signed in the header and reaches every recipient, so it must not
be computable from public inputs: a recipient could otherwise try every candidate child id and
link what it receives back to the agency's own ids. Each publishing agency therefore keys its
ids with its own secret (`agencies[].event_id_secret_file`, kept apart from its signing key so
that a key rotation leaves the ids of re-published facts unchanged):

    mac = HMAC-SHA256(secret, "\\x1f".join((agency, *parts)).encode("utf-8"))
    event_id = the UUID of mac[:16] with the version set to 4 and the variant to RFC 4122

`secret` is the secret file's content with surrounding whitespace removed (the scaffold writes
64 hex digits: 32 random bytes). The id reads like a random UUIDv4; only the holder of the
secret can reproduce it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from broker.errors import BrokerError

if TYPE_CHECKING:
    from broker.config import BrokerConfig

SEP = "\x1f"
MIN_SECRET_BYTES = 32
SECRET_FIELD = "event_id_secret_file"


def keyed_event_id(secret: bytes, *parts: str) -> str:
    """The event id of the fact named by `parts`, keyed by `secret` (format: module docstring)."""
    mac = hmac.new(secret, SEP.join(parts).encode("utf-8"), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=mac[:16], version=4))


@dataclass(frozen=True, slots=True)
class EventIds:
    """Makes one agency's keyed event ids: `ids(*parts)` is `keyed_event_id(secret, agency,
    *parts)`. Refuses a missing or short secret, so ids are never silently unkeyed."""

    agency: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the event id secret of {self.agency} must be at least {MIN_SECRET_BYTES} "
                "bytes (the scaffold writes 32 random bytes as hex)"
            )

    def __call__(self, *parts: str) -> str:
        return keyed_event_id(self.secret, self.agency, *parts)


def _fix(agency_id: str, path: Path | None = None) -> str:
    target = path or f"private/{agency_id}.event-id.secret"
    named = "" if path else f" and name it in the agency's `{SECRET_FIELD}`"
    return (
        f"create one with `umask 077; openssl rand -hex 32 > {target}`{named} (then keep it: a "
        "new secret changes every event id, so a re-run would publish its facts again)"
    )


def _config_error(message: str) -> BrokerError:
    from broker.config import ConfigError  # not at import: the mapping stays free of pydantic

    return ConfigError(message)


def read_event_id_secret(path: Path, agency_id: str) -> bytes:
    """Read an agency's event id secret; refuse a file others may read, as for credentials."""
    try:
        mode = path.stat().st_mode
    except OSError:
        raise _config_error(
            f"the event id secret of {agency_id}, {path}, does not exist: {_fix(agency_id, path)}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise _config_error(
            f"the event id secret {path} can be read by other users "
            f"(mode {stat.S_IMODE(mode):o}): run `chmod 600 {path}`"
        )
    try:
        with open(path, "rb") as handle:
            secret = handle.read().strip()
    except OSError as exc:
        raise _config_error(
            f"cannot read the event id secret {path} ({os.strerror(exc.errno or 0)}): "
            "check its owner and mode (0600)"
        ) from None
    if len(secret) < MIN_SECRET_BYTES:
        raise _config_error(
            f"the event id secret {path} is shorter than {MIN_SECRET_BYTES} bytes: "
            f"{_fix(agency_id, path)}"
        )
    return secret


def event_ids_for(config: BrokerConfig, agency_id: str) -> EventIds:
    """The keyed event ids of `agency_id` from the config; a clear `ConfigError` without one."""
    agency = config.agency(agency_id)
    if agency.event_id_secret_file is None:
        raise _config_error(
            f"{config.source}: agency {agency_id} has no `{SECRET_FIELD}`, needed to derive "
            f"its event ids: {_fix(agency_id)}"
        )
    return EventIds(agency_id, read_event_id_secret(agency.event_id_secret_file, agency_id))
