"""Published outputs, in the department's tidy layout: the thirteen measures of "Children looked
after in England" (`statistics.csv`), our extra files in the same style (`breakdowns.csv`,
`inquiry.csv`, `nrm.csv`), a JSON form of all of them and the HTML report.

Every output is built from the same disclosure-controlled values (`Publication`): nothing
unrounded or unsuppressed leaves this module, charts included. CSV files are UTF-8 with a byte
order mark, as the department's are (so that spreadsheet programs read them as UTF-8).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.stats.disclosure import disclose_council, disclose_national
from broker.stats.events import StatsState
from broker.stats.exceptions import StatsError
from broker.stats.measures import MeasureDef, Period, Results, aggregate
from broker.stats.nrm import NRM_COLUMNS, nrm_rows

# The department's published columns, in its order.
DFE_COLUMNS = (
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
)
GEOGRAPHY_COLUMNS = DFE_COLUMNS[:10]
BREAKDOWN_COLUMNS = (
    *DFE_COLUMNS[:5],
    "incident_type",
    "breakdown",
    "category",
    "number",
)
INQUIRY_COLUMNS = (*GEOGRAPHY_COLUMNS, "incident_type", "measure", "number")
CSV_COLUMNS = DFE_COLUMNS  # the main file's columns (older name)

NATIONAL = "National"
REGIONAL = "Regional"
LOCAL_AUTHORITY = "Local authority"
ENGLAND = "England"
ENGLAND_CODE = "E92000001"
ENGLAND_KEY = ENGLAND_CODE  # key of England's values in `Publication.values`
CSV_ENCODING = "utf-8-sig"  # UTF-8 with a byte order mark

SYMBOLS = {
    "c": "suppressed: a council count from 1 to 5 (or one that would reveal one), or an England"
    " or regional count from 1 to 4 (which rounding would show as 0)",
    "z": "not applicable",
    "x": "not available: the statistics feed does not carry what the measure needs",
    "k": "a percentage that rounds to 0 but is not 0",
}


@dataclass(frozen=True)
class Council:
    """A council as the department names it (`la_lookup.csv`)."""

    new_la_code: str
    la_name: str = ""
    old_la_code: str = ""
    region_code: str = ""
    region_name: str = ""


LOOKUP_COLUMNS = ("region_code", "region_name", "old_la_code", "la_name", "new_la_code")


def read_la_lookup(path: Path) -> dict[str, Council]:
    """`region_code,region_name,old_la_code,la_name,new_la_code` rows, by new (ONS) code."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != LOOKUP_COLUMNS:
                raise StatsError(
                    f"{path} is not a council lookup: its header must be "
                    f"{','.join(LOOKUP_COLUMNS)}; check --la-lookup"
                )
            return {
                row["new_la_code"].strip(): Council(**{k: row[k].strip() for k in LOOKUP_COLUMNS})
                for row in reader
                if row.get("new_la_code")
            }
    except OSError as exc:
        raise StatsError(f"cannot read {path}: {exc.strerror}; check --la-lookup") from None


def time_identifier(period: Period) -> str:
    """`Reporting year` for 1 April to 31 March, as the department labels it; else `Period`."""
    is_year = (period.start.month, period.start.day, period.end.month, period.end.day) == (
        4,
        1,
        3,
        31,
    ) and period.end.year == period.start.year + 1
    return "Reporting year" if is_year else "Period"


def _geography(
    level: str, council: Council | None = None, region: Council | None = None
) -> dict[str, str]:
    row = dict.fromkeys(GEOGRAPHY_COLUMNS[2:], "")
    row.update(geographic_level=level, country_code=ENGLAND_CODE, country_name=ENGLAND)
    place = council or region
    if place is not None:
        row.update(region_code=place.region_code, region_name=place.region_name)
    if council is not None:
        row.update(
            old_la_code=council.old_la_code,
            la_name=council.la_name,
            new_la_code=council.new_la_code,
        )
    return row


@dataclass
class Publication:
    """Every published value of a run, and the rows of each file.

    `values[(time_period, key)][measure id]` is the published text, `key` being `ENGLAND_KEY`,
    a region code or a council's ONS code.
    """

    years: list[Results]
    councils: dict[str, Council]
    regions: dict[str, str]  # region code -> name, regions with a reporting council
    values: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    statistics: list[dict[str, str]] = field(default_factory=list)
    breakdowns: list[dict[str, str]] = field(default_factory=list)
    inquiry: list[dict[str, str]] = field(default_factory=list)
    nrm: list[dict[str, str]] = field(default_factory=list)
    not_in_lookup: list[str] = field(default_factory=list)

    @property
    def latest(self) -> Results:
        return self.years[-1]

    @property
    def measures(self) -> list[MeasureDef]:
        return self.latest.measures

    def value(self, time_period: str, key: str, measure: str) -> str:
        return self.values.get((time_period, key), {}).get(measure, "x")


def publish(
    years: Sequence[Results], state: StatsState, lookup: Mapping[str, Council] | None = None
) -> Publication:
    """Disclosure-controlled values for every period, and the rows of every file."""
    known = dict(lookup or {})
    codes = sorted({code for r in years for code in r.councils})
    councils = {code: known.get(code, Council(code)) for code in codes}
    regions = {c.region_code: c.region_name for c in councils.values() if c.region_code}
    pub = Publication(
        list(years),
        councils,
        dict(sorted(regions.items())),
        not_in_lookup=[c for c in codes if c not in known],
    )
    for results in years:
        _publish_period(pub, results)
    pub.nrm = nrm_rows(state)
    return pub


def _publish_period(pub: Publication, results: Results) -> None:
    tp = results.period.time_period
    ti = time_identifier(results.period)
    national = disclose_national(results.national, results.ratios(council_level=False))
    national.update(results.statistics)
    pub.values[(tp, ENGLAND_KEY)] = national
    places: list[tuple[str, dict[str, str], str]] = [(ENGLAND_KEY, _geography(NATIONAL), NATIONAL)]
    for region_code, region_name in pub.regions.items():
        members = [
            results.councils[c]
            for c, info in pub.councils.items()
            if info.region_code == region_code and c in results.councils
        ]
        counts = aggregate(results.measures, members)
        pub.values[(tp, region_code)] = disclose_national(
            {k: v for k, v in counts.items() if k in results.council_measure_ids},
            results.ratios(council_level=True),
        )
        region = Council("", region_code=region_code, region_name=region_name)
        places.append((region_code, _geography(REGIONAL, region=region), REGIONAL))
    for code in sorted(results.councils):
        pub.values[(tp, code)] = disclose_council(
            results.council_counts(code),
            results.ratios(council_level=True),
            results.relations,
            results.bounds,
        )
        places.append((code, _geography(LOCAL_AUTHORITY, council=pub.councils[code]), ""))
    when = {"time_period": tp, "time_identifier": ti}
    for key, geography, _level in places:
        values = pub.values[(tp, key)]
        for m in results.measures:
            if m.group == "published":
                pub.statistics.append(
                    {**when, **geography, "CLA_group": m.label, "number": values[m.id]}
                )
        for m in results.measures:
            if m.group == "inquiry":
                pub.inquiry.append(
                    {
                        **when,
                        **geography,
                        "incident_type": m.incident,
                        "measure": m.label,
                        "number": values[m.id],
                    }
                )
    england = {k: places[0][1][k] for k in DFE_COLUMNS[2:5]}
    for m in results.measures:
        if m.group == "breakdown":
            pub.breakdowns.append(
                {
                    **when,
                    **england,
                    "incident_type": m.incident,
                    "breakdown": m.breakdown,
                    "category": m.category,
                    "number": national[m.id],
                }
            )


def write_csv(rows: Iterable[Mapping[str, str]], columns: Sequence[str], path: Path) -> None:
    """A tidy CSV file, UTF-8 with a byte order mark."""
    with path.open("w", newline="", encoding=CSV_ENCODING) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


FILE_OF_GROUP = {
    "published": "statistics.csv",
    "breakdown": "breakdowns.csv",
    "inquiry": "inquiry.csv",
}
FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "statistics": ("statistics.csv", DFE_COLUMNS),
    "breakdowns": ("breakdowns.csv", BREAKDOWN_COLUMNS),
    "inquiry": ("inquiry.csv", INQUIRY_COLUMNS),
    "nrm": ("nrm.csv", NRM_COLUMNS),
}


def to_json(pub: Publication) -> dict[str, Any]:
    """The JSON form: the periods, every measure's definition, and each file's columns and rows
    (each row a list of values in the columns' order, as in the CSV file)."""
    return {
        "time_periods": [
            {
                "time_period": r.period.time_period,
                "time_identifier": time_identifier(r.period),
                "start": r.period.start.isoformat(),
                "end": r.period.end.isoformat(),
            }
            for r in pub.years
        ],
        "measures": [
            {
                "id": m.id,
                "label": m.label,
                "file": FILE_OF_GROUP[m.group],
                "kind": m.ratio.kind if m.ratio else "statistic" if m.statistic else "count",
                "published_per_council": m.council,
            }
            for m in pub.measures
        ],
        "symbols": SYMBOLS,
        "councils_not_in_lookup": pub.not_in_lookup,
        **{
            name: {
                "columns": list(cols),
                "rows": [[r[c] for c in cols] for r in getattr(pub, name)],
            }
            for name, (_, cols) in FILES.items()
        },
    }


def write_outputs(
    years: Sequence[Results] | Results,
    out_dir: Path,
    state: StatsState | None = None,
    lookup: Mapping[str, Council] | None = None,
    selected: str | None = None,
) -> dict[str, Path]:
    """Write the four CSV files, `statistics.json` and `report.html` into `out_dir`."""
    from broker.stats.report import render_html

    out_dir.mkdir(parents=True, exist_ok=True)
    periods = [years] if isinstance(years, Results) else list(years)
    pub = publish(periods, state or StatsState(), lookup)
    paths: dict[str, Path] = {}
    for name, (filename, columns) in FILES.items():
        paths[name] = out_dir / filename
        write_csv(getattr(pub, name), columns, paths[name])
    paths["json"] = out_dir / "statistics.json"
    paths["json"].write_text(
        json.dumps(to_json(pub), separators=(",", ":")) + "\n", encoding="utf-8"
    )
    paths["html"] = out_dir / "report.html"
    paths["html"].write_text(render_html(pub, selected), encoding="utf-8")
    return paths
