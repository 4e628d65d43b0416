"""Which Ed25519 verification rules apply (docs/wire-format.md, "Ed25519"), pinned.

The first tests pin what pyca/cryptography (OpenSSL) does: cofactorless, S must be below the group
order L, R is compared as bytes (so a non-canonical R fails), and public keys of small order or
with a non-canonical encoding are NOT refused. The key file loader refuses those keys. The broker
itself verifies through libsodium (PyNaCl), which refuses them too: the last tests pin that.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.envelope import KeyFileError, PublicKeyInfo, SigningKey
from broker.envelope.keys import check_public_key

L = 2**252 + 27742317777372353535851937790883648493
P = 2**255 - 19
IDENTITY = (1).to_bytes(32, "little")
SMALL_ORDER = {
    "identity (order 1)": IDENTITY,
    "y = 0 (order 4)": bytes(32),
    "y = p - 1 (order 2)": (P - 1).to_bytes(32, "little"),
    "order 8": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "order 8, other": bytes.fromhex(
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
    ),
    "identity as y = p + 1 (non-canonical)": (P + 1).to_bytes(32, "little"),
    "y = 0 as y = p (non-canonical)": P.to_bytes(32, "little"),
}


def _accepts(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def test_s_at_or_above_the_group_order_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    public = key.public_key().public_bytes(*raw)
    signature = key.sign(b"m")
    s = int.from_bytes(signature[32:], "little")
    assert _accepts(public, signature, b"m")
    assert not _accepts(public, signature[:32] + (s + L).to_bytes(32, "little"), b"m")


def test_r_is_compared_as_bytes() -> None:
    # With A the identity, R = identity and S = 0 satisfy the equation; written non-canonically
    # (y = p + 1) R no longer matches the recomputed encoding.
    assert _accepts(IDENTITY, IDENTITY + bytes(32), b"any message")
    assert not _accepts(IDENTITY, (P + 1).to_bytes(32, "little") + bytes(32), b"any message")


@pytest.mark.parametrize("name", sorted(SMALL_ORDER))
def test_small_order_keys_forge_with_the_library_but_are_refused_in_key_files(name: str) -> None:
    raw = SMALL_ORDER[name]
    # The library accepts R = identity, S = 0 under this key for some message: a forgery anyone
    # can make (for an order-8 key, about one message in eight).
    forged = [m for m in range(64) if _accepts(raw, IDENTITY + bytes(32), m.to_bytes(2, "big"))]
    assert forged, name
    record = {
        "agency": "police.met",
        "key_id": "weak",
        "algorithm": "Ed25519",
        "public_key": base64.b64encode(raw).decode(),
        "valid_from": "2026-01-01T00:00:00Z",
    }
    with pytest.raises(KeyFileError, match="small-order or non-canonical"):
        PublicKeyInfo.from_json(json.loads(json.dumps(record)), source="weak.pub.json")
    # Also with the sign bit set (the same point's other encoding or a non-point).
    flipped = raw[:31] + bytes([raw[31] | 0x80])
    with pytest.raises(KeyFileError):
        check_public_key(flipped)


def test_ordinary_keys_pass_the_check() -> None:
    for _ in range(20):
        raw = Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        assert check_public_key(raw) == raw


# -- the broker's own verification: libsodium (PyNaCl), stricter than the library above ---------


def _info(raw: bytes) -> PublicKeyInfo:
    """A key built around the loader's checks, to see what verification alone does."""
    return PublicKeyInfo(
        agency_id="police.met",
        key_id="weak",
        public_key=Ed25519PublicKey.from_public_bytes(raw),
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize("name", sorted(SMALL_ORDER))
def test_the_broker_refuses_the_small_order_forgeries_the_library_accepts(name: str) -> None:
    raw = SMALL_ORDER[name]
    forged = [m for m in range(64) if _accepts(raw, IDENTITY + bytes(32), m.to_bytes(2, "big"))]
    assert forged, name  # OpenSSL accepts these...
    info = _info(raw)
    for m in forged:  # ...libsodium does not, even had such a key got past the loader
        assert not info.verify(IDENTITY + bytes(32), m.to_bytes(2, "big")), name


def test_the_broker_refuses_s_above_the_order_and_a_non_canonical_r() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    info = _info(public)
    signature = key.sign(b"m")
    s = int.from_bytes(signature[32:], "little")
    assert info.verify(signature, b"m")
    assert not info.verify(signature[:32] + (s + L).to_bytes(32, "little"), b"m")
    assert not info.verify(signature[:63], b"m")  # a short signature is not read into the message
    assert not info.verify(signature + b"\x00", b"m")


def test_libsodium_signs_the_same_bytes_as_openssl() -> None:
    # Ed25519 is deterministic: the golden vectors stay valid whichever library signs.
    private = Ed25519PrivateKey.generate()
    key = SigningKey("police.met", "k1", private, roles=("issuer",))
    for message in (b"", b"m", bytes(range(256)) * 8):
        assert key.sign(message) == private.sign(message)
