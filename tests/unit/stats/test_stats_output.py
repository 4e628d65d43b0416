"""Outputs (CSV layout, JSON, HTML) and `broker stats` on a JSON-lines feed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from stats_samples import synthetic_feed

from broker.cli import main
from broker.stats import Period, StatsState, compute
from broker.stats.output import CSV_COLUMNS, published_rows, to_json


@pytest.fixture(scope="module")
def feed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("feed") / "feed.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in synthetic_feed()), encoding="utf-8")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_cli_writes_csv_json_and_html(
    feed_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = tmp_path / "names.csv"
    names.write_text("new_la_code,la_name\nE09000033,Westminster\n", encoding="utf-8")
    status = main(
        [
            "stats",
            "--input",
            str(feed_file),
            "--out",
            str(tmp_path / "out"),
            "--year",
            "2025",
            "--la-names",
            str(names),
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "report.html" in printed and "rejected" in printed
    rows = read_csv(tmp_path / "out" / "statistics.csv")
    assert tuple(rows[0]) == CSV_COLUMNS
    assert {r["time_period"] for r in rows} == {"2025"}
    assert {r["geographic_level"] for r in rows} == {"National", "Local authority"}
    westminster = [r for r in rows if r["new_la_code"] == "E09000033"]
    assert westminster and {r["la_name"] for r in westminster} == {"Westminster"}
    national = {r["measure"]: r["value"] for r in rows if r["geographic_level"] == "National"}
    assert national["missing.incidents_by_age.10_to_15"].isdigit()
    # breakdowns are national only
    assert not [r for r in westminster if ".incidents_by_age." in r["measure"]]
    data = json.loads((tmp_path / "out" / "statistics.json").read_text(encoding="utf-8"))
    assert data["rows"] == rows and data["time_period"] == "2025"
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 3 and "Westminster" in html


def test_smallest_council_is_mostly_suppressed(feed_file: Path, tmp_path: Path) -> None:
    main(["stats", "--input", str(feed_file), "--out", str(tmp_path), "--year", "2025"])
    rows = read_csv(tmp_path / "statistics.csv")
    small = {r["measure"]: r["value"] for r in rows if r["new_la_code"] == "E10000030"}
    assert small["children_looked_after"] in {"c", "6", "7", "8", "9"}
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
    assert {r["time_period"] for r in rows} == {"20240701-20240930"}
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
    data = to_json(results, published_rows(results))
    kinds = {m["id"]: m["kind"] for m in data["measures"]}
    assert kinds["missing.children_pct"] == "percent"
    assert kinds["missing.incidents_per_child"] == "average"
    assert kinds["missing.incidents"] == "count"
