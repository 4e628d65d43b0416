"""Fixtures for agreement tests: the real schemas, the example set, files in a temp dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from agreement_samples import EXAMPLES

import broker.cli
from broker.agreements import AgreementSet, load_agreements
from broker.schemas import SchemaRegistry


@pytest.fixture(scope="session")
def registry() -> SchemaRegistry:
    return SchemaRegistry.default()


@pytest.fixture(scope="session")
def examples(registry: SchemaRegistry) -> AgreementSet:
    return load_agreements(EXAMPLES, registry)


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write agreement files (name -> text) into a fresh directory and return it."""

    def _write(**files: str) -> Path:
        for name, text in files.items():
            (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
        return tmp_path

    return _write



@pytest.fixture(autouse=True)
def only_agreement_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """`broker.cli.main` with only the agreements commands: other modules' imports stay out."""
    monkeypatch.setattr(broker.cli, "COMMANDS", ("broker.agreements.cli",))
