"""The negative vectors in tests/vectors/envelope-v1-negative.json: each case is refused with
exactly its reason code (or, for the valid controls, verifies).

The keys are read from their `.pub.json` form with the key-file loader, so the roles rule
(a file without roles is an issuer key) is part of what the vectors check.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.envelope import KeyRegistry, PublicKeyInfo, VerificationError
from broker.envelope.verifier import DEFAULT_MAX_SKEW, verify_envelope, verify_forwarded

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "envelope-v1-negative.json"
DOCUMENT: dict[str, Any] = json.loads(VECTORS.read_text())
CASES = {case["name"]: case for case in DOCUMENT["cases"]}


def _keys() -> KeyRegistry:
    return KeyRegistry(
        PublicKeyInfo.from_json(key, source=f"vector key {key['key_id']}")
        for key in DOCUMENT["keys"]
    )


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


def _verify(case: dict[str, Any]) -> str | None:
    """The reason code the implementation gives for `case` (None: it verifies)."""
    data = bytes.fromhex(case["hex"])
    received_at = _time(case.get("received_at"))
    skew = timedelta(seconds=case["max_skew_s"]) if "max_skew_s" in case else DEFAULT_MAX_SKEW
    try:
        if case["kind"] == "envelope":
            verify_envelope(data, _keys(), received_at=received_at, max_skew=skew)
        else:
            verify_forwarded(
                data,
                _keys(),
                router=case["router"],
                recipient=case.get("recipient"),
                received_at=received_at,
                max_skew=skew,
            )
    except VerificationError as exc:
        return exc.code
    return None


def test_the_file_has_controls_and_many_refusals() -> None:
    reasons = [case["reason"] for case in CASES.values()]
    assert reasons.count(None) >= 3
    assert {"non_canonical", "wrong_role", "wrong_router", "clock_skew", "revoked_key"} <= set(
        reasons
    )
    assert len(CASES) == len(DOCUMENT["cases"])  # names are unique


@pytest.mark.parametrize("name", list(CASES))
def test_negative_vector(name: str) -> None:
    case = CASES[name]
    assert _verify(case) == case["reason"], case["description"]
