"""Files holding personal data are 0600 (issue 15, part 5): `broker feed --to-file`."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.personal import open_private
from connectors.subscriber import DeliveryError, FileTarget


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what most shells have: new files world-readable
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_feed_file_is_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "out" / "feed.jsonl"
    target = FileTarget(path)
    target.deliver({"fields": {"first_name": "Amira"}})
    target.close()
    assert mode(path) == 0o600
    assert path.read_text().count("\n") == 1


def test_an_existing_world_readable_feed_file_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text('{"old": 1}\n')
    path.chmod(0o644)
    target = FileTarget(path)
    target.deliver({"new": 2})
    target.close()
    assert mode(path) == 0o600
    assert path.read_text().splitlines() == ['{"old": 1}', '{"new": 2}']  # appended


def test_a_symlink_in_place_of_the_feed_file_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("")
    link = tmp_path / "feed.jsonl"
    link.symlink_to(elsewhere)
    with pytest.raises(DeliveryError, match="cannot open"):
        FileTarget(link).deliver({"x": 1})
    assert elsewhere.read_text() == ""


def test_open_private_truncates_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    with open_private(path, append=False) as out:
        out.write("new")
    assert path.read_text() == "new" and mode(path) == 0o600
