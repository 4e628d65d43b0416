"""Property-based fuzzing of the two bulk input paths (issue 15, part 7): JSON lines (what
`broker publish`, the drop folder and the HTTP intake read) and SSDA903 CSV tables.

For any mix of good records and hostile ones: no exception escapes, every bad record is
reported, and every good record still goes through (signed, with its own event id).
"""

from __future__ import annotations

import csv
import io
import json
import string
from pathlib import Path
from typing import Any

from connector_data import AGENCY, ID_SECRET
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.envelope import generate_key, load_signing_key
from broker.errors import BrokerError
from broker.inbound import Limits, Rejection, parse_body, parse_line
from broker.publish import read_jsonl, sign_event
from broker.schemas import SchemaRegistry
from connectors.council import read_ssda903

REGISTRY = SchemaRegistry.default()
LIMITS = Limits(max_line_bytes=4096)
FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FUZZ_FILES = settings(FUZZ, max_examples=30)  # each example writes and reads two tables


def good_event(n: int, name: str) -> dict[str, Any]:
    return {
        "event_type": "child.missing.started",
        "event_id": f"good-{n}",
        "subject": f"C{n}",
        "occurred_at": "2026-11-24T18:05:00Z",
        "fields": {
            "la_child_id": f"C{n}",
            "first_name": name,
            "missing_type": "M",
            "missing_since": "2026-11-24T18:00:00Z",
            "risk_level": "high",
        },
    }


names = st.text(
    alphabet=st.characters(categories=("L", "M", "N", "Zs", "P")), min_size=1, max_size=30
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


@st.composite
def hostile_line(draw: st.DrawFn) -> bytes:
    """Bytes that must not become a published event (or, at worst, one the rules accept)."""
    kind = draw(st.sampled_from(["binary", "json", "mutated", "text", "huge", "deep"]))
    if kind == "binary":
        data = draw(st.binary(min_size=1, max_size=200))
    elif kind == "json":
        data = json.dumps(draw(json_values)).encode()
    elif kind == "mutated":
        base = json.dumps(good_event(0, "x")).encode()
        at = draw(st.integers(0, len(base)))
        data = base[:at] + draw(st.binary(min_size=1, max_size=8)) + base[at:]
    elif kind == "text":
        bad = draw(st.text(alphabet=st.characters(categories=("Cc", "Cf", "Cs")), min_size=1,
                           max_size=5))
        key = draw(st.sampled_from(["subject", "event_id"]))
        data = json.dumps({**good_event(0, "x"), key: "C" + bad}).encode()
    elif kind == "huge":
        data = b'{"a": "' + b"x" * draw(st.integers(4100, 20_000)) + b'"}'
    else:
        depth = draw(st.integers(9, 3000))
        data = b"[" * depth + b"]" * depth
    return data.replace(b"\n", b" ")


@FUZZ
@given(
    goods=st.lists(names, min_size=1, max_size=6),
    bads=st.lists(hostile_line(), max_size=8),
    order=st.randoms(use_true_random=False),
)
def test_json_lines_lose_no_good_event_and_raise_nothing(
    tmp_path_factory: Any, goods: list[str], bads: list[bytes], order: Any
) -> None:
    key = _key(tmp_path_factory)
    lines = [(True, json.dumps(good_event(n, name)).encode()) for n, name in enumerate(goods)]
    lines += [(False, bad) for bad in bads]
    order.shuffle(lines)
    stream = io.BytesIO(b"\n".join(raw for _, raw in lines) + b"\n")
    signed: list[str] = []  # a mutated copy of a good line may be good too, with the same id
    reported = 0
    for _where, item in read_jsonl(stream, "fuzz", LIMITS):  # nothing may raise here...
        if isinstance(item, Rejection):
            reported += 1
            continue
        try:  # ...nor here, except the one error type a bad event is reported with
            signed.append(sign_event(item, AGENCY, key, REGISTRY).header.event_id)
        except BrokerError:
            reported += 1
    assert {f"good-{n}" for n in range(len(goods))} <= set(signed)
    assert len(signed) + reported == len(lines) - sum(1 for _, raw in lines if not raw.strip())


@FUZZ
@given(bodies=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_http_bodies_raise_nothing(bodies: bytes) -> None:
    parsed = parse_body(bodies, LIMITS)
    assert isinstance(parsed, Rejection | list)
    assert isinstance(parse_line(bodies, 1, LIMITS), Rejection | dict)


HEADER = ["CHILD", "SEX", "DOB", "ETHNIC", "UPN", "MOTHER", "MC_DOB"]
MISSING = ["CHILD", "DOB", "MISSING", "MIS_START", "MIS_END"]
cells = st.one_of(
    st.text(max_size=12),  # anything, including NUL, quotes, newlines, bidi overrides
    st.sampled_from(["", "1", "2", "M", "A", "WBRI", "01/01/2010", "31/02/2010", "99/99/9999"]),
)
latin1 = st.binary(min_size=1, max_size=12).map(
    lambda b: bytes(c for c in b if c not in b'\n\r",') + b"\xe9"
)


@st.composite
def hostile_row(draw: st.DrawFn, columns: int) -> bytes:
    """A CSV row of hostile cells: CSV-escaped text, or raw bytes that are not UTF-8."""
    if draw(st.booleans()):
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(
            ["X" + draw(st.text(alphabet=string.digits, min_size=1, max_size=4))]
            + [draw(cells) for _ in range(columns - 1)]
        )
        return out.getvalue().encode("utf-8", "surrogatepass")
    return b",".join([b"X9"] + [draw(latin1) for _ in range(columns - 1)]) + b"\n"


@FUZZ_FILES
@given(
    children=st.lists(st.text(alphabet=string.digits, min_size=1, max_size=6), min_size=1,
                      max_size=5, unique=True),
    bad_headers=st.lists(hostile_row(len(HEADER)), max_size=5),
    bad_missing=st.lists(hostile_row(len(MISSING)), max_size=5),
    order=st.randoms(use_true_random=False),
)
def test_ssda903_loses_no_good_row_and_raises_nothing(
    tmp_path_factory: Any,
    children: list[str],
    bad_headers: list[bytes],
    bad_missing: list[bytes],
    order: Any,
) -> None:
    folder: Path = tmp_path_factory.mktemp("ssda903")
    headers = [f"{c},1,01/01/2010,WBRI,,,\n".encode() for c in children] + bad_headers
    missing = [f"{c},01/01/2010,M,01/02/2020,\n".encode() for c in children] + bad_missing
    order.shuffle(headers)
    order.shuffle(missing)
    (folder / "header.csv").write_bytes((",".join(HEADER) + "\n").encode() + b"".join(headers))
    (folder / "missing.csv").write_bytes((",".join(MISSING) + "\n").encode() + b"".join(missing))
    result = read_ssda903(folder, agency=AGENCY, id_secret=ID_SECRET)
    events = result.collect()  # nothing may raise
    started = {
        e["fields"]["la_child_id"] for e in events if e["event_type"] == "child.missing.started"
    }
    assert set(children) <= started
    key = _key(tmp_path_factory)
    for event in events:  # what the connector produces, the publisher accepts or reports
        try:
            sign_event(event, AGENCY, key, REGISTRY)
        except BrokerError:
            assert not str(event["fields"].get("la_child_id", "")).isdigit()


_KEYS: dict[str, Any] = {}


def _key(tmp_path_factory: Any) -> Any:
    if "key" not in _KEYS:
        private, _ = generate_key(AGENCY, tmp_path_factory.mktemp("keys"))
        _KEYS["key"] = load_signing_key(private, None)
    return _KEYS["key"]
