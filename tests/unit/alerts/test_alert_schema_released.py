"""`alert.raised` is a released schema like every other event type: its version 1 is in
`schemas/released/v1/`, so alerts signed today stay verifiable after the schema evolves, and the
backward-compatibility check guards it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from broker.alerts.clocks import ALERT_EVENT_TYPE
from broker.schemas import SchemaRegistry
from broker.schemas.compat import default_released_dir, incompatibilities
from broker.schemas.registry import default_schema_dir


def _released_event_types() -> set[str]:
    found: set[str] = set()
    for release in default_released_dir().iterdir():
        found |= set(SchemaRegistry.from_dir(release).event_types())
    return found


def test_every_current_event_type_has_a_released_version() -> None:
    current = set(SchemaRegistry.from_dir(default_schema_dir()).event_types())
    assert ALERT_EVENT_TYPE in current
    assert current - _released_event_types() == set()


def test_alert_raised_v1_is_the_current_schema() -> None:
    v1 = SchemaRegistry.from_dir(default_released_dir() / "v1")
    registry = SchemaRegistry.default()
    assert registry.event_type_for(v1.fingerprint(ALERT_EVENT_TYPE)) == ALERT_EVENT_TYPE
    (only,) = registry.versions(ALERT_EVENT_TYPE)  # unchanged since released: one version
    assert only.is_current and only.fingerprint == v1.fingerprint(ALERT_EVENT_TYPE)


def test_an_incompatible_change_to_alert_raised_is_caught(tmp_path: Path) -> None:
    current = tmp_path / "avro"
    shutil.copytree(default_schema_dir(), current)
    path = current / "events" / "alert.raised.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append({"name": "case_worker_ref", "type": "string"})  # no default
    path.write_text(json.dumps(schema))
    problems = incompatibilities(current, default_released_dir())
    assert len(problems) == 1 and "AlertRaised" in problems[0]
