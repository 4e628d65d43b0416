"""The XML form (acceptance 2): an EXPSSDA903 file built from CSV rows gives the same events."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from connector_data import AGENCY, ID_SECRET, read_table, write_table

from connectors.council import read_ssda903
from connectors.council.exceptions import Ssda903Error

HEADER_TAGS = ("SEX", "DOB", "ETHNIC", "UPN", "MOTHER", "MC_DOB")
EPISODE_TAGS = (
    "DECOM",
    "RNE",
    "LS",
    "CIN",
    "PLACE",
    "PLACE_PROVIDER",
    "DEC",
    "REC",
    "REASON_PLACE_CHANGE",
    "HOME_POST",
    "PL_POST",
    "URN",
)


def _leaf(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text or None  # blank -> <TAG />


def build_xml(
    path: Path,
    header: list[dict[str, str]],
    episodes: list[dict[str, str]],
    missing: list[dict[str, str]],
    uasc: list[dict[str, str]],
) -> None:
    """Write the documented EXPSSDA903 structure: CHILD > HEADER, EPISODE*, AMISSING*."""
    uasc_by_child = {r["CHILD"]: r for r in uasc}
    root = ET.Element("EXPSSDA903")
    for row in header:
        child = ET.SubElement(root, "CHILD")
        head = ET.SubElement(child, "HEADER")
        _leaf(head, "CHILDID", row["CHILD"])
        for tag in HEADER_TAGS:
            _leaf(head, tag, row[tag])
        in_uasc = uasc_by_child.get(row["CHILD"])
        _leaf(head, "UASC", "1" if in_uasc else "")
        _leaf(head, "DUC", in_uasc["DUC"] if in_uasc else "")
        review = ET.SubElement(head, "AREVIEW")  # nested tables the connector does not use
        _leaf(review, "REVIEW", "")
        for episode in (e for e in episodes if e["CHILD"] == row["CHILD"]):
            element = ET.SubElement(child, "EPISODE")
            for tag in EPISODE_TAGS:
                _leaf(element, "PL" if tag == "PLACE" else tag, episode[tag])
        for item in (m for m in missing if m["CHILD"] == row["CHILD"]):
            element = ET.SubElement(child, "AMISSING")
            for tag in ("MISSING", "MIS_START", "MIS_END"):
                _leaf(element, tag, item[tag])
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _subset(sample: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The same children as a CSV folder and as an XML file."""
    header = read_table(sample, "header")
    missing = read_table(sample, "missing")
    uasc = read_table(sample, "uasc")
    chosen = {r["CHILD"] for r in missing} | {r["CHILD"] for r in uasc[:20]}
    chosen |= {r["CHILD"] for r in header[:300]}
    tables = {
        "Header": [r for r in header if r["CHILD"] in chosen],
        "Episodes": [r for r in read_table(sample, "episodes") if r["CHILD"] in chosen],
        "Missing": [r for r in missing if r["CHILD"] in chosen],
        "UASC": [r for r in uasc if r["CHILD"] in chosen],
    }
    folder = tmp_path / "csv"
    folder.mkdir()
    for name, rows in tables.items():
        write_table(folder, name, rows)
    xml_path = tmp_path / "return.xml"
    build_xml(xml_path, tables["Header"], tables["Episodes"], tables["Missing"], tables["UASC"])
    return folder, xml_path


def test_xml_gives_the_same_events_as_csv(sample: Path, tmp_path: Path) -> None:
    folder, xml_path = _subset(sample, tmp_path)
    from_csv = read_ssda903(folder, agency=AGENCY, id_secret=ID_SECRET)
    from_xml = read_ssda903(xml_path, agency=AGENCY, id_secret=ID_SECRET)
    csv_events = sorted(from_csv.collect(), key=lambda e: e["event_id"])
    xml_events = sorted(from_xml.collect(), key=lambda e: e["event_id"])
    assert from_xml.form == "xml"
    assert len(xml_events) > 100
    assert {e["event_type"] for e in xml_events} >= {
        "child.care.started",
        "child.placement.changed",
        "child.missing.started",
        "child.missing.ended",
    }
    assert xml_events == csv_events
    assert any(e["fields"]["uasc"] for e in xml_events)
    assert from_xml.rows_read == from_csv.rows_read
    assert from_xml.events_by_type == from_csv.events_by_type


def test_xml_problems_name_table_element_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(
        "<EXPSSDA903><CHILD><HEADER><CHILDID>7</CHILDID><SEX>1</SEX><DOB>01/02/2005</DOB>"
        "<ETHNIC>WBRI</ETHNIC><UPN>A123</UPN></HEADER>"
        "<EPISODE><DECOM>01/01/2018</DECOM><RNE>S</RNE><LS>C2</LS><CIN>N1</CIN><PL>U1</PL>"
        "<DEC /><REC /></EPISODE>"
        "<AMISSING><MISSING>Q</MISSING><MIS_START>02/01/2018</MIS_START><MIS_END /></AMISSING>"
        "<AMISSING><MISSING>M</MISSING><MIS_START>03/01/2018</MIS_START><MIS_END /></AMISSING>"
        "</CHILD></EXPSSDA903>"
    )
    result = read_ssda903(path, agency=AGENCY, id_secret=ID_SECRET)
    events = result.collect()
    assert [e["event_type"] for e in events] == ["child.care.started", "child.missing.started"]
    assert [(p.table, p.row, p.column, p.rejected) for p in result.problems] == [
        ("Missing", 1, "MISSING", True)
    ]
    assert events[1]["fields"]["placement_postcode_district"] is None


def test_not_xml_or_wrong_root_is_a_file_error(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.xml"
    wrong.write_text("<Return><CHILD /></Return>")
    with pytest.raises(Ssda903Error, match="EXPSSDA903"):
        read_ssda903(wrong, agency=AGENCY, id_secret=ID_SECRET)
    junk = tmp_path / "junk.xml"
    junk.write_text("CHILD,DOB\n1,2\n")
    with pytest.raises(Ssda903Error, match="not an XML file"):
        read_ssda903(junk, agency=AGENCY, id_secret=ID_SECRET)
    broken = tmp_path / "broken.xml"
    broken.write_text("<EXPSSDA903><CHILD><HEADER><CHILDID>1</CHILDID></HEADER></CHILD><CHILD>")
    result = read_ssda903(broken, agency=AGENCY, id_secret=ID_SECRET)
    with pytest.raises(Ssda903Error, match="not well-formed"):
        result.collect()
