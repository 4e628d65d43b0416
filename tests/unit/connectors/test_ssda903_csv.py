"""The SSDA903 connector on the shared sample (acceptance 1): counts, problems, idempotence."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml
from connector_data import AGENCY, ID_SECRET, SHARED, read_table, write_table

from connectors.council import read_ssda903
from connectors.council.exceptions import Ssda903Error
from connectors.council.ssda903 import Reason

NEW_PLACEMENT = {"P", "T", "B", "U"}
NEW_EPISODE = NEW_PLACEMENT | {"L"}


def _d(text: str) -> date:
    return datetime.strptime(text, "%d/%m/%Y").date()


def _codes(table: str, column: str) -> set[str]:
    spec = yaml.safe_load((SHARED / "domain" / "SSDA903_schema_2024.yml").read_text())
    return {str(c["code"]) for c in spec["column_map"][table][column]["category"]}


def _by_type(events: list[dict[str, object]]) -> Counter[str]:
    return Counter(str(e["event_type"]) for e in events)


def _date_or_none(text: str) -> date | None:
    try:
        return _d(text.strip())
    except ValueError:
        return None


def _care_endings(episodes: list[dict[str, str]]) -> list[tuple[str, date, str]]:
    """(CHILD, DEC, REC) of the episodes whose DEC ends the child's care, from the table alone.

    An episode with a DEC (not before DECOM) and a REC ends care unless the child's next episode
    began before DEC (it superseded this one) or began on DEC and continues the care (REC X1,
    or an RNE other than S). With no episode starting by DEC, care ends whatever REC says.
    """
    by_child: dict[str, list[dict[str, str]]] = {}
    for row in episodes:
        if _date_or_none(row["DECOM"]) is not None:
            by_child.setdefault(row["CHILD"], []).append(row)
    found = []
    for child, rows in by_child.items():
        rows.sort(key=lambda r: _d(r["DECOM"]))
        for row, following in zip(rows, [*rows[1:], None], strict=True):
            dec, rec = _date_or_none(row["DEC"]), row["REC"].strip()
            if dec is None or not rec or dec < _d(row["DECOM"]):
                continue
            if following is not None:
                starts = _d(following["DECOM"])
                if starts < dec:
                    continue
                if starts == dec and (rec == "X1" or following["RNE"] != "S"):
                    continue
            found.append((child, dec, rec))
    return found


def test_event_counts_match_the_input_files(sample: Path) -> None:
    episodes = read_table(sample, "episodes")
    missing = read_table(sample, "missing")
    ls, cin, place = (
        _codes("Episodes", "LS"),
        _codes("Episodes", "CIN"),
        _codes("Episodes", "PLACE"),
    )
    expected = {
        "child.missing.started": len(missing),
        "child.missing.ended": sum(1 for r in missing if r["MIS_END"].strip()),
        "child.care.started": sum(
            1
            for r in episodes
            if r["RNE"] == "S" and r["LS"] in ls and r["CIN"] in cin and r["PLACE"] in place
        ),
        "child.placement.changed": sum(
            1 for r in episodes if r["RNE"] in NEW_EPISODE and r["PLACE"] in place
        ),
        "child.care.ended": len(_care_endings(episodes)),
    }
    result = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET)
    events = result.collect()
    assert result.finished
    assert dict(_by_type(events)) == expected
    assert result.rows_read["Missing"] == len(missing)
    assert result.rows_read["Episodes"] == len(episodes)
    assert result.rows_read["Header"] == len(read_table(sample, "header"))
    assert result.summary()["events"] == expected


def test_one_started_event_per_missing_row_with_its_dates_and_type(sample: Path) -> None:
    missing = read_table(sample, "missing")
    events = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET).collect()
    started = Counter(
        (e["subject"], e["fields"]["missing_since"], e["fields"]["missing_type"])
        for e in events
        if e["event_type"] == "child.missing.started"
    )
    expected = Counter(
        (r["CHILD"], f"{_d(r['MIS_START']).isoformat()}T00:00:00Z", r["MISSING"]) for r in missing
    )
    assert started == expected
    ended = {
        (e["subject"], e["fields"]["missing_until"], e["occurred_at"])
        for e in events
        if e["event_type"] == "child.missing.ended"
    }
    for row in missing:
        if row["MIS_END"]:
            until = f"{_d(row['MIS_END']).isoformat()}T00:00:00Z"
            assert (row["CHILD"], until, until) in ended


def test_child_fields_come_from_header_and_uasc(sample: Path) -> None:
    header = {r["CHILD"]: r for r in read_table(sample, "header")}
    uasc = {r["CHILD"]: r for r in read_table(sample, "uasc")}
    events = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET).collect()
    for event in events:
        fields = event["fields"]
        row = header[event["subject"]]
        dob = _d(row["DOB"])
        day = date.fromisoformat(event["occurred_at"][:10])
        age = day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))
        band = (
            "0-9"
            if age < 10
            else "10-12"
            if age < 13
            else "13-15"
            if age < 16
            else ("16-17" if age < 18 else "18+")
        )
        assert fields["la_child_id"] == event["subject"]
        assert fields["dob"] == dob.isoformat()
        assert fields["birth_year"] == dob.year
        assert fields["age_band"] == band
        assert fields["sex"] == {"1": "m", "2": "f"}[row["SEX"]]
        in_uasc = event["subject"] in uasc and day < _d(uasc[event["subject"]]["DUC"])
        assert fields["uasc"] is in_uasc
        # SSDA903 has no names, risk level or trafficking flag: never invented.
        assert fields["first_name"] is None and fields["last_name"] is None
        assert fields["trafficking_concern"] is None
        assert fields.get("risk_level") is None
        if event["event_type"] == "child.care.started":
            assert fields["ethnicity"] == row["ETHNIC"]
            assert fields["upn"] == row["UPN"]
    assert any(e["fields"]["uasc"] for e in events)


def test_placement_fields_and_reason_from_the_ended_episode(sample: Path) -> None:
    """Every new episode in a period of care (RNE P/T/B/U/L) is a placement change carrying its
    own legal status and RNE; an L episode (same placement) has no reason for a move."""
    episodes = read_table(sample, "episodes")
    by_child: dict[str, list[dict[str, str]]] = {}
    for row in episodes:
        by_child.setdefault(row["CHILD"], []).append(row)
    expected = {}
    for child, rows in by_child.items():
        rows.sort(key=lambda r: _d(r["DECOM"]))
        for previous, row in zip([None, *rows], rows, strict=False):
            if row["RNE"] in NEW_EPISODE:
                reason = (previous["REASON_PLACE_CHANGE"] or None) if previous else None
                if row["RNE"] == "L":
                    reason = None
                district = row["PL_POST"].split(" ")[0] or None
                expected[(child, _d(row["DECOM"]).isoformat())] = (
                    row["PLACE"],
                    district,
                    reason,
                    row["LS"],
                    row["RNE"],
                )
    events = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET).collect()
    seen = {
        (e["subject"], e["occurred_at"][:10]): (
            e["fields"]["placement_type"],
            e["fields"]["placement_postcode_district"],
            e["fields"]["reason"],
            e["fields"]["legal_status"],
            e["fields"]["reason_new_episode"],
        )
        for e in events
        if e["event_type"] == "child.placement.changed"
    }
    assert seen == expected
    assert {rne for *_, rne in seen.values()} == NEW_EPISODE


def test_care_ends_where_the_episodes_say_so(sample: Path) -> None:
    """Superseded (overlapping) episodes end nothing; an episode with no successor by its DEC
    ends care there whatever its REC; the problems name the rows."""
    episodes = read_table(sample, "episodes")
    result = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET)
    events = result.collect()
    ended = sorted(
        (str(e["subject"]), date.fromisoformat(str(e["occurred_at"])[:10]), e["fields"]["reason"])
        for e in events
        if e["event_type"] == "child.care.ended"
    )
    assert ended == sorted(_care_endings(episodes))
    assert any(reason == "X1" for *_, reason in ended)  # the sample has X1s with no successor
    by_child: dict[str, list[dict[str, str]]] = {}
    for row in episodes:
        by_child.setdefault(row["CHILD"], []).append(row)
    superseded = set()
    for rows in by_child.values():
        rows.sort(key=lambda r: _d(r["DECOM"]))
        for row, following in itertools.pairwise(rows):
            dec = _date_or_none(row["DEC"])
            if dec is not None and dec > _d(following["DECOM"]):
                superseded.add(int(row["_line"]))
    assert superseded
    assert {p.row for p in result.problems if p.reason == Reason.EPISODE_SUPERSEDED} == superseded
    assert result.problem_counts[Reason.REC_INCONSISTENT] == sum(
        1 for *_, reason in ended if reason == "X1"
    )


def test_sample_invalid_value_reported_with_table_row_column(sample: Path) -> None:
    header = read_table(sample, "header")
    bad = [r for r in header if r["MOTHER"] not in ("", "0", "1")]
    assert bad, "the sample is expected to hold a deliberately invalid MOTHER value"
    result = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET)
    result.collect()
    where = {(p.table, p.row, p.column, p.reason) for p in result.problems}
    for row in bad:
        assert ("Header", int(row["_line"]), "MOTHER", Reason.INVALID_CODE) in where


def test_deliberately_invalid_values_are_reported_and_the_rest_still_maps(
    sample_copy: Path,
) -> None:
    header = read_table(sample_copy, "header")
    episodes = read_table(sample_copy, "episodes")
    missing = read_table(sample_copy, "missing")
    secret_dob, secret_postcode, secret_name = "31/02/2011", "ZZ99 9ZZ JONES", "Alice Smith"
    s_rows = [i for i, r in enumerate(episodes) if r["RNE"] == "S"]
    p_rows = [i for i, r in enumerate(episodes) if r["RNE"] == "P"]
    episodes[s_rows[0]]["PLACE"] = "Q9"  # unknown code: no care.started for that row
    episodes[s_rows[1]]["DECOM"] = "2017-01-01"  # not DD/MM/YYYY: row rejected
    episodes[p_rows[0]]["RNE"] = ""  # blank required: row rejected
    episodes[p_rows[1]]["LS"] = secret_name  # free text in a code column: never echoed
    episodes[p_rows[1]]["PL_POST"] = secret_postcode
    missing[0]["MISSING"] = "X"
    missing[1]["MIS_END"] = "99/99/2018"
    header[5]["DOB"] = secret_dob
    write_table(sample_copy, "episodes", episodes)
    write_table(sample_copy, "missing", missing)
    write_table(sample_copy, "header", header)

    result = read_ssda903(sample_copy, agency=AGENCY, id_secret=ID_SECRET)
    events = result.collect()
    found = {(p.table, p.row, p.column, p.reason, p.rejected) for p in result.problems}

    def line(rows: list[dict[str, str]], i: int) -> int:
        return int(rows[i]["_line"])

    assert ("Episodes", line(episodes, s_rows[0]), "PLACE", Reason.INVALID_CODE, False) in found
    assert ("Episodes", line(episodes, s_rows[1]), "DECOM", Reason.INVALID_DATE, True) in found
    assert ("Episodes", line(episodes, p_rows[0]), "RNE", Reason.BLANK_REQUIRED, True) in found
    assert ("Episodes", line(episodes, p_rows[1]), "LS", Reason.INVALID_CODE, False) in found
    assert ("Episodes", line(episodes, p_rows[1]), "PL_POST", Reason.INVALID_POSTCODE, False) in (
        found
    )
    assert ("Missing", line(missing, 0), "MISSING", Reason.INVALID_CODE, True) in found
    assert ("Missing", line(missing, 1), "MIS_END", Reason.INVALID_DATE, False) in found
    assert ("Header", line(header, 5), "DOB", Reason.INVALID_DATE, False) in found
    assert result.rejected == Counter({"invalid_date": 1, "blank_required": 1, "invalid_code": 1})

    # The rest of the file still maps: exactly the damaged rows' events are missing.
    counts = _by_type(events)
    assert counts["child.missing.started"] == len(missing) - 1
    assert counts["child.missing.ended"] == sum(1 for r in missing if r["MIS_END"]) - 2
    s_total = sum(1 for r in episodes if r["RNE"] == "S")
    assert counts["child.care.started"] == s_total - 2
    # Nothing personal in any problem text.
    text = "\n".join(str(p) for p in result.problems)
    for secret in (secret_dob, secret_postcode, secret_name, "JONES", "Alice"):
        assert secret not in text
    assert "'Q9'" in text  # a code may be named


def test_rereading_yields_identical_events_and_ids(sample: Path) -> None:
    first = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET).collect()
    second = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET).collect()
    assert [e["event_id"] for e in first] == [e["event_id"] for e in second]
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    ids = [e["event_id"] for e in first]
    assert len(set(ids)) == len(ids)
    other = read_ssda903(sample, agency="council.E09000001", id_secret=ID_SECRET).collect()
    assert not set(ids) & {e["event_id"] for e in other}


def test_table_file_names_match_case_insensitively(sample: Path, tmp_path: Path) -> None:
    names = {
        "header": "HEADER.CSV",
        "episodes": "SSDA903_Episodes_2018.csv",
        "missing": "Missing.csv",
        "uasc": "uasc_table.Csv",
    }
    for stem, name in names.items():
        (tmp_path / name).write_bytes((sample / f"{stem}.csv").read_bytes())
    renamed = read_ssda903(tmp_path, agency=AGENCY, id_secret=ID_SECRET).collect()
    original = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET).collect()
    assert renamed == original


def test_file_level_errors_name_the_fix(sample: Path, tmp_path: Path) -> None:
    with pytest.raises(Ssda903Error, match="holds no SSDA903"):
        read_ssda903(tmp_path, agency=AGENCY, id_secret=ID_SECRET)
    (tmp_path / "Episodes.csv").write_text("CHILD,DECOM\n1,01/01/2017\n")
    with pytest.raises(Ssda903Error, match="lacks column"):
        read_ssda903(tmp_path, agency=AGENCY, id_secret=ID_SECRET)
    (tmp_path / "episodes_copy.csv").write_text("CHILD\n")
    with pytest.raises(Ssda903Error, match="several files"):
        read_ssda903(tmp_path, agency=AGENCY, id_secret=ID_SECRET)
    with pytest.raises(Ssda903Error, match="does not exist"):
        read_ssda903(tmp_path / "nope", agency=AGENCY, id_secret=ID_SECRET)
    with pytest.raises(Ssda903Error, match="specification"):
        read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET, schema_path=tmp_path / "none.yml")


def test_every_event_validates_against_the_registered_schema(sample: Path) -> None:
    schemas = pytest.importorskip("broker.schemas")
    registry = schemas.SchemaRegistry.default()
    events = read_ssda903(sample, agency=AGENCY, id_secret=ID_SECRET).collect()
    assert events
    for event in events:
        registry.validate_fields(event["event_type"], event["fields"])
