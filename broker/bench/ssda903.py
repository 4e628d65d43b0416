"""Benchmark of the SSDA903 connector: rows per second of parse+map against a plain CSV read.

    python -m broker.bench.ssda903 [PATH] [--rows 200000] [--seed 903]

PATH is a folder of SSDA903 CSV tables (or an XML file); without it a synthetic input of
`--rows` Episodes+Missing rows is generated in a temporary folder. The baseline reads and
parses the same CSV files with `csv.reader` and does nothing else; the connector run
validates, maps and produces every event (without signing or publishing). `run_benchmark`
returns the figures so that `broker publish` timings can be set beside them.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from connectors.council.ssda903 import read_ssda903
from connectors.council.ssda903.sources import find_tables
from connectors.council.ssda903.synthetic import generate


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Figures of one benchmark run (rows are data rows of all tables read)."""

    rows: int
    events: int
    baseline_seconds: float
    connector_seconds: float

    @property
    def baseline_rows_per_s(self) -> float:
        return self.rows / self.baseline_seconds if self.baseline_seconds else 0.0

    @property
    def connector_rows_per_s(self) -> float:
        return self.rows / self.connector_seconds if self.connector_seconds else 0.0

    @property
    def ratio(self) -> float:
        """Connector time over plain-read time (how many times slower than reading)."""
        return self.connector_seconds / self.baseline_seconds if self.baseline_seconds else 0.0


def plain_csv_read(path: Path) -> int:
    """Read and parse every table with `csv.reader`; return the data rows seen."""
    rows = 0
    for file in find_tables(path).values():
        with file.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for _ in reader:
                rows += 1
    return rows


def run_benchmark(path: Path, *, agency: str = "council.E00000000") -> BenchResult:
    """Time the plain read, then the connector's parse+map, over the same input."""
    started = time.perf_counter()
    baseline_rows = plain_csv_read(path) if path.is_dir() else 0
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    result = read_ssda903(path, agency=agency, id_secret=os.urandom(32).hex().encode())
    events = sum(1 for _ in result.events)
    connector = time.perf_counter() - started
    return BenchResult(
        rows=result.rows_total if not path.is_dir() else baseline_rows,
        events=events,
        baseline_seconds=baseline,
        connector_seconds=connector,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m broker.bench.ssda903")
    parser.add_argument("path", nargs="?", type=Path, help="SSDA903 CSV folder or XML file")
    parser.add_argument("--rows", type=int, default=200_000, help="synthetic Episodes+Missing")
    parser.add_argument("--seed", type=int, default=903)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ssda903-bench-") as scratch:
        path = args.path
        if path is None:
            path = Path(scratch)
            counts = generate(path, args.rows, seed=args.seed)
            print(f"generated {counts.episodes} episodes + {counts.missing} missing rows")
        figures = run_benchmark(path)
    print(f"rows read                   {figures.rows:>12,}")
    print(f"events produced             {figures.events:>12,}")
    print(f"plain csv read   rows/s     {figures.baseline_rows_per_s:>12,.0f}")
    print(f"parse+map        rows/s     {figures.connector_rows_per_s:>12,.0f}")
    print(f"parse+map / plain read time {figures.ratio:>12.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
