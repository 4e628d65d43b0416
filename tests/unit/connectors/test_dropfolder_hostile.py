"""The drop folder against hostile and careless writers (docs/bad-input.md, "Drop folder").

Real validation and signing (`FakePublisher` runs `broker.envelope.issue`); only Kafka's
acknowledgement is simulated. The Kafka path is in tests/integration/connectors.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from connector_data import ID_SECRET
from live_fakes import FakePublisher, missing_started

from connectors.live import COUNCIL_EVENT_TYPES, Intake
from connectors.live.dropfolder import DropFolder
from connectors.live.intake import EventResult

AGENCY = "council.E09000033"
SECRET = "Jane Secretname"


@pytest.fixture
def publisher(tmp_path: Path) -> FakePublisher:
    return FakePublisher(AGENCY, tmp_path / "keys")


@pytest.fixture
def intake(publisher: FakePublisher) -> Intake:
    return Intake(publisher, COUNCIL_EVENT_TYPES)


def folder_of(tmp_path: Path, intake: Intake, **options: Any) -> DropFolder:
    return DropFolder(
        tmp_path / "drop", intake, agency_id=AGENCY, id_secret=ID_SECRET, settle_s=0, **options
    )


def good(subject: str) -> str:
    return json.dumps(missing_started(subject, first_name=SECRET))


def report_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    assert SECRET not in path.read_text()
    return data


def test_a_symlink_is_moved_aside_and_its_target_never_read(
    tmp_path: Path, intake: Intake, publisher: FakePublisher
) -> None:
    folder = folder_of(tmp_path, intake)
    private = tmp_path / "elsewhere.jsonl"
    private.write_text(good("C9") + "\n")
    private.chmod(0o600)
    (folder.directory / "link.jsonl").symlink_to(private)
    (report,) = folder.poll_once()
    assert report.refused is not None and "symbolic link" in report.refused
    assert publisher.published == []
    moved = folder.failed / "link.jsonl"
    assert moved.is_symlink() and private.read_text() == good("C9") + "\n"  # target untouched
    assert report_of(folder.failed / "link.jsonl.report.json")["refused"] == report.refused


def test_a_fifo_is_refused_without_blocking(tmp_path: Path, intake: Intake) -> None:
    folder = folder_of(tmp_path, intake)
    os.mkfifo(folder.directory / "pipe.jsonl")
    (report,) = folder.poll_once()  # would hang forever if opened for a blocking read
    assert report.refused is not None and "not a regular file" in report.refused
    assert stat.S_ISFIFO((folder.failed / "pipe.jsonl").lstat().st_mode)


def test_a_directory_and_a_socket_are_refused(tmp_path: Path, intake: Intake) -> None:
    folder = folder_of(tmp_path, intake)
    (folder.directory / "dir.jsonl").mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder.directory / "sock.jsonl"))
        reports = folder.poll_once()
    assert sorted(r.file for r in reports) == ["dir.jsonl", "sock.jsonl"]
    assert all(r.refused and "not a regular file" in r.refused for r in reports)


def test_files_still_being_written_are_left_alone(
    tmp_path: Path, intake: Intake, publisher: FakePublisher
) -> None:
    folder = folder_of(tmp_path, intake)
    for name in ("a.jsonl.part", "b.jsonl.tmp", ".hidden.jsonl", "c.json"):
        (folder.directory / name).write_text(good("C1") + "\n")
    assert folder.poll_once() == []
    assert publisher.published == []
    assert sorted(p.name for p in folder.directory.iterdir() if p.is_file()) == [
        ".hidden.jsonl", "a.jsonl.part", "b.jsonl.tmp", "c.json",
    ]
    (folder.directory / "a.jsonl.part").rename(folder.directory / "a.jsonl")  # complete
    (report,) = folder.poll_once()
    assert len(report.accepted) == 1 and (folder.done / "a.jsonl").exists()


def test_a_file_changed_within_the_settle_time_waits(tmp_path: Path, intake: Intake) -> None:
    folder = DropFolder(tmp_path / "drop", intake, agency_id=AGENCY, id_secret=ID_SECRET,
                        settle_s=60)
    path = folder.directory / "new.jsonl"
    path.write_text(good("C1") + "\n")
    assert folder.poll_once() == [] and path.exists()
    old = time.time() - 120
    os.utime(path, (old, old))
    assert len(folder.poll_once()) == 1


def test_a_file_over_the_size_limit_is_refused_whole(
    tmp_path: Path, intake: Intake, publisher: FakePublisher
) -> None:
    folder = folder_of(tmp_path, intake, max_file_bytes=1000)
    (folder.directory / "big.jsonl").write_text((good("C1") + "\n") * 20)
    (report,) = folder.poll_once()
    assert report.refused is not None and "over the limit of 1000 bytes" in report.refused
    assert publisher.published == [] and (folder.failed / "big.jsonl").exists()


def test_bad_lines_are_reported_by_number_and_good_ones_published(
    tmp_path: Path, intake: Intake, publisher: FakePublisher
) -> None:
    folder = folder_of(tmp_path, intake)
    lines = [
        good("C1").encode(),
        b'{"x": "' + b"a" * 300_000 + b'"}',  # over the line limit
        json.dumps(missing_started("C2", first_name="Zoë"), ensure_ascii=False).encode("latin-1"),
        good("C3").encode(),
        bytes(range(256)).replace(b"\n", b""),  # binary
        json.dumps(missing_started("C4", first_name="Bob\u0000\u202e\u001b[31m")).encode(),
        good("C5").encode(),
    ]
    (folder.directory / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (report,) = folder.poll_once()
    assert [a["line"] for a in report.accepted] == [1, 4, 7]
    assert len(publisher.published) == 3
    codes = {r["line"]: r.get("code") for r in report.rejected}
    assert codes == {2: "too_large", 3: "not_utf8", 5: "not_utf8", 6: "bad_text"}
    saved = report_of(folder.failed / "mixed.jsonl.report.json")
    assert saved["accepted"] == 3 and saved["rejected"] == 4


def test_the_file_is_claimed_by_rename_before_it_is_read(
    tmp_path: Path, publisher: FakePublisher
) -> None:
    seen: list[list[str]] = []

    class Watching(Intake):
        def submit(self, events: Sequence[Any], *, client: str) -> list[EventResult]:
            seen.append(sorted(p.name for p in folder.directory.iterdir() if p.is_file()))
            seen.append(sorted(p.name for p in folder.processing.iterdir()))
            return super().submit(events, client=client)

    folder = folder_of(tmp_path, Watching(publisher, COUNCIL_EVENT_TYPES))
    (folder.directory / "f.jsonl").write_text(good("C1") + "\n")
    folder.poll_once()
    assert seen == [[], ["f.jsonl"]]  # gone from the drop folder while being published
    assert list(folder.processing.iterdir()) == []


def test_lines_appended_while_reading_are_reported_never_moved_to_done_silently(
    tmp_path: Path, publisher: FakePublisher
) -> None:
    class Appending(Intake):
        """A writer that still holds the file appends while the first lines are published."""

        def submit(self, events: Sequence[Any], *, client: str) -> list[EventResult]:
            (claimed,) = folder.processing.iterdir()
            with claimed.open("a") as late:
                late.write(good("C8") + "\n" + good("C9") + "\n")
            return super().submit(events, client=client)

    folder = folder_of(tmp_path, Appending(publisher, COUNCIL_EVENT_TYPES))
    (folder.directory / "growing.jsonl").write_text(good("C1") + "\n" + good("C2") + "\n")
    (report,) = folder.poll_once()
    assert [a["line"] for a in report.accepted] == [1, 2]
    assert len(publisher.published) == 2
    (late,) = report.rejected
    assert late["line"] == 3 and late["code"] == "appended_while_reading"
    assert not (folder.done / "growing.jsonl").exists()
    assert (folder.failed / "growing.jsonl").exists()


def test_a_file_left_claimed_is_published_at_the_next_poll(
    tmp_path: Path, intake: Intake, publisher: FakePublisher
) -> None:
    folder = folder_of(tmp_path, intake)
    (folder.processing / "interrupted.jsonl").write_text(good("C1") + "\n")  # a crash after claim
    (report,) = folder.poll_once()
    assert len(report.accepted) == 1 and (folder.done / "interrupted.jsonl").exists()


def test_kafka_unavailable_keeps_the_file_claimed_until_it_is_back(
    tmp_path: Path, intake: Intake, publisher: FakePublisher
) -> None:
    folder = folder_of(tmp_path, intake)
    (folder.directory / "f.jsonl").write_text(good("C1") + "\n")
    publisher.unavailable = True
    assert folder.poll_once() == []
    assert (folder.processing / "f.jsonl").exists() and not (folder.done / "f.jsonl").exists()
    publisher.unavailable = False
    (report,) = folder.poll_once()
    assert len(report.accepted) == 1 and (folder.done / "f.jsonl").exists()


def test_reports_are_private_files(tmp_path: Path, intake: Intake) -> None:
    folder = folder_of(tmp_path, intake)
    old = os.umask(0o022)
    try:
        (folder.directory / "f.jsonl").write_text(good("C1") + "\n")
        folder.poll_once()
    finally:
        os.umask(old)
    mode = stat.S_IMODE((folder.done / "f.jsonl.report.json").stat().st_mode)
    assert mode == 0o600
