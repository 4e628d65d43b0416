"""The auditor's tools stand apart from the router: they share `broker.ingress`, never import it."""

from __future__ import annotations

import subprocess
import sys


def test_audit_never_imports_the_router() -> None:
    code = (
        "import sys, broker.audit, broker.audit.cli, broker.audit.replay, broker.audit.dump;"
        "print(sorted(m for m in sys.modules if m.startswith('broker.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout
    assert "broker.ingress" in loaded  # replay does use the shared checks
    assert "broker.router" not in loaded
