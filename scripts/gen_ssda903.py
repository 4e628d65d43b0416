#!/usr/bin/env python3
"""Generate synthetic SSDA903 CSV tables (Header, Episodes, Missing, UASC) for load tests.

    python scripts/gen_ssda903.py OUT_DIR [--rows 200000] [--seed 903] [--missing-share 0.15]

`--rows` counts Episodes plus Missing rows. The same seed always writes the same files.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.council.ssda903.synthetic import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("out", type=Path, help="folder to write the four CSV tables into")
    parser.add_argument("--rows", type=int, default=200_000, help="Episodes + Missing rows")
    parser.add_argument("--seed", type=int, default=903)
    parser.add_argument("--missing-share", type=float, default=0.15)
    parser.add_argument("--sex-coding", choices=("numeric", "letters"), default="numeric")
    args = parser.parse_args(argv)
    if args.rows < 0 or not 0.0 <= args.missing_share <= 1.0:
        parser.error("--rows must be >= 0 and --missing-share between 0 and 1")
    started = time.perf_counter()
    counts = generate(
        args.out,
        args.rows,
        seed=args.seed,
        missing_share=args.missing_share,
        sex_coding=args.sex_coding,
    )
    took = time.perf_counter() - started
    print(
        f"wrote {args.out}: {counts.episodes} episodes, {counts.missing} missing, "
        f"{counts.header} header, {counts.uasc} UASC rows in {took:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
