"""Shared builders for audit tests: small decision logs with realistic (non-personal) content."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from broker.audit.chain import ChainState, chain_id
from broker.audit.record import DecisionRecord, Outcome, RecipientDecision

T0 = datetime(2026, 11, 24, 18, 5, tzinfo=UTC)
TOPIC = "ingress.council.E09000033"


def make_chain(n: int, partition: int = 0, state: ChainState | None = None) -> list[DecisionRecord]:
    """``n`` chained records of one ingress partition."""
    state = state or ChainState(chain_id(TOPIC, partition))
    out = []
    for i in range(n):
        out.append(
            state.append(
                ingress_topic=TOPIC,
                ingress_partition=partition,
                ingress_offset=100 + i,
                decided_at=T0 + timedelta(seconds=i),
                occurred_at=T0,
                outcome=Outcome.FORWARDED if i % 3 else Outcome.DENIED,
                event_id=f"evt-{partition}-{i}",
                issuer="council.E09000033",
                event_type="child.missing.started",
                subject=f"LA-CHILD-{i % 4}",
                digests=[f"{i:02x}" * 32, "ab" * 32],
                recipients=[
                    RecipientDecision(
                        "police.met",
                        ("risk_level", "missing_type"),
                        ("dob",),
                        (),
                        ("met-missing@2",),
                    )
                ],
            )
        )
    return out


def as_log(records: list[DecisionRecord], first_offset: int = 0) -> list[tuple[int, bytes]]:
    return [(first_offset + i, r.to_bytes()) for i, r in enumerate(records)]
