"""docs/bad-input.md: at least 40 classes of bad input, each naming tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = REPO / "docs" / "bad-input.md"
ROW = re.compile(r"^\| ([A-Z]+\d+) \| (.+?) \| (.+?) \| (.+) \|$")


def rows() -> list[tuple[str, str]]:
    found = []
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            found.append((match.group(1), match.group(4)))
    return found


def named_tests(cell: str) -> list[tuple[str, str]]:
    """(file, test function) pairs of a Test cell: `path::name, ::other; path2::name`."""
    named = []
    path = ""
    for part in re.split(r"[;,]", cell.replace("`", "")):
        part = part.strip()
        if "::" not in part:
            continue
        file, name = part.split("::", 1)
        path = file.strip() or path
        named.append((path, name.strip()))
    return named


def test_at_least_forty_classes_with_unique_ids() -> None:
    ids = [ident for ident, _ in rows()]
    assert len(ids) >= 40
    assert len(ids) == len(set(ids))


def test_every_class_names_tests_that_exist() -> None:
    for ident, cell in rows():
        named = named_tests(cell)
        assert named, f"{ident}: no test named"
        for file, name in named:
            source = REPO / file
            assert source.is_file(), f"{ident}: {file} does not exist"
            assert re.search(rf"^def {re.escape(name)}\(", source.read_text(), re.M), (
                f"{ident}: {file} has no test {name}"
            )
