"""`read_ssda903`: stream an SSDA903 return (CSV folder or XML file) as validated events.

Memory holds one small record per child (Header/UASC facts) and per episode (start, end,
placement district, reason for change), which placement reasons and the placement district
of a missing episode need; rows themselves stream. CSV tables are read Header, UASC, Episodes
(twice: a light first pass indexes every episode, so row order never matters), Missing;
events of Episodes come child by child (consecutive rows of one CHILD, sorted by DECOM).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal, NamedTuple

from connectors.council.exceptions import Ssda903Error
from connectors.council.ssda903 import mapping as m
from connectors.council.ssda903.problems import Reason, RowProblem
from connectors.council.ssda903.sources import (
    ByteCounter,
    SourceRow,
    XmlChild,
    csv_columns,
    csv_rows,
    find_tables,
    xml_children,
)
from connectors.council.ssda903.spec import TABLES, Ssda903Spec, TableValidator, parse_date
from connectors.ids import EventIds

Event = dict[str, Any]

# A problem in one of these columns means the row cannot be mapped at all.
KEY_COLUMNS: dict[str, frozenset[str]] = {
    "Header": frozenset({"CHILD"}),
    "UASC": frozenset({"CHILD"}),
    "Episodes": frozenset({"CHILD", "DECOM", "RNE"}),
    "Missing": frozenset({"CHILD", "MISSING", "MIS_START"}),
}
# Episode columns an event's schema requires (all are "canbeblank: no" in SSDA903 too). A row
# lacking one still yields its other events (a bad LS must not hide a placement move).
REQUIRED_FOR_EVENT: dict[str, tuple[str, ...]] = {
    m.CARE_STARTED: ("LS", "CIN", "PLACE"),
    m.PLACEMENT_CHANGED: ("PLACE",),
}


class _Episode(NamedTuple):
    decom: date
    dec: date | None
    district: str | None
    reason_place_change: str | None
    rne: str


class Ssda903Result:
    """The events of one SSDA903 input, produced lazily, and what was found on the way.

    Iterate `events` (or the result itself) once; counters and `problems` fill as it goes and
    are complete when `finished` is True. `collect()` drains it into a list.
    """

    def __init__(
        self,
        source: Path,
        form: Literal["csv", "xml"],
        tables: dict[str, Path],
        ids: EventIds,
        spec: Ssda903Spec,
        max_problems: int,
    ) -> None:
        self.source = source
        self.form = form
        self.tables = tables  # table -> CSV file (empty for XML)
        self.tables_missing = [t for t in TABLES if t not in tables] if form == "csv" else []
        self.agency = ids.agency
        self.ids = ids
        self.max_problems = max_problems
        self.problems: list[RowProblem] = []
        self.rows_read: Counter[str] = Counter()
        self.events_by_type: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()  # rows rejected, per reason
        self.problem_counts: Counter[str] = Counter()  # all problems, per reason
        self.no_event: Counter[str] = Counter()  # valid rows that map to no event type
        self.events_skipped: Counter[str] = Counter()  # events not made: a required value bad
        self.finished = False
        # The Episodes table is read twice: once to index episodes, once to map them.
        files = [source]
        if form == "csv":
            files = [*tables.values(), *([tables["Episodes"]] if "Episodes" in tables else [])]
        self.progress = ByteCounter(sum(p.stat().st_size for p in files))
        self._validators = {t: TableValidator(t, spec.tables[t]) for t in TABLES}
        self._facts: dict[str, m.ChildFacts] = {}
        self._timeline: dict[str, list[_Episode]] = {}
        self._duplicate_rows: set[int] = set()
        episodes_spec = spec.tables["Episodes"]
        self._date_format = episodes_spec["DECOM"].date_format or "%d/%m/%Y"
        self._reasons = episodes_spec["REASON_PLACE_CHANGE"].codes or frozenset()
        self._occurrences: Counter[tuple[str, date, str]] = Counter()
        self._header_known = form == "xml" or "Header" in tables
        self._uasc_known = form == "xml" or "UASC" in tables
        self.events: Iterator[Event] = self._run()

    def __iter__(self) -> Iterator[Event]:
        return self.events

    @property
    def rows_total(self) -> int:
        return sum(self.rows_read.values())

    def collect(self) -> list[Event]:
        """All events as a list (for small inputs and tests)."""
        return list(self.events)

    def summary(self) -> dict[str, Any]:
        """Rows read per table, events per type, rows rejected and problems per reason."""
        return {
            "source": str(self.source),
            "form": self.form,
            "tables_missing": list(self.tables_missing),
            "rows_read": dict(self.rows_read),
            "events": dict(self.events_by_type),
            "rows_rejected": dict(self.rejected),
            "problems": dict(self.problem_counts),
            "events_skipped": dict(self.events_skipped),
            "rows_without_event": dict(self.no_event),
        }

    # -- driving ---------------------------------------------------------------------------

    def _run(self) -> Iterator[Event]:
        produced = self._run_csv() if self.form == "csv" else self._run_xml()
        for event in produced:
            self.events_by_type[event["event_type"]] += 1
            yield event
        self.finished = True

    def _run_csv(self) -> Iterator[Event]:
        for table in ("Header", "UASC"):
            if table in self.tables:
                for row in csv_rows(table, self.tables[table], self.progress):
                    self._header(row) if table == "Header" else self._uasc(row)
        if "Episodes" in self.tables:
            for row in csv_rows("Episodes", self.tables["Episodes"], self.progress):
                self._index(row)
            rows = csv_rows("Episodes", self.tables["Episodes"], self.progress)
            for _, group in itertools.groupby(
                rows, key=lambda r: r.values.get("CHILD", "").strip()
            ):
                yield from self._episodes(group, indexed=True)
        if "Missing" in self.tables:
            for row in csv_rows("Missing", self.tables["Missing"], self.progress):
                yield from self._missing(row)

    def _run_xml(self) -> Iterator[Event]:
        child: XmlChild
        for child in xml_children(self.source, self.progress):
            self._header(child.header)
            if child.uasc is not None:
                self._uasc(child.uasc)
            yield from self._episodes(child.episodes)
            for row in child.missing:
                yield from self._missing(row)

    # -- problems --------------------------------------------------------------------------

    def _report(self, problem: RowProblem) -> None:
        self.problem_counts[problem.reason.value] += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)

    def _flag(self, table: str, row: int, column: str, reason: Reason, detail: str) -> None:
        """Report a problem of a row that is still mapped."""
        self._report(RowProblem(table, row, column, reason, detail))

    def _validate(self, row: SourceRow) -> dict[str, Any] | None:
        """Cleaned values, or None when a key column is unusable (the row is rejected)."""
        self.rows_read[row.table] += 1
        clean, problems = self._validators[row.table].check(row.row, row.values)
        keys = KEY_COLUMNS[row.table]
        fatal = next((p for p in problems if p.column in keys), None)
        for problem in problems:
            self._report(problem if fatal is None else dataclasses.replace(problem, rejected=True))
        if fatal is not None:
            self.rejected[fatal.reason.value] += 1
            return None
        clean["_row"] = row.row
        clean["_bad"] = frozenset(p.column for p in problems)
        return clean

    def _reject(self, table: str, row: int, column: str, reason: Reason, detail: str) -> None:
        self._report(RowProblem(table, row, column, reason, detail, rejected=True))
        self.rejected[reason.value] += 1

    def _facts_for(self, table: str, row: int, child: str) -> m.ChildFacts:
        facts = self._facts.get(child)
        if facts is None:
            if self._header_known:
                self._flag(table, row, "CHILD", Reason.UNKNOWN_CHILD, "no Header row")
            facts = m.ChildFacts(in_uasc_table=False if self._uasc_known else None)
            self._facts[child] = facts
        return facts

    # -- tables ----------------------------------------------------------------------------

    def _header(self, row: SourceRow) -> None:
        clean = self._validate(row)
        if clean is None:
            return
        child: str = clean["CHILD"]
        existing = self._facts.get(child)
        if existing is not None and existing.sex is not None:
            self._reject(row.table, row.row, "CHILD", Reason.DUPLICATE_CHILD, "second Header row")
            return
        facts = existing or m.ChildFacts(in_uasc_table=False if self._uasc_known else None)
        facts.dob = clean["DOB"]
        facts.sex = m.SEX_CODES.get(clean["SEX"] or "")
        facts.ethnicity = clean["ETHNIC"]
        facts.upn = m.upn_value(clean["UPN"])
        self._facts[child] = facts

    def _uasc(self, row: SourceRow) -> None:
        clean = self._validate(row)
        if clean is None:
            return
        facts = self._facts.get(clean["CHILD"])
        if facts is None:
            facts = self._facts_for(row.table, row.row, clean["CHILD"])
            facts.dob = clean["DOB"]
            facts.sex = m.SEX_CODES.get(clean["SEX"] or "")
        facts.in_uasc_table = True
        facts.duc = clean["DUC"]

    def _index(self, row: SourceRow) -> None:
        """Add a raw episode row to the child's timeline (or note it as a duplicate start).

        Runs before any episode event is made: over the whole Episodes table for CSV, over the
        child's episodes for XML. So the episode before any other is always known, whatever
        the row order, and a missing episode finds the placement it began in.
        """
        values = row.values
        child = (values.get("CHILD") or "").strip()
        decom = parse_date((values.get("DECOM") or "").strip(), self._date_format)
        if not child or decom is None:
            return  # reported when the row itself is validated
        dec_text = (values.get("DEC") or "").strip()
        dec = parse_date(dec_text, self._date_format) if dec_text else None
        reason = (values.get("REASON_PLACE_CHANGE") or "").strip().upper()
        rne = (values.get("RNE") or "").strip().upper()
        timeline = self._timeline.setdefault(child, [])
        at = bisect.bisect_left(timeline, decom, key=lambda e: e.decom)
        if at < len(timeline) and timeline[at].decom == decom:
            self._duplicate_rows.add(row.row)
            return
        entry = _Episode(
            decom,
            dec,
            m.postcode_district(values.get("PL_POST")),
            reason if reason in self._reasons else None,
            rne,
        )
        timeline.insert(at, entry)

    def _episodes(self, rows: Iterable[SourceRow], *, indexed: bool = False) -> Iterator[Event]:
        rows = list(rows)
        if not indexed:
            for row in rows:
                self._index(row)
        valid: list[dict[str, Any]] = []
        for row in rows:
            clean = self._validate(row)
            if clean is None:
                continue
            if row.row in self._duplicate_rows:
                self._reject(
                    "Episodes",
                    row.row,
                    "DECOM",
                    Reason.DUPLICATE_EPISODE,
                    "another episode of this child starts the same day",
                )
                continue
            valid.append(clean)
        valid.sort(key=lambda e: e["DECOM"])
        for episode in valid:
            yield from self._episode(episode)

    def _episode(self, episode: dict[str, Any]) -> Iterator[Event]:
        child: str = episode["CHILD"]
        row: int = episode["_row"]
        decom: date = episode["DECOM"]
        timeline = self._timeline.setdefault(child, [])
        at = bisect.bisect_left(timeline, decom, key=lambda e: e.decom)
        previous = timeline[at - 1] if at else None
        placement = m.placement_fields(episode)
        if episode.get("PL_POST") and placement["placement_postcode"] is None:
            self._flag(
                "Episodes",
                row,
                "PL_POST",
                Reason.INVALID_POSTCODE,
                "not a full or partial UK postcode",
            )
        if episode.get("HOME_POST") and m.normalise_postcode(episode["HOME_POST"]) is None:
            self._flag(
                "Episodes",
                row,
                "HOME_POST",
                Reason.INVALID_POSTCODE,
                "not a full or partial UK postcode",
            )
        facts = self._facts_for("Episodes", row, child)
        if facts.dob is not None and decom < facts.dob:
            self._flag(
                "Episodes",
                row,
                "DECOM",
                Reason.DATE_BEFORE_BIRTH,
                "episode starts before the date of birth",
            )
        rne: str = episode["RNE"]
        if rne == "S":
            if self._has_required(m.CARE_STARTED, episode):
                yield m.care_started(self.ids, child, facts, episode, placement)
        elif rne in m.NEW_EPISODE_RNE:
            if self._has_required(m.PLACEMENT_CHANGED, episode):
                reason = previous.reason_place_change if previous else None
                yield m.placement_changed(self.ids, child, facts, episode, reason, placement)
        else:
            self.no_event[f"Episodes RNE={rne}"] += 1
        after = bisect.bisect_right(timeline, decom, key=lambda e: e.decom)
        following = timeline[after] if after < len(timeline) else None
        if self._ends_care(episode, following):
            yield m.care_ended(self.ids, child, facts, episode)

    def _ends_care(self, episode: dict[str, Any], following: _Episode | None) -> bool:
        """Whether the episode's DEC ends the child's care (`child.care.ended` at DEC).

        SSDA903: REC X1 means a new episode began the same day, so care goes on; any other REC
        means care ended. The next episode of the child (by DECOM) is the check:
        - it began before DEC (overlapping episodes): it superseded this one, whose end is not
          the end of the care it continues; nothing is emitted;
        - it began on DEC: care ends only when it is a new period of care (RNE S) and REC says
          so; otherwise the next episode continues the care;
        - none began by DEC (a gap, or no later episode): care ended at DEC, whatever REC says
          (an X1 whose next episode is absent is reported, and its reason stays X1).
        """
        row: int = episode["_row"]
        rec: str | None = episode["REC"]
        ends = rec is not None and rec != m.REC_CONTINUES
        decom: date = episode["DECOM"]
        dec: date | None = episode["DEC"]
        if dec is None:
            if ends and "DEC" not in episode["_bad"]:
                self._flag(
                    "Episodes",
                    row,
                    "DEC",
                    Reason.END_DATE_MISSING,
                    f"REC {rec} ends care but DEC is blank; no child.care.ended",
                )
            return False
        if dec < decom:
            if ends:
                self._flag(
                    "Episodes",
                    row,
                    "DEC",
                    Reason.END_BEFORE_START,
                    "DEC is before DECOM; no child.care.ended",
                )
            return False
        if following is not None and following.decom < dec:
            self._flag(
                "Episodes",
                row,
                "DEC",
                Reason.EPISODE_SUPERSEDED,
                "DEC is after the next episode's DECOM; the next episode supersedes this "
                "one from its start, so no child.care.ended",
            )
            return False
        if following is not None and following.decom == dec:
            if ends and following.rne != "S":
                self._flag(
                    "Episodes",
                    row,
                    "REC",
                    Reason.REC_INCONSISTENT,
                    f"REC {rec} ends care but the next episode (RNE {following.rne}) "
                    "continues it on DEC; no child.care.ended",
                )
                return False
            return ends
        if rec is None:
            if "REC" not in episode["_bad"]:
                self._flag(
                    "Episodes",
                    row,
                    "REC",
                    Reason.REC_INCONSISTENT,
                    "DEC is given and no episode follows on it, but REC is blank; "
                    "no child.care.ended",
                )
            return False
        if not ends:
            self._flag(
                "Episodes",
                row,
                "REC",
                Reason.REC_INCONSISTENT,
                "REC X1 but no episode starts on DEC; care ends at DEC (child.care.ended "
                "with reason X1)",
            )
        return True

    def _has_required(self, event_type: str, episode: dict[str, Any]) -> bool:
        """True when the columns the event's schema requires are valid; else report the skip."""
        lacking = [c for c in REQUIRED_FOR_EVENT[event_type] if episode.get(c) is None]
        if not lacking:
            return True
        self.events_skipped[event_type] += 1
        self._flag(
            "Episodes",
            episode["_row"],
            lacking[0],
            Reason.REQUIRED_FOR_EVENT,
            f"{event_type} needs a valid {', '.join(lacking)}; event not made",
        )
        return False

    def _missing(self, row: SourceRow) -> Iterator[Event]:
        clean = self._validate(row)
        if clean is None:
            return
        child: str = clean["CHILD"]
        start: date = clean["MIS_START"]
        facts = self._facts_for("Missing", row.row, child)
        dob = facts.dob or clean["DOB"]
        if facts.dob is not None and clean["DOB"] is not None and clean["DOB"] != facts.dob:
            self._flag(
                "Missing",
                row.row,
                "DOB",
                Reason.DOB_MISMATCH,
                "differs from the Header DOB; the Header DOB is used",
            )
        if dob is not None and start < dob:
            self._flag(
                "Missing",
                row.row,
                "MIS_START",
                Reason.DATE_BEFORE_BIRTH,
                "missing episode starts before the date of birth",
            )
        key = (child, start, clean["MISSING"])
        self._occurrences[key] += 1
        occurrence = self._occurrences[key]
        district = self._placement_district(child, start)
        yield m.missing_started(self.ids, child, facts, dob, clean, occurrence, district)
        end: date | None = clean["MIS_END"]
        if end is None:
            return
        if end < start:
            self._flag(
                "Missing",
                row.row,
                "MIS_END",
                Reason.END_BEFORE_START,
                "MIS_END is before MIS_START; no child.missing.ended",
            )
            return
        yield m.missing_ended(self.ids, child, facts, dob, clean, occurrence)

    def _placement_district(self, child: str, day: date) -> str | None:
        """District of the placement the child was in on `day` (from the Episodes read)."""
        timeline = self._timeline.get(child)
        if not timeline:
            return None
        at = bisect.bisect_right(timeline, day, key=lambda e: e.decom)
        if not at:
            return None
        episode = timeline[at - 1]
        if episode.dec is not None and episode.dec < day:
            return None
        return episode.district


def read_ssda903(
    path: Path,
    *,
    agency: str,
    id_secret: bytes,
    schema_path: Path | None = None,
    max_problems: int = 10_000,
) -> Ssda903Result:
    """Open an SSDA903 return: a folder of CSV tables or one `EXPSSDA903` XML file.

    `id_secret` is the council's event id secret (`connectors.ids.event_ids_for` reads it from
    the config): the same return read with the same secret gives the same event ids.

    Problems with the input as a whole (no tables, a required column missing, not XML) raise
    `Ssda903Error` here; problems with rows never stop the rest and are reported on the result.
    `max_problems` bounds the problems kept in memory (all are still counted).
    """
    if not agency or "." not in agency:
        raise ValueError("agency must be an agency id such as 'council.E09000033'")
    ids = EventIds(agency, id_secret)
    spec = Ssda903Spec.load(schema_path)
    path = Path(path)
    if path.is_dir():
        tables = find_tables(path)
        for table, file in tables.items():
            present = set(csv_columns(file))
            missing = [
                c
                for c in TableValidator(table, spec.tables[table]).required_columns()
                if c not in present
            ]
            if missing:
                raise Ssda903Error(
                    f"{file}: the {table} table lacks column(s) {', '.join(missing)}; "
                    "add them (blank where unknown) and retry"
                )
        return Ssda903Result(path, "csv", tables, ids, spec, max_problems)
    if path.is_file():
        _check_xml_root(path)
        return Ssda903Result(path, "xml", {}, ids, spec, max_problems)
    raise Ssda903Error(f"{path} does not exist; give a folder of CSV tables or an XML file")


def _check_xml_root(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            for _, element in ET.iterparse(handle, events=("start",)):
                if element.tag.rsplit("}", 1)[-1].upper() != "EXPSSDA903":
                    raise Ssda903Error(
                        f"{path}: the root element is not EXPSSDA903; "
                        "give an SSDA903 XML export or a folder of CSV tables"
                    )
                return
    except ET.ParseError as exc:
        line, column = exc.position
        raise Ssda903Error(
            f"{path}: not an XML file (error at line {line}, column {column}); give an "
            "SSDA903 XML export or a folder of CSV tables"
        ) from None
