"""In-memory benchmark of audit verification (the pure part of ``broker bench audit``)."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit.chain import ChainState, chain_id
from broker.audit.checkpoint import Checkpoint
from broker.audit.record import Outcome, RecipientDecision
from broker.audit.verify import verify_log

_FIELDS = ("age_band", "missing_type", "risk_level", "sex", "trafficking_concern", "uasc")
_WITHHELD = ("dob", "first_name", "last_name", "physical_description", "placement_postcode")


def build_log(
    n: int, chains: int = 4, checkpoint_every: int = 1000
) -> tuple[list[tuple[int, int, bytes]], list[tuple[int, int, bytes]], Ed25519PrivateKey]:
    """``n`` realistic decision records over ``chains`` chains (one audit partition), with
    checkpoints every ``checkpoint_every`` records of a chain and one at the end of each."""
    key = Ed25519PrivateKey.generate()
    states = [ChainState(chain_id("ingress.council.E09000033", p)) for p in range(chains)]
    last_cp: dict[str, Checkpoint] = {}
    decisions: list[tuple[int, int, bytes]] = []
    checkpoints: list[tuple[int, int, bytes]] = []
    t0 = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)

    def checkpoint(state: ChainState, at: datetime) -> None:
        cp = Checkpoint.for_chain(
            state,
            previous=last_cp.get(state.chain),
            issued_at=at,
            private_key=key,
            agency="router.national",
            key_id="router-2026",
        )
        last_cp[state.chain] = cp
        checkpoints.append((0, len(checkpoints), cp.to_bytes()))

    for i in range(n):
        p = i % chains
        state = states[p]
        at = t0 + timedelta(milliseconds=i)
        record = state.append(
            ingress_topic="ingress.council.E09000033",
            ingress_partition=p,
            ingress_offset=state.next_seq,
            decided_at=at,
            occurred_at=at - timedelta(seconds=3),
            outcome=Outcome.FORWARDED,
            event_id=f"evt-{i:08d}",
            issuer="council.E09000033",
            event_type="child.missing.started",
            subject=f"subj-{i % 5000:05d}",
            digests=[hashlib.sha256(f"{i}/{k}".encode()).hexdigest() for k in range(11)],
            recipients=[
                RecipientDecision("police.met", _FIELDS, _WITHHELD, (), ("met-missing@3",)),
                RecipientDecision("nrm.sca", _FIELDS[:3], _WITHHELD + _FIELDS[3:], (), ("n@1",)),
            ],
        )
        decisions.append((0, i, record.to_bytes()))
        if state.next_seq % checkpoint_every == 0:
            checkpoint(state, at)
    for state in states:
        if state.chain not in last_cp or last_cp[state.chain].tree_size != state.next_seq:
            checkpoint(state, t0 + timedelta(milliseconds=n))
    return decisions, checkpoints, key


def bench_verify(n: int = 100_000, chains: int = 4, checkpoint_every: int = 1000) -> dict[str, Any]:
    """Build ``n`` decisions in memory, then time full verification (chains, Merkle roots,
    checkpoint signatures and consistency proofs). Returns figures for printing."""
    start = time.perf_counter()
    decisions, checkpoints, key = build_log(n, chains, checkpoint_every)
    built = time.perf_counter() - start
    start = time.perf_counter()
    report = verify_log(decisions, checkpoints, key.public_key())
    verify_seconds = time.perf_counter() - start
    return {
        "records": n,
        "chains": chains,
        "checkpoints": len(checkpoints),
        "mean_record_bytes": round(sum(len(d) for _, _, d in decisions) / max(n, 1), 1),
        "build_seconds": round(built, 3),
        "verify_seconds": round(verify_seconds, 3),
        "verify_records_per_second": round(n / verify_seconds) if verify_seconds else None,
        "findings": len(report.findings),
    }


if __name__ == "__main__":  # pragma: no cover - manual use: python -m broker.audit.bench
    import json
    import sys

    print(json.dumps(bench_verify(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000), indent=2))
