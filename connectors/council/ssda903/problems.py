"""Row problems: what was wrong with a row, where, and what the connector did about it.

A problem names the table, the row and the column, never a personal value. Only a short code
from a code-list column may be quoted (`safe_code`), because a free-text value typed into the
wrong column could be anything, including a name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Stable, countable reason codes (the summary counts rejected rows per reason)."""

    BLANK_REQUIRED = "blank_required"
    INVALID_CODE = "invalid_code"
    INVALID_DATE = "invalid_date"
    DUPLICATE_CHILD = "duplicate_child"
    DUPLICATE_EPISODE = "duplicate_episode"
    UNKNOWN_CHILD = "unknown_child"
    DOB_MISMATCH = "dob_mismatch"
    END_BEFORE_START = "end_before_start"
    END_DATE_MISSING = "end_date_missing"
    DATE_BEFORE_BIRTH = "date_before_birth"
    INVALID_POSTCODE = "invalid_postcode"
    REQUIRED_FOR_EVENT = "required_for_event"
    EPISODE_SUPERSEDED = "episode_superseded"
    REC_INCONSISTENT = "rec_inconsistent"
    INVALID_TEXT = "invalid_text"  # control/format characters or bytes that are not UTF-8


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One problem found in one row.

    `row` is the line number in the CSV file as a spreadsheet shows it (the column-name line is
    row 1, the first data row is row 2), or for XML the 1-based position of the element among
    the elements of that table (the Nth `EPISODE`, the Nth `CHILD` for Header and UASC).
    `rejected` is True when the row produced no event at all because of this problem; otherwise
    the row was still mapped, with the affected field left null or the affected event skipped.
    """

    table: str
    row: int
    column: str | None
    reason: Reason
    detail: str = ""
    rejected: bool = False

    def __str__(self) -> str:
        where = f"{self.table} row {self.row}" + (f" column {self.column}" if self.column else "")
        action = "row rejected" if self.rejected else "row kept"
        detail = f": {self.detail}" if self.detail else ""
        return f"{where}: {self.reason.value}{detail} ({action})"


_SAFE_CODE = re.compile(r"[A-Za-z0-9.\-]{1,8}")


def safe_code(value: str) -> str:
    """Quote a bad code only if it looks like a code; anything else is described, not shown."""
    if _SAFE_CODE.fullmatch(value):
        return repr(value)
    return f"a value of {len(value)} characters"
