"""The webhook signature: an HMAC-SHA256 over a timestamp and the exact body bytes.

Header `X-Broker-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
The secret is shared out of band between the subscriber's operator and the receiving system.
A receiver recomputes the HMAC over the raw body it received (before parsing it), compares in
constant time, and refuses a timestamp more than `TOLERANCE_S` from its own clock, so a captured
request cannot be replayed later; within that window it drops repeats by `event_id` (also in
the `Idempotency-Key` header). `verify` is that check, for receivers written in Python; the
README gives it for any language.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Broker-Signature"
TOLERANCE_S = 300
MIN_SECRET_BYTES = 16


def signing_input(timestamp: int, body: bytes) -> bytes:
    return f"{timestamp}.".encode() + body


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The `X-Broker-Signature` value for `body`, sent at `timestamp` (now by default)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret, signing_input(timestamp, body), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: bytes,
    header: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> bool:
    """Whether `header` is a valid signature of `body` by a holder of `secret`, made within
    `tolerance_s` of `now`. Never raises on a malformed header: it is simply not valid."""
    if not header:
        return False
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    stamps = parts.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit() or len(stamps[0]) > 12:
        return False
    timestamp = int(stamps[0])
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = hmac.new(secret, signing_input(timestamp, body), hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))
