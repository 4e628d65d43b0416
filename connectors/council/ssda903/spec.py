"""The SSDA903 column specification (code lists, date formats, blanks) and row validation.

The specification is the DfE-derived `SSDA903_schema_2024.yml`. By default it is read from
`../shared/domain/` beside the repository root; `BROKER_SSDA903_SCHEMA` or an explicit path
overrides that. Two deliberate departures from the file, both documented national changes:
`SEX` also accepts `M`, `F`, `U` (the coding from 2023-24 on), and codes are compared after
trimming and upper-casing (`x1` is `X1`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from broker.agreements.loader import YamlLimitError, load_yaml
from broker.inbound import text_problem
from connectors.council.exceptions import Ssda903Error
from connectors.council.ssda903.problems import Reason, RowProblem, safe_code

SCHEMA_ENV = "BROKER_SSDA903_SCHEMA"
SCHEMA_FILE = "SSDA903_schema_2024.yml"
TABLES = ("Header", "Episodes", "Missing", "UASC")

# Codes accepted beyond the 2024 file: the sex coding changed from 1/2 to M/F/U in 2023-24.
_EXTRA_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Header", "SEX"): frozenset({"M", "F", "U"}),
    ("UASC", "SEX"): frozenset({"M", "F", "U"}),
}

# Values of these columns are personal; they are never quoted in problems (dates never are).
PERSONAL_COLUMNS = frozenset({"CHILD", "DOB", "MC_DOB", "UPN", "HOME_POST", "PL_POST", "URN"})


def default_schema_path() -> Path:
    """`$BROKER_SSDA903_SCHEMA`, else `../shared/domain/SSDA903_schema_2024.yml` from the repo."""
    env = os.environ.get(SCHEMA_ENV)
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[3]
    return repo_root.parent / "shared" / "domain" / SCHEMA_FILE


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """What one column may hold."""

    name: str
    can_be_blank: bool
    codes: frozenset[str] | None = None  # a code list, when the column is a category
    aliases: Mapping[str, str] = field(default_factory=dict)  # e.g. "Male" -> "1"
    date_format: str | None = None


@dataclass(frozen=True, slots=True)
class Ssda903Spec:
    """Column specifications of the tables the connector reads."""

    tables: Mapping[str, Mapping[str, ColumnSpec]]

    @classmethod
    def load(cls, path: Path | None = None) -> Ssda903Spec:
        """Read the YAML specification; errors name the file and what to do."""
        path = path or default_schema_path()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise Ssda903Error(
                f"cannot read the SSDA903 specification {path} ({exc.strerror}); pass its path "
                f"(schema_path) or set {SCHEMA_ENV}"
            ) from None
        try:
            raw = load_yaml(text)  # aliases refused, size and depth bounded
        except YamlLimitError as exc:
            mark = exc.problem_mark
            line = f" at line {mark.line + 1}" if mark is not None else ""
            raise Ssda903Error(f"{path}{line}: refused: {exc.problem}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark is not None else ""
            raise Ssda903Error(f"{path} is not valid YAML{line}") from None
        column_map = raw.get("column_map") if isinstance(raw, dict) else None
        if not isinstance(column_map, dict):
            raise Ssda903Error(f"{path} has no 'column_map' mapping; is it the SSDA903 schema?")
        tables: dict[str, dict[str, ColumnSpec]] = {}
        for table in TABLES:
            columns = column_map.get(table)
            if not isinstance(columns, dict):
                raise Ssda903Error(f"{path} has no column_map.{table}; is it the SSDA903 schema?")
            tables[table] = {
                str(name): _column(table, str(name), body) for name, body in columns.items()
            }
        return cls(tables=tables)


def _column(table: str, name: str, body: Any) -> ColumnSpec:
    body = body if isinstance(body, dict) else {}
    can_be_blank = body.get("canbeblank") in (True, "yes", "Yes")
    codes: frozenset[str] | None = None
    aliases: dict[str, str] = {}
    if "category" in body:
        codes = frozenset(str(item["code"]).strip().upper() for item in body["category"] or [])
        codes |= _EXTRA_CODES.get((table, name), frozenset())
        for alias, code in (body.get("dictionary") or {}).items():
            if isinstance(alias, str):
                aliases[alias.strip().upper()] = str(code).strip().upper()
    date_format = body.get("date") if isinstance(body.get("date"), str) else None
    return ColumnSpec(name, can_be_blank, codes, aliases, date_format)


@lru_cache(maxsize=1 << 16)
def parse_date(value: str, fmt: str) -> date | None:
    """Parse a date (cached: returns repeat the same few thousand dates), None if invalid."""
    try:
        return datetime.strptime(value, fmt).date()
    except ValueError:
        return None


class TableValidator:
    """Checks rows of one table and returns cleaned values plus problems.

    Cleaned values: blanks become None, codes are normalised (trimmed, upper-cased, aliases
    resolved), dates become `datetime.date`; an invalid value becomes None and is reported.
    Columns outside the specification are passed through trimmed.
    """

    def __init__(self, table: str, columns: Mapping[str, ColumnSpec]) -> None:
        self.table = table
        self.columns = columns

    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if not c.can_be_blank]

    def check(
        self, row_no: int, raw: Mapping[str, str | None]
    ) -> tuple[dict[str, Any], list[RowProblem]]:
        clean: dict[str, Any] = {}
        problems: list[RowProblem] = []
        for name, spec in self.columns.items():
            value = raw.get(name)
            if value:
                value = value.strip()
            if not value:
                clean[name] = None
                if not spec.can_be_blank:
                    problems.append(RowProblem(self.table, row_no, name, Reason.BLANK_REQUIRED))
                continue
            codes = spec.codes
            if codes is not None:
                if value in codes:  # the usual case: already a valid code
                    clean[name] = value
                    continue
                code = value.upper()
                code = spec.aliases.get(code, code)
                if code in codes:
                    clean[name] = code
                else:
                    clean[name] = None
                    shown = "a value" if name in PERSONAL_COLUMNS else safe_code(value)
                    problems.append(
                        RowProblem(
                            self.table,
                            row_no,
                            name,
                            Reason.INVALID_CODE,
                            f"{shown} is not in the {name} code list",
                        )
                    )
            elif spec.date_format is not None:
                parsed = parse_date(value, spec.date_format)
                clean[name] = parsed
                if parsed is None:
                    problems.append(
                        RowProblem(
                            self.table,
                            row_no,
                            name,
                            Reason.INVALID_DATE,
                            f"not a date in the form {_human(spec.date_format)}",
                        )
                    )
            else:
                problem = text_problem(value, identifier=True)
                clean[name] = value if problem is None else None
                if problem is not None:  # control characters, bidi overrides, bad bytes
                    problems.append(
                        RowProblem(self.table, row_no, name, Reason.INVALID_TEXT, problem)
                    )
        return clean, problems


def _human(fmt: str) -> str:
    return fmt.replace("%d", "DD").replace("%m", "MM").replace("%Y", "YYYY")
