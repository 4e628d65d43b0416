"""Published outputs: CSV in the official long layout, JSON for other systems, an HTML report.

Every output is built from the same disclosure-controlled rows (`published_rows`): nothing
unrounded or unsuppressed leaves this module, charts included.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.stats.disclosure import disclose_council, disclose_national
from broker.stats.measures import INCIDENT_TYPES, TIME_TO_FIRST_BANDS, Results

CSV_COLUMNS = ("time_period", "geographic_level", "la_name", "new_la_code", "measure", "value")
NATIONAL = "National"
LOCAL_AUTHORITY = "Local authority"
ENGLAND = "England"

# GOV.UK palette: the screenshot test looks for these colours in the charts.
COLOURS = {"missing": "#1d70b8", "away": "#f47738"}


@dataclass(frozen=True)
class Row:
    """One published cell."""

    time_period: str
    geographic_level: str
    la_name: str
    new_la_code: str
    measure: str
    value: str

    def as_dict(self) -> dict[str, str]:
        return {c: getattr(self, c) for c in CSV_COLUMNS}


def published_rows(results: Results, la_names: Mapping[str, str] | None = None) -> list[Row]:
    """All published cells, national first then councils by code, measures in catalogue order."""
    names = la_names or {}
    order = [m.id for m in results.measures]
    tp = results.period.time_period
    national = disclose_national(results.national, results.ratios(council_level=False))
    rows = [Row(tp, NATIONAL, ENGLAND, "", mid, national[mid]) for mid in order]
    council_order = [m.id for m in results.measures if m.council]
    for code in sorted(results.councils):
        values = disclose_council(
            results.council_counts(code),
            results.ratios(council_level=True),
            results.relations,
            results.bounds,
        )
        name = names.get(code, code)
        rows += [Row(tp, LOCAL_AUTHORITY, name, code, mid, values[mid]) for mid in council_order]
    return rows


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """The published layout: `time_period, geographic_level, la_name, new_la_code, measure,
    value`."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(r.as_dict() for r in rows)


def to_json(results: Results, rows: Sequence[Row]) -> dict[str, Any]:
    """The JSON form: period, measure definitions, and the same published cells as the CSV."""
    return {
        "time_period": results.period.time_period,
        "period": {
            "start": results.period.start.isoformat(),
            "end": results.period.end.isoformat(),
        },
        "measures": [
            {
                "id": m.id,
                "label": m.label,
                "kind": m.ratio.kind if m.ratio else "count",
                "published_per_council": m.council,
            }
            for m in results.measures
        ],
        "symbols": {
            "c": "suppressed (1 to 5, or would reveal one)",
            "z": "not applicable",
            "x": "not available",
            "k": "percentage rounding to 0 that is not 0",
        },
        "rows": [r.as_dict() for r in rows],
    }


def write_json(results: Results, rows: Sequence[Row], path: Path) -> None:
    path.write_text(json.dumps(to_json(results, rows), indent=2) + "\n", encoding="utf-8")


# -- HTML report ----------------------------------------------------------------------------


def _value(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _figure_png(draw: Any, width: float = 9.6, height: float = 3.6) -> str:
    """Run `draw(axes)` on a new figure and return a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    axes = figure.add_subplot()
    draw(axes)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _by_measure(rows: Sequence[Row], level: str) -> dict[tuple[str, str], str]:
    return {(r.new_la_code, r.measure): r.value for r in rows if r.geographic_level == level}


def _grouped_bars(
    axes: Any, labels: Sequence[str], series: Mapping[str, Sequence[float]], ylabel: str
) -> None:
    width = 0.8 / max(1, len(series))
    for n, (name, values) in enumerate(series.items()):
        positions = [i + (n - (len(series) - 1) / 2) * width for i in range(len(labels))]
        axes.bar(positions, values, width, label=name, color=COLOURS.get(name))
    axes.set_xticks(range(len(labels)))
    axes.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    axes.set_ylabel(ylabel)
    axes.legend()


def chart_incidents_by_month(results: Results, rows: Sequence[Row]) -> str:
    national = _by_measure(rows, NATIONAL)
    months = results.period.months()
    series = {
        t: [_value(national[("", f"{t}.incidents_by_month.{m}")]) or 0.0 for m in months]
        for t, _ in INCIDENT_TYPES
    }

    def draw(axes: Any) -> None:
        _grouped_bars(axes, months, series, "incidents (England, rounded to 10)")
        axes.set_title("Missing and away incidents by month of start")

    return _figure_png(draw)


def chart_time_to_first(rows: Sequence[Row]) -> str:
    national = _by_measure(rows, NATIONAL)
    bands = list(TIME_TO_FIRST_BANDS)
    series = {
        t: [
            _value(national[("", f"{t}.time_to_first_incident.from_placement_start.{b}")]) or 0.0
            for b in bands
        ]
        for t, _ in INCIDENT_TYPES
    }

    def draw(axes: Any) -> None:
        _grouped_bars(axes, [b.replace("_", " ") for b in bands], series, "children (rounded)")
        axes.set_title("Time from start of placement to first incident in the period")

    return _figure_png(draw)


def chart_council_comparison(
    results: Results, rows: Sequence[Row], names: Mapping[str, str]
) -> str:
    councils = _by_measure(rows, LOCAL_AUTHORITY)
    codes = sorted(results.councils)
    labels = [names.get(c, c) for c in codes]
    series: dict[str, list[float]] = {}
    notes: dict[int, str] = {}
    for t, _ in INCIDENT_TYPES:
        values: list[float] = []
        for i, code in enumerate(codes):
            text = councils[(code, f"{t}.children_pct")]
            number = _value(text)
            values.append(number or 0.0)
            if number is None:
                notes[i] = text
        series[t] = values

    def draw(axes: Any) -> None:
        _grouped_bars(axes, labels or ["(no councils)"], series or {"missing": [0.0]}, "%")
        axes.set_title("Percentage of looked after children with an incident, by council")
        for i, text in sorted(notes.items()):
            axes.annotate(text, (i, 0), ha="center", va="bottom", fontsize=8)

    return _figure_png(draw)


def render_html(
    results: Results, rows: Sequence[Row], la_names: Mapping[str, str] | None = None
) -> str:
    """A self-contained report a policy officer can open: charts first, then the tables."""
    names = la_names or {}
    charts = [
        ("incidents-by-month", chart_incidents_by_month(results, rows)),
        ("time-to-first", chart_time_to_first(rows)),
        ("council-comparison", chart_council_comparison(results, rows, names)),
    ]
    national = _by_measure(rows, NATIONAL)
    councils = _by_measure(rows, LOCAL_AUTHORITY)
    headline = [m for m in results.measures if m.council]
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Children looked after who went missing: {esc(results.period.time_period)}</title>",
        "<style>",
        "body{margin:0;font-family:Arial,Helvetica,sans-serif;color:#0b0c0c;background:#fff}",
        "header{height:120px;box-sizing:border-box;padding:16px 24px;overflow:hidden;"
        "background:#0b0c0c;color:#fff}",
        "header h1{margin:0 0 8px;font-size:24px}header p{margin:0;font-size:14px}",
        ".chart{display:block;width:960px;height:360px;margin:0 24px}",
        "main{padding:0 24px 24px}table{border-collapse:collapse;font-size:13px;margin:12px 0}",
        "td,th{border:1px solid #b1b4b6;padding:4px 8px;text-align:right}",
        "th:first-child,td:first-child{text-align:left}",
        "</style></head><body>",
        "<header><h1>Children looked after who went missing or were away without authorisation"
        "</h1>",
        f"<p>Period {esc(results.period.start.isoformat())} to "
        f"{esc(results.period.end.isoformat())} (time_period {esc(results.period.time_period)})."
        " Council counts 1 to 5 are shown as c, with further cells suppressed where a total would"
        " reveal them; England figures are rounded to the nearest 10; z not applicable,"
        " x not available, k a percentage below 0.5.</p></header>",
    ]
    parts += [
        f"<img class='chart' id='{cid}' alt='{cid.replace('-', ' ')}' src='{uri}'>"
        for cid, uri in charts
    ]
    parts.append("<main><h2>Measures</h2><table><tr><th>Measure</th><th>England</th>")
    codes = sorted(results.councils)
    parts += [
        f"<th>{esc(names[c])}<br>{esc(c)}</th>" if c in names else f"<th>{esc(c)}</th>"
        for c in codes
    ]
    parts.append("</tr>")
    for m in headline:
        parts.append(f"<tr><td>{esc(m.label)}</td><td>{esc(national[('', m.id)])}</td>")
        parts += [f"<td>{esc(councils[(c, m.id)])}</td>" for c in codes]
        parts.append("</tr>")
    parts.append(
        "</table><h2>England breakdowns</h2><table><tr><th>Measure</th><th>England</th></tr>"
    )
    for m in results.measures:
        if not m.council:
            parts.append(f"<tr><td>{esc(m.label)}</td><td>{esc(national[('', m.id)])}</td></tr>")
    parts.append("</table></main></body></html>\n")
    return "".join(parts)


def write_outputs(
    results: Results, out_dir: Path, la_names: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Write `statistics.csv`, `statistics.json` and `report.html` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = published_rows(results, la_names)
    paths = {
        "csv": out_dir / "statistics.csv",
        "json": out_dir / "statistics.json",
        "html": out_dir / "report.html",
    }
    write_csv(rows, paths["csv"])
    write_json(results, rows, paths["json"])
    paths["html"].write_text(render_html(results, rows, la_names), encoding="utf-8")
    return paths
