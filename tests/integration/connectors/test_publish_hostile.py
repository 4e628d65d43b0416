"""Issue 15, part 1: `broker publish` never crashes and never drops a good line (real Kafka).

A mixed file (a 2 MB line, a Latin-1 line, NUL/bidi/escape characters), a binary file and
standard input in one run: every good line reaches `ingress.<agency>`, each bad one is reported
by file and line number as it happens, then a summary; exit status 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from router_helpers import WESTMINSTER, Deployment, event, read_topic

from broker.config import topic_ingress
from broker.envelope import Envelope
from broker.inbound import DEFAULT_LIMITS, KAFKA_MAX_RECORD_BYTES

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
NAME = "Amira Secretname"


def missing(tag: str, **fields: Any) -> dict[str, Any]:
    return event("child.missing.started", f"child-{tag}", tag, **{"first_name": NAME, **fields})


def publish_cli(
    dep: Deployment, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "broker.cli", "publish", "--config", str(dep.config_path)]
    command += ["--agency", dep.id(WESTMINSTER), *args]
    return subprocess.run(
        command,
        input=stdin.decode("latin-1"),
        capture_output=True,
        text=True,
        encoding="latin-1",
        cwd=REPO_ROOT,
        env=dict(os.environ),
        timeout=300,
    )


def published_ids(dep: Deployment) -> set[str]:
    records = read_topic(dep, topic_ingress(dep.id(WESTMINSTER)))
    return {Envelope.from_bytes(r.value).header.event_id for r in records}


def line(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_mixed_binary_and_stdin_input_publishes_every_good_line(
    deployment: Deployment, tmp_path: Path
) -> None:
    dep = deployment
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(
        b"\n".join(
            [
                line(missing("a")),  # 1
                line(missing("big", physical_description="x" * 2_000_000)),  # 2: 2 MB
                line(missing("b")),  # 3
                json.dumps(missing("latin", first_name="Zoë"), ensure_ascii=False).encode(
                    "latin-1"
                ),  # 4
                b"",  # 5: blank, skipped
                line(missing("esc", first_name="Bob\u0000\u202e\u001b[31m")),  # 6
                line({**missing("nul"), "subject": "X\u0000'; DROP TABLE--"}),  # 7
                line(missing("c")),  # 8
            ]
        )
        + b"\n"
    )
    binary = tmp_path / "photo.bin"
    binary.write_bytes(bytes(range(256)).replace(b"\n", b"") * 8 + b"\n\xff\xd8\xff\xe0\x00")
    stdin = line(missing("d")) + b"\n{not json\n" + line(missing("e")) + b"\n"

    absent = tmp_path / "absent.jsonl"

    done = publish_cli(dep, str(mixed), str(binary), str(absent), "-", stdin=stdin)

    err = done.stderr
    assert done.returncode == 1, err
    assert "Traceback" not in err and NAME not in err and "Secretname" not in err
    lines = err.strip().splitlines()
    rejected = [x for x in lines if x.startswith("rejected ")]
    assert [x.split(":")[0] + ":" + x.split(":")[1] for x in rejected] == [
        f"rejected {mixed}:2",
        f"rejected {mixed}:4",
        f"rejected {mixed}:6",
        f"rejected {mixed}:7",
        f"rejected {binary}:1",
        f"rejected {binary}:2",
        f"rejected {absent}: cannot read it (No such file or directory)",
        "rejected stdin:2",
    ]
    assert f"over the limit of {DEFAULT_LIMITS.max_line_bytes} bytes" in rejected[0]
    assert str(KAFKA_MAX_RECORD_BYTES) in rejected[0] and "2000" in rejected[0]
    assert "not UTF-8" in rejected[1]
    assert "U+0000 NUL" in rejected[2] and "first_name" in rejected[2]
    assert "identifiers may not hold" in rejected[3] and "subject" in rejected[3]
    assert lines[-1].startswith("published 5 event(s)") and lines[-1].endswith("rejected 8")
    assert published_ids(dep) == {f"evt-{t}" for t in "abcde"}


def test_a_signed_event_too_big_for_kafka_is_a_rejection_not_a_crash(
    deployment: Deployment, tmp_path: Path
) -> None:
    dep = deployment
    near = KAFKA_MAX_RECORD_BYTES - 200
    big = missing("huge", physical_description="")
    padding = near - len(line(big)) - 10
    big["fields"]["physical_description"] = "y" * padding
    path = tmp_path / "big.jsonl"
    path.write_bytes(line(big) + b"\n" + line(missing("after")) + b"\n")

    done = publish_cli(dep, "--max-line-bytes", str(near), str(path))

    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (rejection,) = [x for x in done.stderr.splitlines() if x.startswith("rejected ")]
    assert rejection.startswith(f"rejected {path}:1: ")
    assert "larger than Kafka takes" in rejection or "Kafka did not accept it" in rejection
    assert published_ids(dep) == {"evt-after"}


def test_the_line_limit_cannot_reach_kafkas(deployment: Deployment, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(line(missing("one")) + b"\n")
    done = publish_cli(deployment, "--max-line-bytes", str(KAFKA_MAX_RECORD_BYTES), str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--max-line-bytes" in done.stderr and str(KAFKA_MAX_RECORD_BYTES) in done.stderr
