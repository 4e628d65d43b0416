"""Every current schema reads data written with every released version (backward compatible)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from broker.schemas.compat import default_released_dir, incompatibilities
from broker.schemas.registry import default_schema_dir


def test_current_schemas_are_backward_compatible_with_releases() -> None:
    assert any(default_released_dir().iterdir()), "no released snapshot"
    assert incompatibilities(default_schema_dir(), default_released_dir()) == []


@pytest.fixture()
def current_copy(tmp_path: Path) -> Path:
    target = tmp_path / "avro"
    shutil.copytree(default_schema_dir(), target)
    return target


def _edit(path: Path, edit: object) -> None:
    schema = json.loads(path.read_text())
    edit(schema)  # type: ignore[operator]
    path.write_text(json.dumps(schema))


def test_new_required_field_without_default_is_caught(current_copy: Path) -> None:
    _edit(
        current_copy / "events" / "nrm.decision.made.avsc",
        lambda s: s["fields"].append({"name": "appeal_ref", "type": "string"}),
    )
    problems = incompatibilities(current_copy, default_released_dir())
    assert len(problems) == 1 and "NrmDecisionMade" in problems[0]


def test_changed_field_type_is_caught(current_copy: Path) -> None:
    def retype(schema: dict[str, list[dict[str, object]]]) -> None:
        for field in schema["fields"]:
            if field["name"] == "rhi_offered":
                field["type"] = "string"

    _edit(current_copy / "events" / "child.return_interview.recorded.avsc", retype)
    problems = incompatibilities(current_copy, default_released_dir())
    assert len(problems) == 1 and "ChildReturnInterviewRecorded" in problems[0]


def test_new_optional_field_with_default_is_accepted(current_copy: Path) -> None:
    _edit(
        current_copy / "events" / "nrm.decision.made.avsc",
        lambda s: s["fields"].append(
            {"name": "appeal_ref", "type": ["null", "string"], "default": None}
        ),
    )
    assert incompatibilities(current_copy, default_released_dir()) == []


def test_removed_schema_is_caught(current_copy: Path) -> None:
    (current_copy / "events" / "guardian.appointed.avsc").unlink()
    problems = incompatibilities(current_copy, default_released_dir())
    assert problems and "GuardianAppointed" in problems[0]
