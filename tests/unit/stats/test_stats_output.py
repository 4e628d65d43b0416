"""Outputs (CSV layout, JSON, HTML) and `broker stats` on a JSON-lines feed."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from stats_samples import synthetic_feed

from broker.cli import main
from broker.stats import Period, StatsState, compute
from broker.stats.output import publish, to_json


@pytest.fixture(scope="module")
def feed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("feed") / "feed.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in synthetic_feed()), encoding="utf-8")
    return path


LOOKUP = Path(__file__).resolve().parents[3].parent / "shared" / "domain" / "la_lookup.csv"
DOMAIN = LOOKUP.parent / "DOMAIN.md"
DEPARTMENT_COLUMNS = [
    "time_period",
    "time_identifier",
    "geographic_level",
    "country_code",
    "country_name",
    "region_code",
    "region_name",
    "old_la_code",
    "la_name",
    "new_la_code",
    "CLA_group",
    "number",
]
LA_COLUMNS = ["region_code", "region_name", "old_la_code", "la_name", "new_la_code"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def domain_labels() -> list[str]:
    """The thirteen `CLA_group` labels, word for word, from DOMAIN.md's list."""
    text = DOMAIN.read_text(encoding="utf-8")
    block = text.split("The published file's `CLA_group` labels, word for word")[1]
    block = block.split("National breakdowns:")[0]
    labels: list[str] = []
    for line in block.splitlines():
        if line.startswith("- "):
            labels.append(line[2:].strip())
        elif line.startswith("  ") and labels and not line.strip().startswith("("):
            labels[-1] += " " + line.strip()
    return labels


@pytest.fixture(scope="module")
def published(feed_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("published")
    argv = ["stats", "--input", str(feed_file), "--out", str(out), "--year", "2025"]
    assert main([*argv, "--la-lookup", str(LOOKUP)]) == 0
    return out


@pytest.mark.skipif(not LOOKUP.exists(), reason="../shared/domain absent")
def test_statistics_csv_is_the_departments_layout(published: Path) -> None:
    raw = (published / "statistics.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "UTF-8 with a byte order mark"
    with (published / "statistics.csv").open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == DEPARTMENT_COLUMNS
        rows = list(reader)
    labels = domain_labels()
    assert len(labels) == 13
    assert {r["CLA_group"] for r in rows} == set(labels)
    for row in rows:
        number = row["number"]
        assert number in {"c", "z", "x", "k"} or re.fullmatch(r"\d+(\.\d)?", number), row
        assert row["time_identifier"] == "Reporting year"
        assert (row["country_code"], row["country_name"]) == ("E92000001", "England")
        if row["geographic_level"] == "National":
            assert all(row[c] == "" for c in LA_COLUMNS), row
        elif row["geographic_level"] == "Regional":
            assert row["region_code"] and row["region_name"]
            assert all(row[c] == "" for c in LA_COLUMNS[2:]), row
        else:
            assert row["geographic_level"] == "Local authority"
            assert all(row[c] for c in LA_COLUMNS), row
    assert [r["time_period"] for r in rows if r["geographic_level"] == "National"][::13] == [
        "2021",
        "2022",
        "2023",
        "2024",
        "2025",
    ]
    westminster = {r["la_name"] for r in rows if r["new_la_code"] == "E09000033"}
    assert westminster == {"Westminster"}
    assert {r["old_la_code"] for r in rows if r["new_la_code"] == "E09000033"} == {"213"}
    regions = {r["region_name"] for r in rows if r["geographic_level"] == "Regional"}
    assert regions == {"Inner London", "West Midlands", "East Midlands", "South East"}


@pytest.mark.skipif(not LOOKUP.exists(), reason="../shared/domain absent")
def test_extra_files_have_their_documented_columns(published: Path) -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "statistics.md").read_text()
    for name in ("breakdowns.csv", "inquiry.csv", "nrm.csv"):
        with (published / name).open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle))
        assert f"`{name}`: `{', '.join(header)}`" in docs, name
    breakdowns = read_csv(published / "breakdowns.csv")
    assert {r["geographic_level"] for r in breakdowns} == {"National"}
    names = {r["breakdown"] for r in breakdowns}
    assert {"Placement type (SSDA903 PLACE)", "Gender", "Ethnicity (SSDA903 ETHNIC)"} <= names
    inquiry = read_csv(published / "inquiry.csv")
    assert {r["geographic_level"] for r in inquiry} == {"National", "Regional", "Local authority"}
    assert not [r for r in inquiry if "_" in r["measure"]], "human labels, not ids"


def test_cli_writes_every_file(
    feed_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["stats", "--input", str(feed_file), "--out", str(tmp_path / "out"), "--year", "2025"]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "report.html" in printed and "rejected" in printed
    for name in ("statistics.csv", "breakdowns.csv", "inquiry.csv", "nrm.csv", "report.html"):
        assert (tmp_path / "out" / name).exists(), name
    rows = read_csv(tmp_path / "out" / "statistics.csv")
    data = json.loads((tmp_path / "out" / "statistics.json").read_text(encoding="utf-8"))
    assert data["statistics"]["columns"] == DEPARTMENT_COLUMNS
    assert data["statistics"]["rows"] == [list(r.values()) for r in rows]
    assert [p["time_period"] for p in data["time_periods"]] == [
        "2021",
        "2022",
        "2023",
        "2024",
        "2025",
    ]
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    for raw_id in ("48_hours", "care_start", "incidents_by", "children_pct", "_per_child"):
        assert raw_id not in html, f"the report shows the raw id {raw_id}"


def test_smallest_council_is_mostly_suppressed(feed_file: Path, tmp_path: Path) -> None:
    main(["stats", "--input", str(feed_file), "--out", str(tmp_path), "--year", "2025"])
    rows = read_csv(tmp_path / "statistics.csv")
    small = {
        r["CLA_group"]: r["number"]
        for r in rows
        if r["new_la_code"] == "E10000030" and r["time_period"] == "2025"
    }
    assert small["Children looked after during the year"] in {"c", "6", "7", "8", "9"}
    assert "c" in small.values()


def test_snapshot_lets_a_second_run_continue(feed_file: Path, tmp_path: Path) -> None:
    lines = feed_file.read_text(encoding="utf-8").splitlines(keepends=True)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    second.write_text("".join(lines[len(lines) // 2 :]), encoding="utf-8")
    snapshot = tmp_path / "state.json"
    for part in (first, second):
        assert (
            main(
                [
                    "stats",
                    "--input",
                    str(part),
                    "--out",
                    str(tmp_path / "split"),
                    "--snapshot",
                    str(snapshot),
                    "--year",
                    "2025",
                ]
            )
            == 0
        )
    main(["stats", "--input", str(feed_file), "--out", str(tmp_path / "whole"), "--year", "2025"])
    assert (tmp_path / "split" / "statistics.csv").read_bytes() == (
        tmp_path / "whole" / "statistics.csv"
    ).read_bytes()


def test_period_options(
    feed_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "stats",
                "--input",
                str(feed_file),
                "--out",
                str(tmp_path),
                "--from",
                "2024-07-01",
                "--to",
                "2024-09-30",
            ]
        )
        == 0
    )
    rows = read_csv(tmp_path / "statistics.csv")
    assert {(r["time_period"], r["time_identifier"]) for r in rows} == {
        ("20240701-20240930", "Period")
    }
    assert (
        main(["stats", "--input", str(feed_file), "--out", str(tmp_path), "--from", "2024-07-01"])
        == 2
    )
    assert "--from and --to" in capsys.readouterr().err


def test_bad_input_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_type": "x"}\nnot json\n', encoding="utf-8")
    assert main(["stats", "--input", str(bad), "--out", str(tmp_path), "--year", "2025"]) == 2
    assert f"{bad}:2 is not a JSON object" in capsys.readouterr().err
    assert main(["stats", "--input", str(tmp_path / "absent"), "--out", str(tmp_path)]) == 2


def test_personal_data_in_the_feed_stops_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = synthetic_feed()[0]
    event["fields"]["first_name"] = "Amira"
    feed = tmp_path / "feed.jsonl"
    feed.write_text(json.dumps(event) + "\n", encoding="utf-8")
    assert main(["stats", "--input", str(feed), "--out", str(tmp_path), "--year", "2025"]) == 3
    err = capsys.readouterr().err
    assert "fields.first_name" in err and "Amira" not in err


def test_json_lists_every_measure_with_its_kind() -> None:
    state = StatsState()
    state.apply_all(synthetic_feed())
    results = compute(state, Period.reporting_year(2025))
    data = to_json(publish([results], state))
    kinds = {m["id"]: m["kind"] for m in data["measures"]}
    files = {m["id"]: m["file"] for m in data["measures"]}
    assert files["missing.incidents"] == "statistics.csv"
    assert files["missing.incidents_by_age.under_1"] == "breakdowns.csv"
    assert files["trafficking.children_looked_after"] == "inquiry.csv"
    assert kinds["missing.children_pct"] == "percent"
    assert kinds["missing.incidents_per_child"] == "average"
    assert kinds["missing.incidents"] == "count"
