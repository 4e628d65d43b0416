"""Signed envelopes with selective disclosure: issue (connector), disclose (router), verify.

The mechanism of SD-JWT (RFC 9901) applied to Avro events; docs/wire-format.md is the spec.
"""

from broker.envelope.errors import (
    DisclosureError,
    EnvelopeError,
    EventFormatError,
    KeyFileError,
    ReasonCode,
    VerificationError,
)
from broker.envelope.holder import disclose
from broker.envelope.issuer import issue
from broker.envelope.keys import (
    KeyRegistry,
    PublicKeyInfo,
    SigningKey,
    generate_key,
    load_public_key,
    load_signing_key,
    signing_key_from_pem,
)
from broker.envelope.model import (
    Derived,
    Disclosure,
    Envelope,
    ForwardedEnvelope,
    Header,
    SubjectDisclosure,
    VerifiedEvent,
)
from broker.envelope.verifier import verify_envelope, verify_forwarded

__all__ = [
    "Derived",
    "Disclosure",
    "DisclosureError",
    "Envelope",
    "EnvelopeError",
    "EventFormatError",
    "ForwardedEnvelope",
    "Header",
    "KeyFileError",
    "KeyRegistry",
    "PublicKeyInfo",
    "ReasonCode",
    "SigningKey",
    "SubjectDisclosure",
    "VerificationError",
    "VerifiedEvent",
    "disclose",
    "generate_key",
    "issue",
    "load_public_key",
    "load_signing_key",
    "signing_key_from_pem",
    "verify_envelope",
    "verify_forwarded",
]
