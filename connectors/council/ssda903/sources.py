"""Reading SSDA903 input: a folder of CSV tables, or one `EXPSSDA903` XML file.

Both readers yield raw rows keyed by the CSV column names, so that validation and mapping see
one shape whatever the input. Nothing here interprets a value.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from connectors.council.exceptions import Ssda903Error
from connectors.council.ssda903.spec import TABLES


@dataclass(slots=True)
class SourceRow:
    """One raw row of one table: CSV column names (upper-case) to text."""

    table: str
    row: int
    values: dict[str, str]


class ByteCounter:
    """Bytes of input consumed so far, for progress bars (no row count is known in advance)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0


class _CountingReader(io.RawIOBase):
    """A binary file wrapper that adds every byte read to a `ByteCounter`."""

    def __init__(self, raw: BinaryIO, counter: ByteCounter) -> None:
        self._raw = raw
        self._counter = counter

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._counter.done += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_counted(path: Path, counter: ByteCounter) -> io.BufferedReader:
    return io.BufferedReader(_CountingReader(path.open("rb"), counter), buffer_size=1 << 16)


# ---------------------------------------------------------------------------------------------
# CSV folder


def find_tables(folder: Path) -> dict[str, Path]:
    """Map table names to CSV files, matching file names case-insensitively.

    `Episodes.csv`, `episodes.CSV`, `SSDA903_Episodes_2024.csv` all name the Episodes table: the
    table name must be the whole file stem or one of its words. Two files for one table is an
    error (which one was meant cannot be guessed).
    """
    if not folder.is_dir():
        raise Ssda903Error(f"{folder} is not a folder of SSDA903 CSV tables or an XML file")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() != ".csv":
            continue
        words = [w for w in re.split(r"[^a-z0-9]+", path.stem.lower()) if w]
        for table in TABLES:
            if table.lower() in words:
                found.setdefault(table, []).append(path)
    for table, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise Ssda903Error(
                f"{folder}: several files look like the {table} table ({names}); keep one"
            )
    if not found:
        raise Ssda903Error(
            f"{folder} holds no SSDA903 CSV table (expected files named like Header.csv, "
            "Episodes.csv, Missing.csv, UASC.csv)"
        )
    return {table: paths[0] for table, paths in found.items()}


def csv_columns(path: Path) -> list[str]:
    """The column names of a CSV file (upper-cased, trimmed); checks it is readable text."""
    try:
        with path.open("rb") as handle:  # only the first line: a bad byte later costs a row
            line = handle.readline(1 << 20).decode("utf-8-sig")
        first = next(csv.reader([line]), [])
    except UnicodeDecodeError:
        raise Ssda903Error(f"{path} is not UTF-8 text; save it as 'CSV UTF-8' and retry") from None
    except (OSError, csv.Error) as exc:
        raise Ssda903Error(f"cannot read {path}: {exc}") from None
    return [name.strip().upper() for name in first]


def csv_rows(table: str, path: Path, counter: ByteCounter) -> Iterator[SourceRow]:
    """Rows of one CSV table; `row` is the spreadsheet row (column names are row 1).

    A byte that is not UTF-8 becomes a lone surrogate (surrogateescape) that the cell check
    refuses (invalid_text), so one bad row costs that row, not the rest of the table."""
    with io.TextIOWrapper(
        _open_counted(path, counter), encoding="utf-8-sig", errors="surrogateescape", newline=""
    ) as text:
        reader = csv.reader(text)
        try:
            header = [name.strip().upper() for name in next(reader, [])]
            for cells in reader:
                if not any(cells):
                    continue  # a blank line, as spreadsheets leave at the end
                yield SourceRow(table, reader.line_num, dict(zip(header, cells, strict=False)))
        except UnicodeDecodeError:
            raise Ssda903Error(
                f"{path} is not UTF-8 text; save it as 'CSV UTF-8' and retry"
            ) from None
        except csv.Error as exc:
            raise Ssda903Error(f"{path} line {reader.line_num}: malformed CSV ({exc})") from None


# ---------------------------------------------------------------------------------------------
# XML file


@dataclass(slots=True)
class XmlChild:
    """The rows one `CHILD` element holds, in the CSV tables' shape."""

    header: SourceRow
    uasc: SourceRow | None
    episodes: list[SourceRow] = field(default_factory=list)
    missing: list[SourceRow] = field(default_factory=list)


_XML_TRUE = frozenset({"1", "Y", "YES", "TRUE", "T"})
_EPISODE_RENAMES: Mapping[str, str] = {"PL": "PLACE"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].upper()


def _fields(element: ET.Element) -> dict[str, str]:
    """Leaf children of an element as column -> text (`<DEC />` is blank)."""
    return {_local(child.tag): (child.text or "").strip() for child in element if len(child) == 0}


def xml_children(path: Path, counter: ByteCounter) -> Iterator[XmlChild]:
    """`CHILD` elements of an `EXPSSDA903` file, one at a time (memory stays flat).

    `HEADER` gives the Header row (`CHILDID` is CHILD) and, when its `UASC` flag is set or a
    `DUC` is given, the UASC row. `EPISODE` (`PL` is PLACE) and `AMISSING` elements are found
    anywhere under `CHILD`. Row numbers are element ordinals per table.
    """
    ordinals = {"CHILD": 0, "EPISODE": 0, "AMISSING": 0}
    try:
        with _open_counted(path, counter) as handle:
            events = ET.iterparse(handle, events=("start", "end"))
            _, root = next(events)
            if _local(root.tag) != "EXPSSDA903":
                raise Ssda903Error(
                    f"{path}: the root element is not EXPSSDA903; is this an SSDA903 XML export?"
                )
            for event, element in events:
                if event != "end" or _local(element.tag) != "CHILD":
                    continue
                ordinals["CHILD"] += 1
                yield _child(element, ordinals)
                root.clear()  # drop the processed CHILD elements
    except ET.ParseError as exc:
        line, column = exc.position
        raise Ssda903Error(
            f"{path}: not well-formed XML at line {line}, column {column}; fix or re-export it"
        ) from None
    except StopIteration:
        raise Ssda903Error(f"{path} is empty; expected an EXPSSDA903 XML export") from None


def _child(element: ET.Element, ordinals: dict[str, int]) -> XmlChild:
    header_el = next((c for c in element if _local(c.tag) == "HEADER"), None)
    values = _fields(header_el) if header_el is not None else {}
    child_id = values.pop("CHILDID", "") or values.pop("CHILD", "")
    uasc_flag = values.pop("UASC", "")
    header = {"CHILD": child_id, **values}
    uasc = None
    if uasc_flag.upper() in _XML_TRUE or values.get("DUC"):
        uasc = SourceRow(
            "UASC",
            ordinals["CHILD"],
            {
                "CHILD": child_id,
                "SEX": values.get("SEX", ""),
                "DOB": values.get("DOB", ""),
                "DUC": values.get("DUC", ""),
            },
        )
    result = XmlChild(SourceRow("Header", ordinals["CHILD"], header), uasc)
    for item in element.iter():
        tag = _local(item.tag)
        if tag == "EPISODE":
            ordinals["EPISODE"] += 1
            row = {_EPISODE_RENAMES.get(k, k): v for k, v in _fields(item).items()}
            row["CHILD"] = child_id
            result.episodes.append(SourceRow("Episodes", ordinals["EPISODE"], row))
        elif tag == "AMISSING":
            ordinals["AMISSING"] += 1
            row = _fields(item)
            row["CHILD"] = child_id
            row.setdefault("DOB", values.get("DOB", ""))
            result.missing.append(SourceRow("Missing", ordinals["AMISSING"], row))
    return result
