"""Backward-compatibility check of the current schemas against every released version.

A schema is backward compatible when a reader using it can read data written with an earlier
release. The check uses the `avro` package's `ReaderWriterCompatibilityChecker`.
"""

from __future__ import annotations

from pathlib import Path

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from broker.schemas.errors import SchemaLoadError
from broker.schemas.registry import default_released_dir

__all__ = ["default_released_dir", "incompatibilities"]


def _load_dir(directory: Path) -> dict[str, avro.schema.Schema]:
    schemas: dict[str, avro.schema.Schema] = {}
    for path in sorted(directory.rglob("*.avsc")):
        schema = avro.schema.parse(path.read_text(encoding="utf-8"))
        if not isinstance(schema, avro.schema.NamedSchema):
            raise SchemaLoadError(f"{path}: top-level schema must be a named record")
        schemas[schema.fullname] = schema
    return schemas


def incompatibilities(current_dir: Path, released_dir: Path) -> list[str]:
    """Problems found reading each released version's data with the current schemas.

    Returns one line per problem (empty when compatible): the release, the schema, the reason.
    A schema removed since a release is a problem too.
    """
    current = _load_dir(current_dir)
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    problems: list[str] = []
    for release in sorted(p for p in released_dir.iterdir() if p.is_dir()):
        for name, writer in _load_dir(release).items():
            reader = current.get(name)
            if reader is None:
                problems.append(f"{release.name}: {name} was released but is missing now")
                continue
            result = checker.get_compatibility(reader, writer)
            if result.compatibility is not SchemaCompatibilityType.compatible:
                reasons = "; ".join(str(m) for m in result.messages)
                problems.append(f"{release.name}: {name} cannot read released data: {reasons}")
    return problems
