"""SSDA903 backfill: rows/s of parse+map+sign+publish to a real Kafka, against parse+map only.

    broker bench ssda903 [PATH] [--rows 200000] [--seed 903] [--bootstrap HOST:PORT]

PATH is a folder of SSDA903 CSV tables (or an XML file); without it a synthetic return of
`--rows` Episodes+Missing rows is generated (`scripts/gen_ssda903.py`'s generator). Without
`--bootstrap` a local single-node Kafka is started in a temporary folder and stopped at the end.
Three timings over the same input, in one run: a plain `csv.reader` read, the connector's
parse+map (`read_ssda903`, no publishing), and the `broker connect council ssda903` path
(parse+map, sign each event, produce to `ingress.<agency>` and wait for every acknowledgement).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from broker.bench import bench_kafka
from broker.bench.ssda903 import plain_csv_read
from broker.config import load_config
from broker.kafka.operator import provision
from broker.publish import Publisher
from broker.scaffold import write_deployment
from connectors.cli import publish_stream
from connectors.council.ssda903 import read_ssda903
from connectors.council.ssda903.synthetic import generate
from connectors.ids import event_ids_for

AGENCY = "council.E00000000"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", type=Path, help="SSDA903 CSV folder or XML file")
    parser.add_argument("--rows", type=int, default=200_000, help="synthetic Episodes+Missing")
    parser.add_argument("--seed", type=int, default=903)
    parser.add_argument("--bootstrap", help="an existing Kafka (default: start a local one)")


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ssda903-publish-bench-") as tmp:
        scratch = Path(tmp)
        path = args.path
        if path is None:
            path = scratch / "return"
            counts = generate(path, args.rows, seed=args.seed)
            print(f"generated {counts.episodes:,} episodes + {counts.missing:,} missing rows")
        with bench_kafka(args.bootstrap, scratch / "kafka") as bootstrap:
            config = load_config(
                write_deployment(
                    scratch / "deployment",
                    bootstrap_servers=bootstrap,
                    agencies={AGENCY: "benchmark council"},
                )
            )
            provision(config)  # credentials, topics and ACLs on a secured cluster
            id_secret = event_ids_for(config, AGENCY).secret
            started = time.perf_counter()
            plain_rows = plain_csv_read(path) if path.is_dir() else 0
            plain = time.perf_counter() - started

            started = time.perf_counter()
            parsed = read_ssda903(path, agency=AGENCY, id_secret=id_secret)
            events = sum(1 for _ in parsed.events)
            parse = time.perf_counter() - started
            rows = parsed.rows_total

            publisher = Publisher(config, AGENCY)  # topic created before the clock starts
            try:
                started = time.perf_counter()
                result = read_ssda903(path, agency=AGENCY, id_secret=id_secret)
                report = publish_stream(publisher, result.events)
                publish = time.perf_counter() - started
            finally:
                publisher.close()
    print(
        f"rows read                       {rows:>12,}"
        + (f" (csv {plain_rows:,})" if plain_rows else "")
    )
    print(f"events published                {report.total_published:>12,} of {events:,}")
    if plain:
        print(f"plain csv read        rows/s    {plain_rows / plain:>12,.0f}")
    print(f"parse+map             rows/s    {rows / parse:>12,.0f}   ({parse:.1f} s)")
    print(f"parse+map+publish     rows/s    {rows / publish:>12,.0f}   ({publish:.1f} s)")
    print(f"                      events/s  {report.total_published / publish:>12,.0f}")
    print(f"publish / parse+map time        {publish / parse:>12.1f}x")
    if plain:
        print(f"publish / plain read time       {publish / plain:>12.1f}x")
    return 1 if report.rejected else 0
