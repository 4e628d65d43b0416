"""Issue 6, acceptance 1: `broker connect council ssda903` on the shared sample, end to end.

The missing events are counted in the input files (stdlib csv), never hard-coded. The same
return is published twice; after routing both runs every feed holds each event once and the
second run's events are quarantined as `duplicate`.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from connect_helpers import route
from router_helpers import (
    LAMBETH,
    MET,
    STATS,
    WESTMINSTER,
    Deployment,
    feeds,
    ingress_counts,
    read_quarantine,
)

from broker.cli import main
from connectors.council import Ssda903Result, read_ssda903
from connectors.ids import event_ids_for

pytestmark = pytest.mark.integration

SCHEMA = Path(__file__).resolve().parents[4] / "shared" / "domain" / "SSDA903_schema_2024.yml"
PROBLEM_LINE = re.compile(r"^  (Header|Episodes|Missing|UASC) row (\d+) column (\w+): (\w+)")


def _table(folder: Path, name: str) -> list[dict[str, str]]:
    path = next(p for p in folder.iterdir() if p.stem.lower() == name.lower())
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def _rows_by_line(folder: Path, name: str) -> dict[int, dict[str, str]]:
    return {n: row for n, row in enumerate(_table(folder, name), start=2)}


def _codes(table: str, column: str) -> set[str]:
    spec = yaml.safe_load(SCHEMA.read_text())
    return {str(c["code"]) for c in spec["column_map"][table][column]["category"]}


def _read(dep: Deployment, source: Path, base: str) -> Ssda903Result:
    """The return as the connector reads it for `base`, with that agency's event id secret."""
    secret = event_ids_for(dep.config, dep.id(base)).secret
    return read_ssda903(source, agency=dep.id(base), id_secret=secret)


def _expected(dep: Deployment, sample: Path) -> dict[str, int]:
    """Events per type: the missing ones counted in the Missing file; the episode ones as the
    mapping makes them (its rules are tested against the files in tests/unit/connectors)."""
    missing = _table(sample, "missing")
    mapped = Counter(e["event_type"] for e in _read(dep, sample, WESTMINSTER).events)
    assert mapped["child.care.started"] and mapped["child.placement.changed"]
    return {
        **mapped,
        "child.missing.started": len(missing),
        "child.missing.ended": sum(1 for r in missing if r["MIS_END"].strip()),
    }


def _connect(dep: Deployment, sample: Path, capsys: pytest.CaptureFixture[str]) -> str:
    status = main(
        [
            "connect", "council", "ssda903", "--config", str(dep.config_path),
            "--agency", dep.id(WESTMINSTER), str(sample), "--show-problems", "100000",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    return out


def test_sample_published_twice_is_routed_once(
    deployment: Deployment, ssda903_sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dep, sample = deployment, ssda903_sample
    expected = _expected(dep, sample)
    total = sum(expected.values())
    missing_rows = len(_table(sample, "missing"))
    assert expected["child.missing.started"] == missing_rows  # one per Missing row

    first = _connect(dep, sample, capsys)
    published = " ".join(f"{t} {n:,}" for t, n in sorted(expected.items()))
    assert f"events published: {total:,} ({published})" in first.replace(", ", " ")
    assert f"Missing {missing_rows:,}" in first

    # Problems are listed with table, row and column, and are real: an invalid code is not in
    # the code list at that row and column of the input file.
    problems = [PROBLEM_LINE.match(line) for line in first.splitlines()]
    listed = [m for m in problems if m]
    assert listed, first
    tables = {t: _rows_by_line(sample, t) for t in ("Header", "Episodes", "Missing", "UASC")}
    invalid_codes = [m for m in listed if m.group(4) == "invalid_code"]
    assert invalid_codes
    for m in invalid_codes:
        table, row, column = m.group(1), int(m.group(2)), m.group(3)
        value = tables[table][row][column].strip()
        assert value and value not in _codes(table, column), (table, row, column)
    for m in listed:
        assert int(m.group(2)) in tables[m.group(1)]
    summary_count = re.search(r"^problems: ([\d,]+)", first, re.M)
    assert summary_count and int(summary_count.group(1).replace(",", "")) == len(listed)

    second = _connect(dep, sample, capsys)
    assert f"events published: {total:,}" in second  # the same event ids, again

    ingress = sum(n for (topic, _), n in ingress_counts(dep).items() if WESTMINSTER in topic)
    assert ingress == 2 * total
    route(dep, 2 * total)

    # The ids the connector published: recomputable with the council's secret, and only so.
    ids = {e["event_id"]: e for e in _read(dep, sample, WESTMINSTER).events}
    assert len(ids) == total
    received = feeds(dep)
    for base, items in received.items():
        assert all(item.event is not None for item in items), base
        counts = Counter(item.event.header.event_id for item in items if item.event)
        assert not counts or max(counts.values()) == 1, f"{base} got an event twice"
        assert set(counts) <= set(ids), base
    # The national collection gets every event once; the police every missing event once.
    stats_ids = [i.event.header.event_id for i in received[STATS] if i.event]
    assert sorted(stats_ids) == sorted(ids)
    missing_ids = {i for i, e in ids.items() if e["event_type"].startswith("child.missing.")}
    police_ids = {i.event.header.event_id for i in received[MET] if i.event}
    assert police_ids == missing_ids

    reasons = Counter(dict(r.headers).get("reason", b"").decode() for r in read_quarantine(dep))
    assert reasons == {"duplicate": total}


def test_synthetic_return_with_progress_bar(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Acceptance 3 in small (the 200,000-row run is `broker bench ssda903`)."""
    from connectors.council.ssda903.synthetic import generate

    dep, source = deployment, tmp_path / "return"
    generate(source, 1500, seed=7)
    expected = Counter(e["event_type"] for e in _read(dep, source, LAMBETH).events)
    status = main(
        ["connect", "council", "ssda903", "--config", str(dep.config_path),
         "--agency", dep.id(LAMBETH), str(source)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0
    assert re.search(r"SSDA903 .*100%\s+[\d,]+ rows", captured.err), captured.err
    total = sum(expected.values())
    assert f"events published: {total:,}" in captured.out
    ingress = sum(n for (topic, _), n in ingress_counts(dep).items() if LAMBETH in topic)
    assert ingress == total
