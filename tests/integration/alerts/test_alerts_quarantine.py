"""A feed record the alerts service cannot verify goes to quarantine with its reason code, in the
same transaction as the offsets that pass it; the rest of the feed is still processed.

Only the router may write `feed.<alerts>`; the forgeries are written as the operator (an insider
with the cluster's super user, or a router key that leaked), which is what the check is for.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from alerts_helpers import (
    MET,
    T0,
    WESTMINSTER,
    AlertsDeployment,
    child_event,
    running,
    wait_applied,
    wait_for_alerts,
    wait_until,
)
from router_helpers import produce_raw, publish, read_topic, signed

from broker.alerts.service import AlertsService, ManualClock
from broker.config import TOPIC_QUARANTINE, topic_feed
from broker.envelope import ForwardedEnvelope, SigningKey, disclose, load_signing_key
from broker.schemas import SchemaRegistry

pytestmark = pytest.mark.integration

# A forger writes what it likes in the fields a rule reads and in the header strings.
PERSONAL = ("C-FORGED-7731", "Ana Forgedname")


def _forwards(dep: AlertsDeployment) -> dict[str, bytes]:
    """Records no router of this deployment forwarded, each failing one check."""
    me = dep.id("alerts.main")
    evt = child_event(dep, "child.missing.started", PERSONAL[0], "forged", 0,
                      trafficking_concern=True, uasc=True, first_name=PERSONAL[1])
    evt["subject"] = PERSONAL[1]
    envelope = signed(dep, WESTMINSTER, evt)
    fields = ["la_child_id", "missing_type", "risk_level", "trafficking_concern", "uasc"]
    router_key = load_signing_key(dep.config.router.signing_key)

    def forward(key: SigningKey) -> ForwardedEnvelope:
        return disclose(envelope, fields, derived={}, agreements=["dsa.forged@1"],
                        recipient=me, router_key=key, now=datetime.now(UTC))

    genuine = forward(router_key)
    registry = SchemaRegistry.default()
    # Another child's id in place of the disclosed one, the router's signature left as it was.
    other = registry.encode_value("child.missing.started", "la_child_id", "C-OTHER")
    tampered = dataclasses.replace(genuine, disclosures=tuple(
        d._replace(value=other) if d.name == "la_child_id" else d for d in genuine.disclosures))
    whole = genuine.to_bytes(registry)
    return {
        "garbage": b"\x00\x01 not an envelope at all",
        # Signed as a forward, but with the council's issuer key, not a router-role key.
        "council_key": forward(dep.key(WESTMINSTER)).to_bytes(registry),
        "tampered_disclosure": tampered.to_bytes(registry),
        "unknown_schema": whole[:2] + bytes(8) + whole[10:],
    }


def _quarantined(service: AlertsService, reason: str) -> float:
    return service.metrics.quarantined.labels(reason)._value.get()  # type: ignore[no-any-return]


def test_a_forged_feed_record_is_quarantined_and_the_rest_still_raises(
    alerts_deployment: AlertsDeployment,
) -> None:
    dep = alerts_deployment
    feed = topic_feed(dep.id("alerts.main"))
    forged = _forwards(dep)
    # What the service's own verifier says of each (the codes the quarantine must carry).
    from broker.feed import FeedVerifier

    verifier = FeedVerifier.from_config(dep.config, dep.id("alerts.main"))
    expected = {name: verifier.verify(0, 0, value).error for name, value in forged.items()}
    assert all(error is not None for error in expected.values())
    codes = {name: error.code for name, error in expected.items() if error is not None}
    assert codes["garbage"] == "bad_encoding"
    assert codes["unknown_schema"] == "unknown_schema"
    assert codes["tampered_disclosure"] == "digest_mismatch"
    assert codes["council_key"] in {"wrong_router", "bad_derived_signature", "wrong_role"}

    clock = ManualClock(T0)
    with running(dep, clock) as service:
        produce_raw(dep, feed, [(name.encode(), value) for name, value in forged.items()])
        produce_raw(dep, feed, [(b"tombstone", None)])
        publish(dep, WESTMINSTER, [
            child_event(dep, "child.missing.started", "C-GOOD", "g", 0, trafficking_concern=True),
        ])
        wait_applied(service, 1)
        alerts = wait_for_alerts(dep, MET, 1, child="C-GOOD")
        wait_until(lambda: sum(_quarantined(service, c) for c in {*codes.values()})
                   >= len(forged) + 1, what="every forged record quarantined")
    assert [a["fields"]["rule"].split("@")[0] for a in alerts] == ["trafficked-child-missing"]

    records = read_topic(dep, TOPIC_QUARANTINE, key_prefixes=[f"{feed}/"])
    by_value = {r.value: r for r in records}
    assert len(records) == len(forged) + 1  # nothing twice, nothing else
    for name, value in forged.items():
        record = by_value[value]  # the original bytes are kept for an investigator
        headers = dict(record.headers)
        assert headers["reason"].decode() == codes[name]
        detail = json.loads(headers["detail"])
        assert detail["reason"] == codes[name] and detail["topic"] == feed
        assert record.key == f"{feed}/{detail['partition']}/{detail['offset']}".encode()
        # No personal value in the reason or the detail (only in the kept original bytes).
        for text in PERSONAL:
            assert text not in headers["detail"].decode() and text not in detail["detail"]
    assert dict(by_value[None].headers)["reason"] == b"bad_encoding"  # the tombstone
