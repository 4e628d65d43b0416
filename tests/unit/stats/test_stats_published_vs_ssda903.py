"""The published files of `broker stats` against an independent recomputation from SSDA903.

Written apart from `broker/stats` and importing nothing of it: the SSDA903 sample is read with the
csv module, turned into statistics-feed events (standing in for the council connector and the
router under the statistics agreement), `broker stats` runs as a separate process on them, and
the department's definitions are applied to the raw tables here, with its disclosure control,
to predict every cell of `statistics.csv` (and the duration breakdown) for five reporting years.

The department's rules, as applied here (DOMAIN.md; docs/statistics.md):
- a child's episodes in DECOM order; each ends at its DEC, or at the next DECOM when that comes
  first or DEC is blank. A child is looked after on day d when an episode with DECOM <= d < end
  (end exclusive: the DEC day itself is not in care) has a legal status other than V3/V4;
- looked after during the year: such an episode overlaps 1 April..31 March (ending on 1 April
  counts);
- an incident counts when it starts in the year on a day the child is looked after;
- at 31 March: an incident that started on a day in care, not ended by 31 March (MIS_END blank
  or later), and the child still looked after on 31 March;
- council counts 1 to 5 are `c`; rates are `c` if a count in them is; `more than once` is at most
  incidents - children, so when that is 1 and `more than once` is `c`, incidents is `c` too;
- England and regions: counts rounded to 10 (5 up), 1 to 4 as `c`; rates from unrounded counts;
- percentage whole (5 up), `k` when it rounds to 0 but is not 0, `z` over no children;
  average 1 dp (5 up), `0` over no children.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import statistics
import subprocess
import sys
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT.parent / "shared" / "data" / "ssda903-fake"
LOOKUP = ROOT.parent / "shared" / "domain" / "la_lookup.csv"
COUNCIL, COUNCIL_NAME, OLD_CODE = "E09000033", "Westminster", "213"
REGION_CODE, REGION_NAME = "E13000001", "Inner London"
YEARS = (2014, 2015, 2016, 2017, 2018)
SHORT_BREAKS = {"V3", "V4"}
LABELS = {
    "cla": "Children looked after during the year",
    "M.children": "Children who had a missing incident during the year",
    "M.incidents": "Number of missing incidents during the year",
    "M.more_than_once": "Children who went missing more than once during the year",
    "M.at_31_march": "Children missing at 31 March",
    "M.pct": "Percentage of children who had a missing incident during the year",
    "M.average": "Average number of missing incidents per looked after child who went missing",
    "A.children": "Children who were away from placement without authorisation during the year",
    "A.incidents": "Number of away from placement without authorisation incidents during the year",
    "A.more_than_once": "Children who were away from placement without authorisation more than "
    "once during the year",
    "A.at_31_march": "Children away from placement without authorisation at 31 March",
    "A.pct": "Percentage of children who were away from placement without authorisation during "
    "the year",
    "A.average": "Average number of away from placement without authorisation incidents per "
    "looked after child",
}

pytestmark = pytest.mark.skipif(
    not (SAMPLE.exists() and LOOKUP.exists()), reason="../shared data absent"
)


def day(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text.strip(), "%d/%m/%Y").date()
    except ValueError:
        return None


def table(name: str) -> list[dict[str, str]]:
    with (SAMPLE / f"{name}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_sample() -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]], dict]:
    episodes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in table("episodes"):
        if day(row["DECOM"]):
            episodes[row["CHILD"]].append(
                {**row, "start": day(row["DECOM"]), "dec": day(row["DEC"])}
            )
    for rows in episodes.values():
        rows.sort(key=lambda e: e["start"])
        for this, following in zip(rows, [*rows[1:], None], strict=True):
            end = this["dec"]
            if following is not None and (end is None or end > following["start"]):
                end = following["start"]
            this["end"] = end
    missing = [
        {**r, "start": day(r["MIS_START"]), "until": day(r["MIS_END"])}
        for r in table("missing")
        if day(r["MIS_START"])
    ]
    header = {r["CHILD"]: r for r in table("header")}
    return episodes, missing, header


# -- the feed broker stats reads ----------------------------------------------------------------


def event(kind: str, child: str, on: dt.date, n: str, fields: dict, derived: dict) -> dict:
    return {
        "issuer": f"council.{COUNCIL}",
        "event_id": f"{kind}:{child}:{n}",
        "event_type": kind,
        "subject": None,
        "occurred_at": f"{on.isoformat()}T00:00:00Z",
        "fields": fields,
        "derived": {"child_pseudonym": hashlib.sha256(child.encode()).hexdigest()[:16], **derived},
        "agreements": ["dsa.national-collection.trafficked-children@1"],
        "verified": True,
    }


def feed(episodes: dict, missing: list, header: dict) -> list[dict]:
    out = []
    sexes = {"1": "m", "2": "f", "M": "m", "F": "f", "U": "u"}
    for child, rows in episodes.items():
        facts = header.get(child, {})
        for i, e in enumerate(rows):
            kind = "child.care.started" if e["RNE"] == "S" else "child.placement.changed"
            fields = {
                "legal_status": e["LS"] or None,
                "reason_new_episode": e["RNE"],
                "placement_type": e["PLACE"] or None,
                "sex": sexes.get(facts.get("SEX", "")),
                "ethnicity": facts.get("ETHNIC") or None,
            }
            out.append(event(kind, child, e["start"], str(i), fields, {}))
            following = rows[i + 1] if i + 1 < len(rows) else None
            if e["dec"] and (following is None or e["dec"] < following["start"]):
                out.append(event("child.care.ended", child, e["dec"], str(i), {}, {}))
    for n, m in enumerate(missing):
        common = {"missing_type": m["MISSING"]}
        when = {"missing_date": m["start"].isoformat()}
        out.append(event("child.missing.started", m["CHILD"], m["start"], str(n), common, when))
        if m["until"]:
            until = {**when, "returned_date": m["until"].isoformat()}
            out.append(event("child.missing.ended", m["CHILD"], m["until"], str(n), common, until))
    return out


# -- the department's definitions on the raw tables ---------------------------------------------


def in_care(rows: list[dict], on: dt.date) -> bool:
    current = [e for e in rows if e["start"] <= on and (e["end"] is None or on < e["end"])]
    return bool(current) and current[-1]["LS"] not in SHORT_BREAKS


def counts_for(year: int, episodes: dict, missing: list) -> tuple[dict[str, int], dict]:
    p0, p1 = dt.date(year - 1, 4, 1), dt.date(year, 3, 31)
    looked_after = {
        child
        for child, rows in episodes.items()
        if any(
            e["LS"] not in SHORT_BREAKS
            and e["start"] <= p1
            and (e["end"] is None or e["end"] >= p0)
            for e in rows
        )
    }
    out: dict[str, int] = defaultdict(int)
    out["cla"] = len(looked_after)
    durations: dict[str, list[int]] = defaultdict(list)
    for code in ("M", "A"):
        by_child: dict[str, list[dict]] = defaultdict(list)
        for m in missing:
            child = m["CHILD"]
            if (
                m["MISSING"] == code
                and child in looked_after
                and in_care(episodes[child], m["start"])
            ):
                by_child[child].append(m)
        for child, incidents in by_child.items():
            during = [m for m in incidents if p0 <= m["start"] <= p1]
            out[f"{code}.children"] += bool(during)
            out[f"{code}.incidents"] += len(during)
            out[f"{code}.more_than_once"] += len(during) > 1
            durations[code] += [(m["until"] - m["start"]).days for m in during if m["until"]]
            still_open = any(
                m["start"] <= p1 and (m["until"] is None or m["until"] > p1) for m in incidents
            )
            out[f"{code}.at_31_march"] += still_open and in_care(episodes[child], p1)
    return out, durations


def half_up(value: float | Decimal, places: str = "1") -> Decimal:
    return Decimal(value).quantize(Decimal(places), rounding=ROUND_HALF_UP)


def published(counts: dict[str, int], national: bool) -> dict[str, str]:
    hidden = set()
    values: dict[str, str] = {}
    for key in (
        "cla",
        "M.children",
        "M.incidents",
        "M.more_than_once",
        "M.at_31_march",
        "A.children",
        "A.incidents",
        "A.more_than_once",
        "A.at_31_march",
    ):
        n = counts[key]
        if national:
            values[key] = "c" if 1 <= n <= 4 else str(int(half_up(Decimal(n) / 10)) * 10)
        else:
            values[key] = "c" if 1 <= n <= 5 else str(n)
            if values[key] == "c":
                hidden.add(key)
    for code in ("M", "A"):
        incidents, children = counts[f"{code}.incidents"], counts[f"{code}.children"]
        pinned = (
            not national
            and f"{code}.more_than_once" in hidden
            and incidents - children <= 1
            and not {f"{code}.incidents", f"{code}.children"} & hidden
        )
        if pinned:
            hidden.add(f"{code}.incidents")
            values[f"{code}.incidents"] = "c"
        if {f"{code}.children", "cla"} & hidden:
            values[f"{code}.pct"] = "c"
        elif counts["cla"] == 0:
            values[f"{code}.pct"] = "z"
        else:
            pct = half_up(Decimal(100 * children) / counts["cla"], "1")
            values[f"{code}.pct"] = "k" if pct == 0 and children else str(pct)
        if {f"{code}.incidents", f"{code}.children"} & hidden:
            values[f"{code}.average"] = "c"
        elif children == 0:
            values[f"{code}.average"] = "0"
        else:
            values[f"{code}.average"] = str(half_up(Decimal(incidents) / children, "0.1"))
    return values


def expected_rows(episodes: dict, missing: list) -> list[dict[str, str]]:
    rows = []
    blank = {
        "region_code": "",
        "region_name": "",
        "old_la_code": "",
        "la_name": "",
        "new_la_code": "",
    }
    places = [
        ("National", blank, True),
        ("Regional", {**blank, "region_code": REGION_CODE, "region_name": REGION_NAME}, True),
        (
            "Local authority",
            {
                "region_code": REGION_CODE,
                "region_name": REGION_NAME,
                "old_la_code": OLD_CODE,
                "la_name": COUNCIL_NAME,
                "new_la_code": COUNCIL,
            },
            False,
        ),
    ]
    for year in YEARS:
        counts, _ = counts_for(year, episodes, missing)
        for level, geography, national in places:
            values = published(counts, national)
            for key, label in LABELS.items():
                rows.append(
                    {
                        "time_period": str(year),
                        "time_identifier": "Reporting year",
                        "geographic_level": level,
                        "country_code": "E92000001",
                        "country_name": "England",
                        **geography,
                        "CLA_group": label,
                        "number": values[key],
                    }
                )
    return rows


# -- running broker stats -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> tuple[dict, list, dict]:
    return read_sample()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, sample: tuple) -> Path:
    work = tmp_path_factory.mktemp("published")
    events = feed(*sample)
    (work / "feed.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "stats",
            "--input",
            str(work / "feed.jsonl"),
            "--out",
            str(work / "out"),
            "--year",
            "2018",
            "--la-lookup",
            str(LOOKUP),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    return work / "out"


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def test_statistics_csv_equals_the_independent_recomputation(outputs: Path, sample: tuple) -> None:
    got = read(outputs / "statistics.csv")
    expected = expected_rows(sample[0], sample[1])
    assert len(got) == len(expected) == 5 * 3 * 13
    for want, have in zip(expected, got, strict=True):
        assert have == want


def test_the_compared_years_are_not_empty(sample: tuple) -> None:
    """Guard against a vacuous comparison: 2017-18 holds most of the sample's incidents (31 of
    looked-after children, 27 of them in care), 2016-17 an away incident still open at 31 March;
    and the in-care rule really removes some (3 with no episode in force, 1 in a short break)."""
    episodes, missing, _ = sample
    busy, _ = counts_for(2018, episodes, missing)
    assert busy["cla"] > 1000 and busy["M.incidents"] >= 10 and busy["A.incidents"] >= 10
    assert busy["M.incidents"] + busy["A.incidents"] == 27
    before, _ = counts_for(2017, episodes, missing)
    assert before["A.incidents"] == 1 and before["A.at_31_march"] == 1


def test_duration_bands_mean_and_median_equal_the_recomputation(
    outputs: Path, sample: tuple
) -> None:
    bands = [
        (0, 0, "Less than 1 day"),
        (1, 2, "1 to 2 days"),
        (3, 7, "3 to 7 days"),
        (8, 10, "8 to 10 days"),
        (11, 15, "11 to 15 days"),
        (16, 20, "16 to 20 days"),
        (21, 30, "21 to 30 days"),
        (31, 10**6, "More than 30 days"),
    ]
    rows = read(outputs / "breakdowns.csv")
    for year in (2017, 2018):
        _, durations = counts_for(year, sample[0], sample[1])
        for code, kind in (("M", "Missing"), ("A", "Away from placement without authorisation")):
            got = {
                r["category"]: r["number"]
                for r in rows
                if r["time_period"] == str(year)
                and r["incident_type"] == kind
                and r["breakdown"] in ("Duration of incident", "Duration of ended incidents, days")
            }
            days = durations[code]
            for low, high, label in bands:
                n = sum(low <= d <= high for d in days)
                assert got[label] == (
                    "c" if 1 <= n <= 4 else str(int(half_up(Decimal(n) / 10)) * 10)
                )
            assert got["Mean"] == (
                str(half_up(Decimal(sum(days)) / len(days), "0.1")) if days else "z"
            )
            assert got["Median"] == (
                str(half_up(Decimal(statistics.median(days)), "0.1")) if days else "z"
            )
