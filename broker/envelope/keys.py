"""Agency signing keys: Ed25519 key files, key ids, validity periods, rotation and revocation.

A private key is a PKCS8 PEM file `<agency>.<key_id>.key.pem` (optionally passphrase-protected);
its public half with its terms is `<agency>.<key_id>.pub.json`. Rotation is a new key id with
its own validity; revocation records the time from which signatures are refused.

Every public key states its roles (`ROLES`): a key verifies only signatures of a kind its
roles allow, so an issuer's key can never pass for the router's, nor the router's for an issuer's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError

from broker.envelope.errors import KeyFileError, VerificationError
from broker.ids import AGENCY_ID_RE
from broker.schemas.fields import format_time

KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

# The roles a key can hold (docs/wire-format.md, "Keys and roles").
ROLE_ISSUER = "issuer"  # signs issued envelopes (the agency owning the ingress topic)
ROLE_ROUTER = "router"  # signs derived sections of forwarded envelopes
ROLE_CHECKPOINT = "checkpoint"  # signs audit checkpoints (the router's)
ROLE_REGISTRY_ADMIN = "registry-admin"  # signs registry records
ROLES = (ROLE_ISSUER, ROLE_ROUTER, ROLE_CHECKPOINT, ROLE_REGISTRY_ADMIN)
# A key file without "roles" (written before roles existed) is an issuer key and nothing else.
LEGACY_ROLES = (ROLE_ISSUER,)
# What `broker keys generate` gives the router (scaffold, demo): one key for both of its kinds
# of signature, which domain-separation strings keep apart.
ROUTER_ROLES = (ROLE_ROUTER, ROLE_CHECKPOINT)
PRIVATE_SUFFIX = ".key.pem"
SIGNATURE_SIZE = 64
PUBLIC_SUFFIX = ".pub.json"


def check_agency_id(agency_id: str) -> str:
    """Return `agency_id` if it has the form kind.code (e.g. council.E09000033)."""
    if not AGENCY_ID_RE.fullmatch(agency_id):
        raise KeyFileError(
            f"agency id '{agency_id}' is not of the form kind.code, e.g. council.E09000033"
        )
    return agency_id


def check_key_id(key_id: str) -> str:
    """Return `key_id` if it is 1-64 letters, digits, '-' or '_'."""
    if not KEY_ID_RE.fullmatch(key_id):
        raise KeyFileError(f"key id '{key_id}' must be 1-64 letters, digits, '-' or '_'")
    return key_id


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """Default key id: the first 8 bytes of SHA-256 of the raw public key, in hex."""
    return hashlib.sha256(_raw(public_key)).hexdigest()[:16]


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def check_roles(roles: Iterable[str], source: str = "key") -> tuple[str, ...]:
    """Return `roles` as a sorted tuple if it is a non-empty set of known roles."""
    if not isinstance(roles, list | tuple | set | frozenset) or not all(
        isinstance(r, str) for r in roles
    ):
        raise KeyFileError(f"{source}: roles must be a list of role names")
    found = tuple(sorted(set(roles)))
    unknown = [r for r in found if r not in ROLES]
    if unknown or not found:
        raise KeyFileError(
            f"{source}: roles must be a non-empty list of {', '.join(ROLES)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return found


# Ed25519 verification as OpenSSL does it (docs/wire-format.md, "Ed25519") accepts a
# small-order public key, for which R = identity, S = 0 is a valid signature of about one message
# in eight, or of every message. Key files with such a key, or with a non-canonical encoding
# (y >= p), are refused. The small-order points, as listed by libsodium (compared without the
# sign bit): order 4 (y = 0), 1, 8, 8, 2 (y = p - 1), and the encodings y = p, p + 1.
_P = 2**255 - 19
_SMALL_ORDER = tuple(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
)


def check_public_key(raw: bytes, source: str = "public key") -> bytes:
    """Return `raw` (32 bytes) unless it is a non-canonical or small-order Ed25519 key."""
    unsigned = raw[:31] + bytes([raw[31] & 0x7F]) if len(raw) == 32 else raw
    if len(raw) != 32 or int.from_bytes(unsigned, "little") >= _P or unsigned in _SMALL_ORDER:
        raise KeyFileError(
            f"{source}: public_key is not a usable Ed25519 key (small-order or non-canonical); "
            "generate a new key with `broker keys generate`"
        )
    return raw


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise KeyFileError(f"{what} must carry a time zone (use UTC, e.g. 2026-01-01T00:00:00Z)")
    return value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _parse_time(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return _utc(datetime.fromisoformat(str(value)), what)
    except ValueError:
        raise KeyFileError(f"{what} is not an ISO 8601 time; fix the key file") from None


@dataclass(frozen=True, slots=True)
class PublicKeyInfo:
    """An agency's public key with its id, roles and terms: valid from, until, revoked at."""

    agency_id: str
    key_id: str
    public_key: Ed25519PublicKey
    valid_from: datetime
    valid_until: datetime | None = None
    revoked_at: datetime | None = None
    roles: tuple[str, ...] = LEGACY_ROLES
    # The raw 32 bytes libsodium verifies with (derived from `public_key`).
    _raw_public: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_raw_public", _raw(self.public_key))

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when `signature` is this key's Ed25519 signature of `data`.

        Verified by libsodium (PyNaCl), whose rules are stricter than OpenSSL's: it also
        refuses small-order and non-canonical `A` and `R` (docs/wire-format.md, "Ed25519").
        """
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            crypto_sign_open(signature + data, self._raw_public)
        except BadSignatureError:
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        """The `.pub.json` form (also what the registry.keys topic carries)."""
        pem = self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "agency": self.agency_id,
            "key_id": self.key_id,
            "algorithm": "Ed25519",
            "roles": list(self.roles),
            "public_key": base64.b64encode(_raw(self.public_key)).decode("ascii"),
            "public_key_pem": pem.decode("ascii"),
            "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until),
            "revoked_at": _iso(self.revoked_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "public key") -> PublicKeyInfo:
        """Read the `.pub.json` form; `source` names the file or record in errors."""
        try:
            if data.get("algorithm", "Ed25519") != "Ed25519":
                raise KeyFileError(f"{source}: algorithm must be Ed25519")
            raw = base64.b64decode(str(data["public_key"]), validate=True)
            public_key = Ed25519PublicKey.from_public_bytes(check_public_key(raw, source))
            valid_from = _parse_time(data["valid_from"], f"{source}: valid_from")
        except (KeyError, ValueError, TypeError):
            raise KeyFileError(
                f"{source}: needs agency, key_id, public_key (base64 Ed25519) and valid_from"
            ) from None
        if valid_from is None:
            raise KeyFileError(f"{source}: valid_from is required")
        roles = data.get("roles")
        return cls(
            agency_id=check_agency_id(str(data.get("agency", ""))),
            key_id=check_key_id(str(data.get("key_id", ""))),
            public_key=public_key,
            valid_from=valid_from,
            valid_until=_parse_time(data.get("valid_until"), f"{source}: valid_until"),
            revoked_at=_parse_time(data.get("revoked_at"), f"{source}: revoked_at"),
            roles=LEGACY_ROLES if roles is None else check_roles(roles, source),
        )

    def same_key(self, other: PublicKeyInfo) -> bool:
        """True when both carry the same public key bytes."""
        return _raw(self.public_key) == _raw(other.public_key)


class SigningKey:
    """An agency's Ed25519 private key with its id and terms; its text form hides the key."""

    __slots__ = (
        "_private",
        "_sodium_secret",
        "agency_id",
        "key_id",
        "roles",
        "valid_from",
        "valid_until",
    )

    def __init__(
        self,
        agency_id: str,
        key_id: str,
        private_key: Ed25519PrivateKey,
        *,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        roles: Iterable[str] = LEGACY_ROLES,
    ) -> None:
        self.agency_id = check_agency_id(agency_id)
        self.key_id = check_key_id(key_id)
        self._private = private_key
        # libsodium's 64-byte secret (seed and public key): Ed25519 signatures are
        # deterministic, so libsodium signs exactly the bytes OpenSSL would, faster.
        seed = private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self._sodium_secret = crypto_sign_seed_keypair(seed)[1]
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.roles = check_roles(roles)

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature of `data`."""
        return crypto_sign(data, self._sodium_secret)[:SIGNATURE_SIZE]

    def check_valid_at(self, at: datetime) -> None:
        """Refuse to sign outside the key's validity period (when known)."""
        if (self.valid_from is not None and at < self.valid_from) or (
            self.valid_until is not None and at >= self.valid_until
        ):
            raise KeyFileError(
                f"key {self.agency_id}/{self.key_id} is not valid at {_iso(at)}; "
                "generate a new key with `broker keys generate`"
            )

    def public_key_info(self) -> PublicKeyInfo:
        """The public half, with the same roles and terms (valid from the epoch when unknown)."""
        return PublicKeyInfo(
            agency_id=self.agency_id,
            key_id=self.key_id,
            public_key=self._private.public_key(),
            valid_from=self.valid_from or datetime(1970, 1, 1, tzinfo=UTC),
            valid_until=self.valid_until,
            roles=self.roles,
        )

    def __repr__(self) -> str:
        return f"SigningKey(agency_id={self.agency_id!r}, key_id={self.key_id!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("signing keys are not pickled; load them from their PEM file")


def generate_key(
    agency_id: str,
    out_dir: Path,
    *,
    key_id: str | None = None,
    passphrase: str | bytes | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    roles: Iterable[str] = (ROLE_ISSUER,),
) -> tuple[Path, Path]:
    """Write a new key pair to `out_dir`; return (private key path, public key path).

    `valid_from` defaults to now; `roles` to issuer. Existing files are never overwritten.
    """
    check_agency_id(agency_id)
    role_names = check_roles(roles, "--role")
    private_key = Ed25519PrivateKey.generate()
    key_id = check_key_id(key_id) if key_id is not None else key_id_for(private_key.public_key())
    start = (
        _utc(valid_from, "valid_from") if valid_from else datetime.now(UTC).replace(microsecond=0)
    )
    end = _utc(valid_until, "valid_until") if valid_until else None
    if end is not None and end <= start:
        raise KeyFileError("valid_until must be after valid_from; fix --valid-until")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{agency_id}.{key_id}"
    private_path = stem.with_name(stem.name + PRIVATE_SUFFIX)
    public_path = stem.with_name(stem.name + PUBLIC_SUFFIX)
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path} exists; choose another --key-id or --out directory")
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if passphrase:
        secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
        encryption = serialization.BestAvailableEncryption(secret)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    info = PublicKeyInfo(agency_id, key_id, private_key.public_key(), start, end, roles=role_names)
    public_path.write_text(json.dumps(info.to_json(), indent=2) + "\n", encoding="utf-8")
    return private_path, public_path


def signing_key_from_pem(
    pem: bytes,
    agency_id: str,
    key_id: str | None = None,
    *,
    passphrase: str | bytes | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> SigningKey:
    """A signing key from PEM bytes (a file or an environment variable)."""
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    try:
        private_key = serialization.load_pem_private_key(pem, password=secret or None)
    except (ValueError, TypeError):
        raise KeyFileError(
            f"cannot read the private key of {agency_id}: wrong passphrase or not a PEM key"
        ) from None
    if not isinstance(private_key, Ed25519PrivateKey):
        raise KeyFileError(f"the private key of {agency_id} is not Ed25519")
    return SigningKey(
        agency_id,
        key_id or key_id_for(private_key.public_key()),
        private_key,
        valid_from=valid_from,
        valid_until=valid_until,
    )


def load_signing_key(path: Path, passphrase: str | bytes | None = None) -> SigningKey:
    """Load `<agency>.<key_id>.key.pem`, with the terms of its `.pub.json` sibling if present."""
    path = Path(path)
    if not path.name.endswith(PRIVATE_SUFFIX):
        raise KeyFileError(f"{path}: expected a file named <agency>.<key_id>{PRIVATE_SUFFIX}")
    agency_id, _, key_id = path.name.removesuffix(PRIVATE_SUFFIX).rpartition(".")
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    key = signing_key_from_pem(pem, agency_id, key_id, passphrase=passphrase)
    public_path = path.with_name(path.name.removesuffix(PRIVATE_SUFFIX) + PUBLIC_SUFFIX)
    if public_path.exists():
        info = load_public_key(public_path)
        if not info.same_key(key.public_key_info()):
            raise KeyFileError(f"{public_path} does not hold the public half of {path}")
        key.valid_from, key.valid_until = info.valid_from, info.valid_until
        key.roles = info.roles
    return key


def load_public_key(path: Path) -> PublicKeyInfo:
    """Read one `.pub.json` file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise KeyFileError(f"{path}: not a readable JSON public key file") from None
    if not isinstance(data, dict):
        raise KeyFileError(f"{path}: expected a JSON object")
    return PublicKeyInfo.from_json(data, source=str(path))


class KeyRegistry:
    """Public keys of every agency (and router) by (agency id, key id), used by verification."""

    def __init__(self, keys: Iterable[PublicKeyInfo] = ()) -> None:
        self._keys: dict[tuple[str, str], PublicKeyInfo] = {}
        for key in keys:
            self.add(key)

    @classmethod
    def from_dir(cls, directory: Path) -> KeyRegistry:
        """Load every `*.pub.json` in `directory`."""
        directory = Path(directory)
        if not directory.is_dir():
            raise KeyFileError(f"{directory} is not a directory of .pub.json key files")
        return cls(load_public_key(p) for p in sorted(directory.glob("*" + PUBLIC_SUFFIX)))

    def add(self, key: PublicKeyInfo) -> None:
        """Add a key (rotation adds a new key id); re-adding the same key updates its terms."""
        existing = self._keys.get((key.agency_id, key.key_id))
        if existing is not None and not existing.same_key(key):
            raise KeyFileError(
                f"key id {key.agency_id}/{key.key_id} is already used by another key; "
                "give the new key its own --key-id"
            )
        self._keys[(key.agency_id, key.key_id)] = key

    def revoke(self, agency_id: str, key_id: str, at: datetime) -> None:
        """Refuse signatures by this key issued at or after `at`."""
        key = self._keys.get((agency_id, key_id))
        if key is None:
            raise KeyFileError(f"no key {agency_id}/{key_id} to revoke; check the ids")
        self._keys[(agency_id, key_id)] = replace(key, revoked_at=_utc(at, "revocation time"))

    def get(self, agency_id: str, key_id: str) -> PublicKeyInfo | None:
        """The key `(agency_id, key_id)` with its current terms, if known."""
        return self._keys.get((agency_id, key_id))

    def keys(self, agency_id: str | None = None) -> list[PublicKeyInfo]:
        """All keys, or those of one agency."""
        return [k for k in self._keys.values() if agency_id in (None, k.agency_id)]

    def lookup(self, agency_id: str, key_id: str, at: datetime, *, role: str) -> PublicKeyInfo:
        """The key of `agency_id` that may verify a signature of kind `role` judged at `at`,
        or a `VerificationError` (unknown_key, wrong_role, revoked_key, key_not_valid).

        `at` is the time the broker received the signed record (see docs/wire-format.md),
        never a time the signer wrote into it."""
        key = self._keys.get((agency_id, key_id))
        if key is None:
            raise VerificationError("unknown_key", f"no key {agency_id}/{key_id} in the registry")
        if role not in key.roles:
            raise VerificationError(
                "wrong_role", f"key {agency_id}/{key_id} is not a {role} key"
            )
        if key.revoked_at is not None and at >= key.revoked_at:
            raise VerificationError(
                "revoked_key", f"key {agency_id}/{key_id} was revoked at {_iso(key.revoked_at)}"
            )
        if at < key.valid_from or (key.valid_until is not None and at >= key.valid_until):
            raise VerificationError(
                "key_not_valid", f"key {agency_id}/{key_id} is not valid at {_iso(at)}"
            )
        return key
