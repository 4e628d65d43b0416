"""Fixtures for connector tests: the shared SSDA903 sample and writable copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from connector_data import SSDA903_SAMPLE


@pytest.fixture(scope="session")
def sample() -> Path:
    if not SSDA903_SAMPLE.is_dir():
        pytest.skip(f"shared sample data not found at {SSDA903_SAMPLE}")
    return SSDA903_SAMPLE


@pytest.fixture
def sample_copy(sample: Path, tmp_path: Path) -> Path:
    """A writable copy of the sample tables."""
    target = tmp_path / "ssda903"
    shutil.copytree(sample, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target
