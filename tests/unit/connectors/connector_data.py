"""Test data helpers: the shared sample paths, and CSV tables read with the stdlib only."""

from __future__ import annotations

import csv
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = REPO_ROOT.parent / "shared"
SSDA903_SAMPLE = SHARED / "data" / "ssda903-fake"
NRM_EXAMPLE = SHARED / "data" / "nrm" / "referral_payload_example.json"
AGENCY = "council.E09000033"
# The council's event id secret in unit tests (a deployment has one file per agency).
ID_SECRET = b"7c1d5e0a9b3f4c2e8d6a1b0f9e7c3d5a2b4f6e8d0c1a3b5d7f9e2c4a6b8d0f1e"


def read_table(folder: Path, name: str) -> list[dict[str, str]]:
    """Rows of a sample table with the stdlib csv module, plus their spreadsheet row number."""
    path = next(p for p in folder.iterdir() if p.stem.lower() == name.lower())
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        return [{**row, "_line": str(reader.line_num)} for row in reader]


def write_table(folder: Path, name: str, rows: list[dict[str, str]]) -> None:
    """Write rows (as read by `read_table`) back as a CSV table."""
    columns = [c for c in rows[0] if c != "_line"]
    with (folder / f"{name}.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
