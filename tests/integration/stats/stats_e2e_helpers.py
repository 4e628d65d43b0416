"""Helpers of the statistics end-to-end test: a private deployment, SSDA903 subsets, the reference.

Isolation on the session broker: topic names derive from agency ids, so the test's agencies are
the demo ids with a random suffix (`council.E09000033` -> `council.E09000033_3fa9c1d2`) and the
example agreements are rewritten for them. The councils' codes in the results carry the suffix;
`code()` gives it.
"""

from __future__ import annotations

import csv
import importlib
import re
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from broker.config import BrokerConfig, load_config
from broker.kafka.local import ClusterAccess
from broker.kafka.operator import provision
from broker.scaffold import DEMO_AGENCIES, EXAMPLE_AGREEMENTS, REPO_ROOT, write_deployment

SAMPLE = REPO_ROOT.parent / "shared" / "data" / "ssda903-fake"
WESTMINSTER = "council.E09000033"
LAMBETH = "council.E09000022"
STATS = "stats.national"

_ID_RE = re.compile(r"(?<![\w.])(" + "|".join(re.escape(a) for a in DEMO_AGENCIES) + r")(?![\w-])")


@dataclass(frozen=True)
class StatsDeployment:
    directory: Path
    config_path: Path
    suffix: str

    @property
    def config(self) -> BrokerConfig:
        return load_config(self.config_path)

    def id(self, base: str) -> str:
        return f"{base}_{self.suffix}"

    def code(self, base: str) -> str:
        """The council code the statistics carry for a demo council id."""
        return self.id(base).partition(".")[2]


def make_deployment(directory: Path, access: ClusterAccess) -> StatsDeployment:
    """Keys, config and the example agreements for agencies no other test uses."""
    suffix = uuid.uuid4().hex[:8]
    agreements = directory / "agreements"
    agreements.mkdir(parents=True)
    for source in sorted(EXAMPLE_AGREEMENTS.glob("*.yaml")):
        text = _ID_RE.sub(lambda m: f"{m.group(1)}_{suffix}", source.read_text())
        (agreements / source.name).write_text(text)
    config_path = write_deployment(
        directory,
        bootstrap_servers=access,
        agencies={f"{a}_{suffix}": name for a, name in DEMO_AGENCIES.items()},
        agreements_dir=agreements,
        router={"group_id": f"router-{suffix}"},
    )
    provision(load_config(config_path))  # credentials, topics and ACLs, as the operator
    return StatsDeployment(directory, config_path, suffix)


# -- SSDA903 subsets ------------------------------------------------------------------------------


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def every_other_child(sample: Path = SAMPLE) -> set[str]:
    """A deterministic half of the sample's children (every other CHILD, in id order): the
    second council's return, with all of those children's episodes and missing rows."""
    _, episodes = _rows(sample / "episodes.csv")
    children = sorted({r["CHILD"] for r in episodes})
    return set(children[::2])


def write_subset(children: Iterable[str], out: Path, sample: Path = SAMPLE) -> Path:
    """A copy of the sample's four tables holding only `children`."""
    keep = set(children)
    out.mkdir(parents=True, exist_ok=True)
    for table in sorted(sample.glob("*.csv")):
        columns, rows = _rows(table)
        with (out / table.name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(r for r in rows if r["CHILD"] in keep)
    return out


def full_postcodes(sample: Path = SAMPLE) -> set[bytes]:
    """Every full postcode of the sample, as the bytes it would travel as (with and without
    the space)."""
    _, episodes = _rows(sample / "episodes.csv")
    found: set[bytes] = set()
    for r in episodes:
        for column in ("PL_POST", "HOME_POST"):
            text = r[column].strip().upper()
            parts = text.split()
            if len(parts) == 2 and len(parts[1]) == 3:
                found.add(text.encode())
                found.add("".join(parts).encode())
    return found


# -- the independent reference of the unit tests --------------------------------------------------


def reference_module() -> ModuleType:
    """`tests/unit/stats/test_stats_ssda903_reference.py`, imported as pytest imports it."""
    path = REPO_ROOT / "tests" / "unit" / "stats"
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    return importlib.import_module("test_stats_ssda903_reference")


def reference_tables(directory: Path) -> Any:
    """The reference's parsed tables of an SSDA903 CSV folder."""
    return reference_module().Tables(directory)
