"""`report.html`: one self-contained page a policy officer can use.

Built only from published (disclosure-controlled) values. Charts are inline SVG drawn here: a
suppressed or unavailable value is drawn as its symbol (`c`, `x`, ...) where the point or bar
would be, never as a zero, so no chart is left blank by rounding. The layout of the top of the
page is fixed (a 120 px header, then three 960x360 px charts) so the screenshot test knows where
each chart is. A council picker (a few lines of JavaScript) switches the council shown in the
trend chart and the tables; the comparison table sorts on any column.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from broker.stats.measures import (
    BREAKDOWN_NAMES,
    INCIDENT_TYPES,
    PUBLISHED_LABELS,
    TIME_TO_FIRST_BANDS,
    TIME_TO_FIRST_LABELS,
)
from broker.stats.output import ENGLAND, ENGLAND_KEY, Publication

# GOV.UK palette: the screenshot test looks for these colours in the charts.
COLOURS = {"missing": "#1d70b8", "away": "#f47738"}
ENGLAND_COLOUR = "#0b0c0c"
REGION_COLOUR = "#85994b"
TEXT_COLOUR = "#505a5f"
CHART_W, CHART_H = 960, 360
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
TYPE_LABELS = {"missing": "Missing", "away": "Away from placement without authorisation"}
SHORT_TYPE_LABELS = {"missing": "Missing", "away": "Away without authorisation"}
esc = html.escape


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[str]  # published texts, one per x position
    colour: str
    dashed: bool = False


def _nice_max(values: Sequence[float]) -> float:
    """The top of the axis: four gridline steps of 1, 2, 2.5 or 5 times a power of ten."""
    top = max([*values, 1.0])
    scale = 1.0
    while True:
        for step in (0.25, 0.5, 1, 2, 2.5, 5):
            if 4 * step * scale >= top:
                return 4 * step * scale
        scale *= 10


def _axes(x: float, y: float, w: float, h: float, top: float, title: str, unit: str) -> list[str]:
    out = [
        f"<text x='{x}' y='{y - 12}' font-size='14' font-weight='bold' fill='#0b0c0c'>"
        f"{esc(title)}</text>"
    ]
    for n in range(5):
        value = top * n / 4
        gy = y + h - h * n / 4
        out.append(
            f"<line x1='{x}' y1='{gy:.1f}' x2='{x + w}' y2='{gy:.1f}' stroke='#dddddd'/>"
            f"<text x='{x - 6}' y='{gy + 4:.1f}' font-size='11' text-anchor='end' "
            f"fill='{TEXT_COLOUR}'>{value:g}{esc(unit)}</text>"
        )
    out.append(
        f"<line x1='{x}' y1='{y + h}' x2='{x + w}' y2='{y + h}' stroke='#0b0c0c'/>"
        f"<line x1='{x}' y1='{y}' x2='{x}' y2='{y + h}' stroke='#0b0c0c'/>"
    )
    return out


def _symbol(x: float, y: float, text: str, colour: str) -> str:
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' font-size='13' font-weight='bold' text-anchor='middle' "
        f"fill='{colour}'>{esc(text)}</text>"
    )


def line_panel(
    x: float,
    y: float,
    w: float,
    h: float,
    labels: Sequence[str],
    series: Sequence[Series],
    title: str,
    unit: str = "",
) -> list[str]:
    """A line chart; a value that is a symbol is written where the point would be."""
    numbers = [n for s in series for v in s.values if (n := _number(v)) is not None]
    top = _nice_max(numbers)
    out = _axes(x, y, w, h, top, title, unit)
    step = w / max(1, len(labels))
    xs = [x + step * (i + 0.5) for i in range(len(labels))]
    for i, label in enumerate(labels):
        out.append(
            f"<text x='{xs[i]:.1f}' y='{y + h + 16}' font-size='11' text-anchor='middle' "
            f"fill='{TEXT_COLOUR}'>{esc(label)}</text>"
        )
    for n, s in enumerate(series):
        points: list[tuple[float, float]] = []
        for i, text in enumerate(s.values):
            value = _number(text)
            if value is None:
                out.append(_symbol(xs[i], y + h - 6 - 14 * n, text, s.colour))
                continue
            points.append((xs[i], y + h - h * value / top))
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            # A dashed line is drawn wider, so that it shows beside a solid one it coincides with.
            dash = " stroke-dasharray='8 5' stroke-width='7'" if s.dashed else " stroke-width='3'"
            out.append(f"<polyline points='{path}' fill='none' stroke='{s.colour}'{dash}/>")
        out += [
            f"<circle cx='{px:.1f}' cy='{py:.1f}' r='4.5' fill='{s.colour}'/>" for px, py in points
        ]
        lx = x + 8 + 140 * n
        out.append(
            f"<rect x='{lx}' y='{y + h + 26}' width='14' height='4' fill='{s.colour}'/>"
            f"<text x='{lx + 18}' y='{y + h + 32}' font-size='11' fill='#0b0c0c'>"
            f"{esc(s.label[:20])}</text>"
        )
    return out


def bar_panel(
    x: float,
    y: float,
    w: float,
    h: float,
    labels: Sequence[str],
    series: Sequence[Series],
    title: str,
    label_size: int = 11,
) -> list[str]:
    """Grouped bars; a suppressed value is drawn as its symbol, not as an empty bar."""
    numbers = [n for s in series for v in s.values if (n := _number(v)) is not None]
    top = _nice_max(numbers)
    out = _axes(x, y, w, h, top, title, "")
    group = w / max(1, len(labels))
    width = group * 0.8 / max(1, len(series))
    for i, label in enumerate(labels):
        cx = x + group * (i + 0.5)
        lines = _wrap(label, max(6, int(group / (label_size * 0.55))))
        for k, line in enumerate(lines[:3]):
            out.append(
                f"<text x='{cx:.1f}' y='{y + h + 14 + 12 * k}' font-size='{label_size}' "
                f"text-anchor='middle' fill='{TEXT_COLOUR}'>{esc(line)}</text>"
            )
        for n, s in enumerate(series):
            bx = cx - group * 0.4 + width * n
            value = _number(s.values[i])
            if value is None:
                out.append(_symbol(bx + width / 2, y + h - 4, s.values[i], s.colour))
                continue
            bh = h * value / top
            out.append(
                f"<rect x='{bx:.1f}' y='{y + h - bh:.1f}' width='{width:.1f}' height='{bh:.1f}' "
                f"fill='{s.colour}'/>"
            )
    for n, s in enumerate(series):
        lx = x + w - 300 + 150 * n
        out.append(
            f"<rect x='{lx}' y='{y - 38}' width='12' height='12' fill='{s.colour}'/>"
            f"<text x='{lx + 16}' y='{y - 28}' font-size='11' fill='#0b0c0c'>"
            f"{esc(s.label[:26])}</text>"
        )
    return out


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _svg(chart_id: str, parts: Sequence[str], label: str, css: str = "chart") -> str:
    return (
        f"<svg class='{css}' id='{chart_id}' role='img' aria-label='{esc(label)}' "
        f"width='{CHART_W}' height='{CHART_H}' viewBox='0 0 {CHART_W} {CHART_H}' "
        f"xmlns='http://www.w3.org/2000/svg' font-family='Arial,Helvetica,sans-serif'>"
        + "".join(parts)
        + "</svg>"
    )


# -- the page ---------------------------------------------------------------------------------


def _years(pub: Publication) -> list[str]:
    return [r.period.time_period for r in pub.years]


def _year_label(time_period: str) -> str:
    if len(time_period) == 4 and time_period.isdigit():
        return f"{int(time_period) - 1}-{time_period[2:]}"
    return time_period


def trend_chart(pub: Publication, code: str) -> str:
    """Percentage who went missing / away over the years: the council, its region, England."""
    years = _years(pub)
    labels = [_year_label(y) for y in years]
    council = pub.councils[code]
    parts: list[str] = []
    for n, (t, _) in enumerate(INCIDENT_TYPES):
        mid = f"{t}.children_pct"
        series = [
            Series(ENGLAND, [pub.value(y, ENGLAND_KEY, mid) for y in years], ENGLAND_COLOUR),
        ]
        if council.region_code:
            series.append(
                Series(
                    council.region_name,
                    [pub.value(y, council.region_code, mid) for y in years],
                    REGION_COLOUR,
                    dashed=True,
                )
            )
        series.append(
            Series(council.la_name or code, [pub.value(y, code, mid) for y in years], COLOURS[t])
        )
        parts += line_panel(
            70 + n * 470,
            40,
            400,
            280,
            labels,
            series,
            f"{'Missing' if t == 'missing' else 'Away'}: % of children looked after",
            "%",
        )
    return _svg(
        f"trend-{code}",
        parts,
        f"Trend for {council.la_name or code}",
        "chart trend",
    )


def time_to_first_chart(pub: Publication) -> str:
    latest = pub.latest.period.time_period
    bands = list(TIME_TO_FIRST_BANDS)
    labels = [TIME_TO_FIRST_LABELS[b] if b != "not_known" else "Not known" for b in bands]
    parts: list[str] = []
    for n, ref in enumerate(("care_start", "placement_start")):
        series = [
            Series(
                SHORT_TYPE_LABELS[t],
                [
                    pub.value(latest, ENGLAND_KEY, f"{t}.time_to_first_incident.from_{ref}.{b}")
                    for b in bands
                ],
                COLOURS[t],
            )
            for t, _ in INCIDENT_TYPES
        ]
        title = "starting care" if ref == "care_start" else "starting the placement"
        parts += bar_panel(
            60 + n * 470, 60, 410, 240, labels, series, f"England: time from {title}", 10
        )
    return _svg("time-to-first", parts, "Time to the first incident, England")


def by_month_chart(pub: Publication) -> str:
    latest = pub.latest
    tp = latest.period.time_period
    months = latest.period.months()
    series = [
        Series(
            SHORT_TYPE_LABELS[t],
            [pub.value(tp, ENGLAND_KEY, f"{t}.incidents_by_month.{m}") for m in months],
            COLOURS[t],
        )
        for t, _ in INCIDENT_TYPES
    ]
    labels = [f"{MONTHS[int(m[5:]) - 1]} {m[:4]}" for m in months]
    parts = bar_panel(
        60, 60, 870, 260, labels, series, "England: incidents by month they started (rounded to 10)"
    )
    return _svg("incidents-by-month", parts, "Incidents by month, England")


STYLE = """
body{margin:0;font-family:Arial,Helvetica,sans-serif;color:#0b0c0c;background:#fff}
header{height:120px;box-sizing:border-box;padding:12px 24px;overflow:hidden;background:#0b0c0c;
color:#fff}
header h1{margin:0 0 6px;font-size:22px}header p{margin:0 0 6px;font-size:13px}
header label{font-size:14px}header select{font-size:14px}
.chart{display:block;margin:0 24px}
main{padding:0 24px 24px;max-width:1200px}
table{border-collapse:collapse;font-size:13px;margin:8px 0 16px}
td,th{border:1px solid #b1b4b6;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f2f1}
.scroll{max-height:520px;overflow:auto;border:1px solid #b1b4b6;display:inline-block}
.scroll table{margin:0}.scroll th{position:sticky;top:0;cursor:pointer}
tr.selected td{background:#fff7bf}
.note{font-size:13px;color:#505a5f;max-width:960px}
.council-view{display:none}.council-view.shown{display:block}
"""

SCRIPT = """
function showCouncil(code){
  document.querySelectorAll('.council-view').forEach(function(e){
    e.classList.toggle('shown', e.dataset.council === code);});
  document.querySelectorAll('#compare tbody tr').forEach(function(r){
    r.classList.toggle('selected', r.dataset.council === code);});
}
function sortBy(th){
  var table = th.closest('table'), body = table.tBodies[0];
  var col = Array.prototype.indexOf.call(th.parentNode.children, th);
  var down = th.dataset.dir !== 'desc'; th.dataset.dir = down ? 'desc' : 'asc';
  var rows = Array.prototype.slice.call(body.rows);
  function key(r){ var t = r.cells[col].dataset.sort || r.cells[col].textContent;
    var n = parseFloat(t); return isNaN(n) ? t : n; }
  rows.sort(function(a, b){ var x = key(a), y = key(b);
    if (typeof x !== typeof y) { return typeof x === 'number' ? -1 : 1; }
    return (x < y ? -1 : x > y ? 1 : 0) * (down ? -1 : 1); });
  rows.forEach(function(r){ body.appendChild(r); });
}
document.addEventListener('DOMContentLoaded', function(){
  var pick = document.getElementById('council');
  if (pick) { pick.addEventListener('change', function(){ showCouncil(pick.value); });
    showCouncil(pick.value); }
  document.querySelectorAll('#compare th').forEach(function(th){
    th.addEventListener('click', function(){ sortBy(th); }); });
});
"""


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], table_id: str = "") -> str:
    ident = f" id='{table_id}'" if table_id else ""
    out = [f"<table{ident}><thead><tr>"]
    out += [f"<th>{esc(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _sort_key(text: str) -> str:
    """Symbols sort after numbers (the script sorts numbers first)."""
    return text if _number(text) is not None else f"~{text}"


def render_html(pub: Publication, selected: str | None = None) -> str:
    """The whole report."""
    years = _years(pub)
    latest = years[-1]
    codes = sorted(pub.councils, key=lambda c: (pub.councils[c].la_name or c, c))
    chosen = selected if selected in pub.councils else (codes[0] if codes else None)
    period = pub.latest.period
    first = pub.years[0].period
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Children looked after who went missing or were away without authorisation"
        f"</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>",
        "<header><h1>Children looked after who went missing or were away from placement "
        "without authorisation</h1>",
        f"<p>Reporting years {esc(_year_label(first.time_period))} to "
        f"{esc(_year_label(period.time_period))} ({first.start:%d %B %Y} to "
        f"{period.end:%d %B %Y}); earlier years are revised as events arrive. Council counts "
        "1 to 5 are shown as c; England and regions are rounded to the nearest 10, with 1 to 4 "
        "shown as c.</p>",
    ]
    if chosen is not None:
        options = "".join(
            f"<option value='{esc(c)}'{' selected' if c == chosen else ''}>"
            f"{esc(pub.councils[c].la_name or c)} ({esc(c)})</option>"
            for c in codes
        )
        parts.append(
            f"<label for='council'>Council: </label><select id='council'>{options}</select>"
        )
    parts.append("</header>")
    # The three charts, in a fixed layout (the screenshot test relies on it).
    if chosen is None:
        parts.append(_svg("trend-none", line_panel(70, 40, 860, 280, [], [], "No councils"), ""))
    parts += [_view(code, chosen, trend_chart(pub, code)) for code in codes]
    parts.append(time_to_first_chart(pub))
    parts.append(by_month_chart(pub))
    parts.append("<main>")
    parts += _council_tables(pub, codes, years, chosen)
    parts += _inquiry_section(pub, codes, latest, chosen)
    parts += _comparison(pub, codes, latest)
    parts += _breakdowns(pub, latest)
    parts += _nrm_section(pub)
    parts += _caveats(pub, codes, years)
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _view(code: str, chosen: str | None, inner: str) -> str:
    """A part of the page shown only while its council is picked."""
    shown = " shown" if code == chosen else ""
    return f"<div class='council-view{shown}' data-council='{esc(code)}'>{inner}</div>"


def _council_tables(
    pub: Publication, codes: Sequence[str], years: Sequence[str], chosen: str | None
) -> list[str]:
    head = ["Measure", *(_year_label(y) for y in years)]
    out = ["<h2>The thirteen published measures, five years</h2>"]
    out.append(
        "<h3>England</h3>"
        + _table(
            head,
            [
                [label, *(pub.value(y, ENGLAND_KEY, mid) for y in years)]
                for mid, label in PUBLISHED_LABELS.items()
            ],
        )
    )
    for code in codes:
        council = pub.councils[code]
        rows = [
            [label, *(pub.value(y, code, mid) for y in years)]
            for mid, label in PUBLISHED_LABELS.items()
        ]
        title = f"<h3>{esc(council.la_name or code)} ({esc(code)})</h3>"
        out.append(_view(code, chosen, title + _table(head, rows)))
    return out


# The inquiry's measures, one row each, with a column for missing and one for away.
INQUIRY_ROWS = (
    ("children", "Went missing / away during the year"),
    ("children_pct", "  as a % of the cohort"),
    ("first_within_48_hours_of_care_start", "First incident within 48 hours of starting care"),
    ("first_within_48_hours_of_care_start_pct", "  as a % of those who went"),
    ("first_within_7_days_of_care_start", "First incident within 7 days of starting care"),
    ("first_within_7_days_of_care_start_pct", "  as a % of those who went"),
    (
        "first_within_48_hours_of_placement_start",
        "First incident within 48 hours of starting the placement",
    ),
    ("first_within_48_hours_of_placement_start_pct", "  as a % of those who went"),
    (
        "first_within_7_days_of_placement_start",
        "First incident within 7 days of starting the placement",
    ),
    ("first_within_7_days_of_placement_start_pct", "  as a % of those who went"),
    ("children_missing_at_period_end", "Still missing / away at 31 March"),
    ("children_missing_at_period_end_pct", "  as a % of those who went"),
    ("children_missing_28_days_or_more", "Missing / away 28 days or more in one incident"),
    ("children_missing_28_days_or_more_pct", "  as a % of those who went"),
)


def _inquiry_section(
    pub: Publication, codes: Sequence[str], latest: str, chosen: str | None
) -> list[str]:
    """The 48-hour / 7-day picture for children with a trafficking concern or NRM referral."""
    out = [
        "<h2>Children with a trafficking concern or NRM referral: the 48-hour and 7-day picture"
        "</h2>",
        "<p class='note'>The 2012 inquiry found most trafficked children who go missing from "
        "care do so within a week of being placed, many within 48 hours. No official table "
        "counts this. The cohort: children looked after during the year with a trafficking "
        "concern or an NRM referral by their council. The same disclosure control applies (c is "
        "a suppressed small number, never a zero); x: the council has never sent a trafficking "
        "flag or referral. All figures in inquiry.csv.</p>",
    ]
    head = ["", *(SHORT_TYPE_LABELS[t] for t, _ in INCIDENT_TYPES)]

    def table(key: str) -> str:
        cohort = pub.value(latest, key, "trafficking.children_looked_after")
        rows = [["Children in the cohort", cohort, cohort]]
        rows += [
            [
                label,
                *(pub.value(latest, key, f"trafficking.{t}.{suffix}") for t, _ in INCIDENT_TYPES),
            ]
            for suffix, label in INQUIRY_ROWS
        ]
        return _table(head, rows)

    out.append(f"<h3>England, {esc(_year_label(latest))}</h3>" + table(ENGLAND_KEY))
    for code in codes:
        title = f"<h3>{esc(pub.councils[code].la_name or code)}, {esc(_year_label(latest))}</h3>"
        out.append(_view(code, chosen, title + table(code)))
    return out


def _comparison(pub: Publication, codes: Sequence[str], latest: str) -> list[str]:
    columns = [
        ("children_looked_after", "Children looked after"),
        ("missing.children_pct", "% went missing"),
        ("missing.incidents_per_child", "Missing incidents per child"),
        ("missing.children_at_period_end", "Missing at 31 March"),
        ("away.children_pct", "% away"),
        ("away.incidents_per_child", "Away incidents per child"),
    ]
    england = pub.value(latest, ENGLAND_KEY, "missing.children_pct")
    out = [
        f"<h2>Councils compared, {esc(_year_label(latest))}</h2>",
        "<p class='note'>Click a column heading to sort. The difference is the council's "
        f"percentage who went missing minus England's ({esc(england)}%) and its region's.</p>",
        "<div class='scroll'><table id='compare'><thead><tr><th>Council</th><th>Region</th>",
    ]
    out += [f"<th>{esc(label)}</th>" for _, label in columns]
    out.append(
        "<th>% missing minus England</th><th>% missing minus region</th></tr></thead><tbody>"
    )
    for code in codes:
        council = pub.councils[code]
        cells = [pub.value(latest, code, mid) for mid, _ in columns]
        mine = _number(pub.value(latest, code, "missing.children_pct"))
        diffs = []
        for key in (ENGLAND_KEY, council.region_code):
            other = _number(pub.value(latest, key, "missing.children_pct")) if key else None
            diffs.append(f"{mine - other:+g}" if mine is not None and other is not None else "")
        out.append(
            f"<tr data-council='{esc(code)}'><td>{esc(council.la_name or code)}</td>"
            f"<td>{esc(council.region_name)}</td>"
            + "".join(f"<td data-sort='{esc(_sort_key(c))}'>{esc(c)}</td>" for c in cells)
            + "".join(f"<td>{esc(d)}</td>" for d in diffs)
            + "</tr>"
        )
    out.append("</tbody></table></div>")
    return out


def _breakdowns(pub: Publication, latest: str) -> list[str]:
    out = [f"<h2>England breakdowns, {esc(_year_label(latest))}</h2>"]
    by_breakdown: dict[str, dict[str, dict[str, str]]] = {}
    for m in pub.latest.measures:
        if m.group != "breakdown":
            continue
        cell = by_breakdown.setdefault(m.breakdown, {}).setdefault(m.category, {})
        cell[m.incident] = pub.value(latest, ENGLAND_KEY, m.id)
    types = [TYPE_LABELS[t] for t, _ in INCIDENT_TYPES]
    for name in BREAKDOWN_NAMES.values():
        categories = by_breakdown.get(name)
        if not categories:
            continue
        out.append(f"<h3>{esc(name)}</h3>")
        out.append(
            _table(
                ["", *types],
                [[c, *(values.get(t, "") for t in types)] for c, values in categories.items()],
            )
        )
    return out


def _nrm_section(pub: Publication) -> list[str]:
    out = [
        "<h2>National Referral Mechanism</h2>",
        "<p class='note'>Referrals by the date they were made and decisions by the date they "
        "were made, as the Home Office counts them (calendar years and quarters, unrounded UK "
        "counts): every referral and decision the statistics feed carries.</p>",
    ]
    if not pub.nrm:
        out.append("<p>The statistics feed has carried no NRM referral or decision.</p>")
        return out
    periods: dict[str, dict[tuple[str, str, str], str]] = {}
    for row in pub.nrm:
        cells = periods.setdefault(row["period_label"], {})
        cells[(row["nrm_table"], row["age_at_exploitation"], row["category"])] = row["number"]
    child = "Child (17 and under)"
    columns = [
        ("Referrals", "All ages", "Total", "All referrals"),
        ("Referrals", child, "Total", "Referrals of children"),
        ("Reasonable grounds decisions", child, "Positive", "Children: positive RG"),
        ("Reasonable grounds decisions", child, "Negative", "Children: negative RG"),
        ("Conclusive grounds decisions", child, "Positive", "Children: positive CG"),
        ("Conclusive grounds decisions", child, "Negative", "Children: negative CG"),
    ]
    out.append(
        _table(
            ["Period", *(c[3] for c in columns)],
            [
                [label, *(cells.get(c[:3], "0") for c in columns)]
                for label, cells in periods.items()
            ],
        )
    )
    years = [label for label in periods if label.startswith("January")]
    head = [""]
    for label in years:
        year = label.rsplit(" ", 1)[-1]
        head += [f"{year}: children", f"{year}: all ages"]
    for table in (
        "Referrals by exploitation type",
        "Referrals by exploitation location",
        "Referrals by first responder type",
    ):
        categories = list(dict.fromkeys(c for (name, _, c) in periods[years[0]] if name == table))
        rows = [
            [
                category,
                *(
                    periods[y].get((table, a, category), "0")
                    for y in years
                    for a in (child, "All ages")
                ),
            ]
            for category in categories
        ]
        out.append(f"<h3>{esc(table)}, by calendar year</h3>" + _table(head, rows))
    return out


def _caveats(pub: Publication, codes: Sequence[str], years: Sequence[str]) -> list[str]:
    only_missing = []
    for code in codes:
        missing = sum(_number(pub.value(y, code, "missing.incidents")) or 0 for y in years)
        away = [pub.value(y, code, "away.incidents") for y in years]
        if missing > 0 and all(a == "0" for a in away):
            only_missing.append(pub.councils[code].la_name or code)
    out = [
        "<h2>Caveats</h2><ul class='note'>",
        "<li>As the department notes, some councils record every incident as missing and none "
        "as away from placement without authorisation, so their missing figures are higher and "
        "their away figures lower than elsewhere; compare the two together. "
        + (
            f"Councils here with missing incidents but no away incidents in any year: "
            f"{esc(', '.join(only_missing))}.</li>"
            if only_missing
            else "No council here recorded missing incidents but no away incidents.</li>"
        ),
        "<li>Children looked after under an agreed series of short-term breaks are excluded, "
        "and incidents count only when they start while the child is looked after.</li>",
        "<li>England and regional figures are rounded to the nearest 10 and are not the sum of "
        "the councils' published figures; their percentages and averages use unrounded counts."
        "</li>",
    ]
    boundary = pub.value(years[-1], ENGLAND_KEY, "missing.incidents_by_placement.inside_boundary")
    if boundary == "x":
        out.append(
            "<li>Placement inside or outside the council boundary is x (not available): the "
            "statistics feed does not carry the placement's local authority yet (it needs the "
            "ONS Postcode Directory).</li>"
        )
    if pub.not_in_lookup:
        out.append(
            "<li>Councils not in the council lookup (no name or region): "
            f"{esc(', '.join(pub.not_in_lookup))}.</li>"
        )
    out.append(
        "<li>Symbols: c suppressed, z not applicable, x not available, k a percentage below "
        "0.5 that is not zero.</li></ul>"
    )
    return out
