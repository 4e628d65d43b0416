"""Pure mapping rules of the SSDA903 connector, and the synthetic generator and benchmark."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from connector_data import AGENCY, ID_SECRET
from hypothesis import given
from hypothesis import strategies as st

from connectors.council import read_ssda903
from connectors.council.ssda903 import mapping as m
from connectors.council.ssda903.synthetic import generate
from connectors.ids import EventIds

EPISODES = (
    "CHILD,DECOM,RNE,LS,CIN,PLACE,PLACE_PROVIDER,DEC,REC,REASON_PLACE_CHANGE,"
    "HOME_POST,PL_POST,URN\n"
)


def test_age_band_boundaries() -> None:
    dob = date(2008, 3, 27)
    assert m.age_band(dob, date(2018, 3, 26)) == "0-9"
    assert m.age_band(dob, date(2018, 3, 27)) == "10-12"
    assert m.age_band(dob, date(2021, 3, 27)) == "13-15"
    assert m.age_band(dob, date(2024, 3, 27)) == "16-17"
    assert m.age_band(dob, date(2026, 3, 26)) == "16-17"
    assert m.age_band(dob, date(2026, 3, 27)) == "18+"
    assert m.age_band(dob, date(2007, 1, 1)) is None
    assert m.age_band(None, date(2020, 1, 1)) is None


def test_postcode_district_full_and_partial() -> None:
    assert m.postcode_district("EG19 7TT") == "EG19"
    assert m.postcode_district("eg197tt") == "EG19"
    assert m.postcode_district("EG19 7") == "EG19"
    assert m.postcode_district("EG19") == "EG19"
    assert m.postcode_district(" w1a 0ax ") == "W1A"
    assert m.postcode_district("W10AX") == "W1"
    assert m.postcode_district("") is None
    assert m.postcode_district("not a postcode") is None
    assert m.normalise_postcode("sw1a1aa") == "SW1A 1AA"


@given(st.text(max_size=12))
def test_postcode_district_never_raises_and_is_an_outward_code(text: str) -> None:
    district = m.postcode_district(text)
    assert district is None or (2 <= len(district) <= 4 and district[0].isalpha())


def test_event_id_is_stable_and_depends_on_every_part() -> None:
    ids = EventIds(AGENCY, ID_SECRET)
    base = m.event_id(ids, "Missing", "7", "2018-01-01|M|1", "child.missing.started")
    assert base == m.event_id(ids, "Missing", "7", "2018-01-01|M|1", "child.missing.started")
    variants = {
        m.event_id(EventIds("council.X", ID_SECRET), "Missing", "7", "2018-01-01|M|1",
                   "child.missing.started"),
        m.event_id(EventIds(AGENCY, ID_SECRET.upper()), "Missing", "7", "2018-01-01|M|1",
                   "child.missing.started"),
        m.event_id(ids, "Episodes", "7", "2018-01-01|M|1", "child.missing.started"),
        m.event_id(ids, "Missing", "8", "2018-01-01|M|1", "child.missing.started"),
        m.event_id(ids, "Missing", "7", "2018-01-01|M|2", "child.missing.started"),
        m.event_id(ids, "Missing", "7", "2018-01-01|M|1", "child.missing.ended"),
    }  # fmt: skip
    assert base not in variants and len(variants) == 6


def _write(folder: Path, **tables: str) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in tables.items():
        (folder / f"{name}.csv").write_text(text)
    return folder


def test_scattered_episodes_ends_and_missing_placement(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "t",
        Header="CHILD,SEX,DOB,ETHNIC,UPN,MOTHER,MC_DOB\n7,M,01/06/2005,WBRI,UN3,,\n",
        Episodes=EPISODES
        + "7,01/03/2018,P,C2,N1,U3,PR1,,,,AB1 2CD,CD3 4EF,\n"
        + "9,01/01/2018,S,C2,N1,U1,PR1,,,,,,\n"
        + "7,01/01/2018,S,C2,N1,U1,PR1,01/03/2018,X1,CARPL,AB1 2CD,EF5,\n"
        + "7,05/04/2018,L,V2,N1,U3,PR1,06/04/2018,E8,,,,\n"
        + "7,07/04/2018,S,C2,N1,U3,PR1,,E3,,,,\n",
        Missing="CHILD,DOB,MISSING,MIS_START,MIS_END\n7,01/06/2005,A,02/02/2018,02/02/2018\n"
        "7,01/06/2005,A,02/02/2018,\n7,01/06/2005,M,10/03/2018,01/03/2018\n",
    )
    result = read_ssda903(folder, agency=AGENCY, id_secret=ID_SECRET)
    events = result.collect()
    kinds = [(e["subject"], e["event_type"], e["occurred_at"][:10]) for e in events]
    assert ("7", "child.care.started", "2018-01-01") in kinds
    changed = next(e for e in events if e["event_type"] == "child.placement.changed")
    assert changed["fields"]["reason"] == "CARPL"  # from the episode that ended
    assert changed["fields"]["placement_postcode_district"] == "CD3"
    ended = [e for e in events if e["event_type"] == "child.care.ended"]
    assert [(e["occurred_at"][:10], e["fields"]["reason"]) for e in ended] == [("2018-04-06", "E8")]
    assert ("Episodes", "DEC", "end_date_missing") in {
        (p.table, p.column, p.reason.value) for p in result.problems
    }
    started = [e for e in events if e["event_type"] == "child.missing.started"]
    assert len(started) == 3 and len({e["event_id"] for e in started}) == 3
    assert started[0]["fields"]["placement_postcode_district"] == "EF5"
    assert started[2]["fields"]["placement_postcode_district"] == "CD3"
    assert started[0]["fields"]["sex"] == "m"  # 2023-24 letter coding
    care = next(e for e in events if e["event_type"] == "child.care.started")
    assert care["fields"]["upn"] is None  # UN3: no UPN
    assert [p.reason.value for p in result.problems if p.table == "Missing"] == ["end_before_start"]
    unknown = [p for p in result.problems if p.reason.value == "unknown_child"]
    assert [(p.table, p.row) for p in unknown] == [("Episodes", 3)]


def test_generator_is_deterministic_and_reads_cleanly(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", 3_000, seed=5)
    second = generate(tmp_path / "b", 3_000, seed=5)
    assert first == second
    assert first.episodes + first.missing == 3_000
    for name in ("Header", "Episodes", "Missing", "UASC"):
        assert (tmp_path / "a" / f"{name}.csv").read_bytes() == (
            tmp_path / "b" / f"{name}.csv"
        ).read_bytes()
    result = read_ssda903(tmp_path / "a", agency=AGENCY, id_secret=ID_SECRET)
    events = result.collect()
    assert result.rows_read["Episodes"] == first.episodes
    assert result.rows_read["Missing"] == first.missing
    assert result.problem_counts == {}
    assert result.events_by_type["child.missing.started"] == first.missing
    assert len({e["event_id"] for e in events}) == len(events)
    assert result.progress.done == result.progress.total > 0


def test_benchmark_reports_rates(tmp_path: Path) -> None:
    from broker.bench.ssda903 import run_benchmark

    generate(tmp_path, 2_000, seed=1)
    figures = run_benchmark(tmp_path)
    assert figures.rows > 2_000 and figures.events > 0
    assert figures.connector_rows_per_s > 0 and figures.baseline_rows_per_s > 0
    assert figures.ratio > 0


def test_legal_status_episodes_and_care_endings(tmp_path: Path) -> None:
    """RNE L is a placement change in the same placement with its legal status; an episode
    superseded by an overlapping one ends nothing; care ends at a DEC that no episode follows,
    whatever REC says; a REC ending care on the day a non-S episode continues it ends nothing."""
    folder = _write(
        tmp_path / "t",
        Header="CHILD,SEX,DOB,ETHNIC,UPN,MOTHER,MC_DOB\n7,1,01/06/2005,WBRI,UN3,,\n"
        "8,2,01/06/2006,WBRI,UN3,,\n",
        Episodes=EPISODES
        # child 7: S, then L (same placement, short breaks), then an overlapping S period
        + "7,01/01/2018,S,C2,N1,U1,PR1,01/03/2018,X1,CARPL,,AB1 2CD,\n"
        + "7,01/03/2018,L,V3,N1,U1,PR1,01/06/2018,E8,,,AB1 2CD,\n"
        + "7,01/05/2018,S,C1,N1,U3,PR1,01/07/2018,X1,,,EF5 6GH,\n"
        # child 8: REC E8 on the day a P episode continues the care, then a final X1
        + "8,01/01/2018,S,C2,N1,U1,PR1,01/02/2018,E8,CARPL,,,\n"
        + "8,01/02/2018,P,C2,N1,U3,PR1,01/04/2018,X1,,,,\n",
    )
    result = read_ssda903(folder, agency=AGENCY, id_secret=ID_SECRET)
    events = result.collect()
    got = [
        (
            e["subject"],
            e["event_type"],
            e["occurred_at"][:10],
            e["fields"].get("legal_status"),
            e["fields"].get("reason_new_episode"),
            e["fields"].get("reason"),
        )
        for e in events
    ]
    assert got == [
        ("7", "child.care.started", "2018-01-01", "C2", None, None),
        ("7", "child.placement.changed", "2018-03-01", "V3", "L", None),
        ("7", "child.care.started", "2018-05-01", "C1", None, None),
        ("7", "child.care.ended", "2018-07-01", None, None, "X1"),
        ("8", "child.care.started", "2018-01-01", "C2", None, None),
        ("8", "child.placement.changed", "2018-02-01", "C2", "P", "CARPL"),
        ("8", "child.care.ended", "2018-04-01", None, None, "X1"),
    ]
    found = {(p.row, p.column, p.reason.value) for p in result.problems}
    assert found == {
        (3, "DEC", "episode_superseded"),
        (4, "REC", "rec_inconsistent"),
        (5, "REC", "rec_inconsistent"),
        (6, "REC", "rec_inconsistent"),
    }
    assert not any(p.rejected for p in result.problems)
