"""The project-local tools the deployment tests run (`make tools` fetches them into .tools/).

A missing tool fails the test with the command that fetches it: never a silent skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / ".tools"
KUBECONFORM = TOOLS / "bin" / "kubeconform"
PROMTOOL = TOOLS / "prometheus" / "usr" / "bin" / "promtool"
PROMETHEUS = TOOLS / "prometheus" / "usr" / "bin" / "prometheus"
FAKETIME = TOOLS / "faketime" / "usr" / "lib" / "x86_64-linux-gnu" / "faketime" / "libfaketime.so.1"


def require(tool: Path) -> Path:
    if not tool.is_file():
        pytest.fail(f"{tool} is missing: run `make tools` (make test and make unit do it first)")
    return tool
