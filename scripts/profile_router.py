#!/usr/bin/env python3
"""Where the router's CPU goes while it routes on a real Kafka (issue 19: "the profile that shows
why"), sampled by py-spy so that the routing runs at full speed beside a busy Kafka.

    python scripts/profile_router.py [--events 8000] [--seconds 10] [--py-spy PATH]

Starts the benchmarks' secured local Kafka, publishes `--events` signed events, routes them in
this process and, once routing is under way, samples it with py-spy for `--seconds` (200 Hz, all
threads). Prints each thread's share of the samples, then the share of the routing steps
(inclusive), then the functions the samples ended in. py-spy is not a dependency of the project:
install it anywhere (`python3 -m venv /tmp/spy && /tmp/spy/bin/pip install py-spy`) and name it
with `--py-spy` unless it is on PATH. It needs to be allowed to read this process (root, or
ptrace allowed).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker.bench import bench_kafka
from broker.bench import router as bench_router
from broker.router.service import RouterService

_STEPS = (
    "RouterCore.route", "check_ingress", "Envelope.from_bytes", "verify_envelope",
    "decode_disclosed", "AgreementSet.decide", "disclose", "ForwardedEnvelope.to_bytes",
    "ChainState.append", "TransactionalProducer.send", "KafkaConsumer.poll",
    "TransactionalProducer.commit", "TransactionalProducer.send_offsets",
)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="the py-spy program")
    args = parser.parse_args()
    if not args.py_spy:
        print("py-spy not found: install it (see this script's help) and pass --py-spy")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        samples = scratch / "samples.txt"
        with bench_kafka(None, scratch / "kafka", secure=True) as cluster:
            deployment = bench_router._Deployment.make(cluster, scratch / "deployment", 3)
            bench_router._publish_presigned(deployment, args.events)
            service = RouterService(deployment.config)
            thread = threading.Thread(target=service.run, daemon=True)
            thread.start()
            while service.stats.records < min(200, args.events) and thread.is_alive():
                time.sleep(0.01)
            before, cpu = service.stats.records, time.process_time()
            spy = subprocess.run(
                [args.py_spy, "record", "--pid", str(os.getpid()), "--rate", "200",
                 "--format", "raw", "--output", str(samples), "--threads", "--nonblocking",
                 "--duration", str(int(args.seconds))],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            routed = service.stats.records - before
            cpu = time.process_time() - cpu
            service.stop()
            thread.join()
        if spy.returncode != 0 or not samples.is_file():
            print(f"py-spy failed ({spy.returncode}): {spy.stderr.strip()[-500:]}")
            return 1
        print(f"{routed} events routed while sampled; this process: "
              f"{cpu / max(routed, 1) * 1e6:.0f} µs CPU per event")  # fmt: skip
        _report(samples.read_text().splitlines())
    return 0


def _report(lines: list[str]) -> None:
    threads: collections.Counter[str] = collections.Counter()
    steps: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames, n = stack.split(";"), int(count)
        total += n
        threads[re.sub(r" \(\d+\)|\(\d+\)", "", frames[0])] += n
        names = {frame.split(" (")[0] for frame in frames[1:]}
        for step in _STEPS:
            if step in names:
                steps[step] += n
        leaves[re.sub(r"\(.*/(site-packages|broker)/", "(", frames[-1])] += n
    if not total:
        print("no samples")
        return
    print(f"{total} samples")
    for title, counter, limit in (("threads", threads, 8), ("routing steps (inclusive)", steps,
                                  len(_STEPS)), ("where the samples ended", leaves, 25)):
        print(f"-- {title}")
        for name, n in counter.most_common(limit):
            print(f"  {n / total * 100:5.1f}%  {name}")


if __name__ == "__main__":
    sys.exit(main())
