#!/usr/bin/env python3
"""Instructions per call of the router's hot steps, counted by valgrind (callgrind), not timed.

    python scripts/count_instructions.py [route] [verify] [decode] [bare] [values]

On this shared 2-core machine a timed A/B of the same code varies by 30% from run to run; the
instructions a call executes vary by under 1%. So a change to the routing core is judged
here, and then timed by the `broker bench` commands (whose ratios are the goals). Each target is
run under callgrind twice, with 50 and with 250 calls after a warm-up, and the difference is
divided by 200, so start-up and imports cancel out:

- `route`: `RouterCore.route` on a `child.missing.started` (no Kafka): verify, decide, two
  disclosures, the audit record;
- `verify`: `verify_envelope` from bytes (the router's ingress check); `decode`:
  `Envelope.from_bytes`; `bare`: one Ed25519 verification (the last two are its floor);
- `values`: `WriterSchema.decode_values` on the event's 24 disclosed values.

valgrind is not a dependency of the project (`apt-get install valgrind`). The events are signed
once, before either run, so both runs route the same bytes.
"""

from __future__ import annotations

import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = ("route", "verify", "decode", "bare", "values")
_FEW, _MANY = 50, 250


def _prepare(directory: Path) -> Path:
    """A deployment (no Kafka needed) and enough signed events for the larger run."""
    from broker.bench import router as bench_router
    from broker.config import load_config
    from broker.envelope import issue
    from broker.kafka.local import ClusterAccess
    from broker.publish import agency_key
    from broker.router.service import build_core

    config_path, ids = bench_router._deployment(directory, ClusterAccess("127.0.0.1:9"), 3)
    config = load_config(config_path)
    core = build_core(config)
    issuer = ids[bench_router._WESTMINSTER]
    key = agency_key(config, issuer)
    values = [
        issue(bench_router._event(n, "count"), issuer=issuer, key=key, registry=core.registry)
        .to_bytes(core.registry)
        for n in range(_MANY + 1)
    ]
    received = int(time.time() * 1000)  # every run judges the events at this receipt time
    state = directory / "events.pickle"
    state.write_bytes(pickle.dumps((str(config_path), issuer, values, received)))
    return state


def _run(state: Path, target: str, calls: int) -> None:
    """The measured process: set up, one warm-up call, then `calls` calls of `target`."""
    from broker.audit.chain import chain_id
    from broker.config import load_config, topic_ingress
    from broker.envelope import Envelope, KeyRegistry, canonical, verify_envelope
    from broker.envelope.model import writer_for
    from broker.router.core import IngressRecord
    from broker.router.service import build_core
    from broker.router.state import PartitionState

    config_path, issuer, values, received = pickle.loads(state.read_bytes())
    config = load_config(Path(config_path))
    core = build_core(config)
    keys: KeyRegistry = core.keys
    envelope = Envelope.from_bytes(values[0], core.registry)
    topic = topic_ingress(issuer)
    partition = PartitionState.new(chain_id(topic, 0), config.router.dedup_policy)
    key = keys.lookup(issuer, envelope.header.key_id, envelope.header.issued_at, role="issuer")
    signed = canonical.issuer_signing_input(
        envelope.header.to_bytes(), envelope.digests, version=envelope.header.version
    )
    writer = writer_for(envelope.header, core.registry)
    pairs = [(d.name, d.value) for d in envelope.disclosures]
    offsets = iter(range(calls + 1))

    def route() -> None:
        offset = next(offsets)
        result = core.route(IngressRecord(topic, 0, offset, values[offset], received), partition)
        if result.outcome.value != "forwarded":
            raise SystemExit(f"event {offset} was {result.outcome.value}: {result.record.reason}")

    actions: dict[str, Callable[[], object]] = {
        "route": route,
        "verify": lambda: verify_envelope(values[0], keys, registry=core.registry),
        "decode": lambda: Envelope.from_bytes(values[0], core.registry),
        "bare": lambda: key.verify(envelope.signature, signed),
        "values": lambda: writer.decode_values(pairs),
    }
    for _ in range(calls + 1):
        actions[target]()


def _instructions(state: Path, target: str, calls: int) -> int:
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--run", str(state), target, str(calls)],
        capture_output=True, text=True, check=False,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{target}: the run under valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--run"]:
        _run(Path(argv[1]), argv[2], int(argv[3]))
        return 0
    targets = argv or list(TARGETS)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        print(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}",
              file=sys.stderr)
        return 2
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="broker-instructions-") as tmp:
        state = _prepare(Path(tmp))
        for target in targets:
            few, many = (_instructions(state, target, n) for n in (_FEW, _MANY))
            print(f"{target:>7}: {(many - few) / (_MANY - _FEW):,.0f} instructions per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
