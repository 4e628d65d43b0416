"""Render the committed examples: deploy/kubernetes/ (Strimzi) and deploy/systemd/ (one host).

From a throwaway deployment of the demo agencies plus an alerts service (`alerts.main`), so the
examples show every kind of workload; its public keys (in the broker-keys ConfigMap) and the
key file names in the README are that deployment's: render your own for real use.
Usage: .venv/bin/python scripts/render_deploy_examples.py  (the suite checks they are current)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from broker.cli import main
from broker.scaffold import DEMO_AGENCIES, REPO_ROOT, write_deployment

EXAMPLE_AGENCIES = {**DEMO_AGENCIES, "alerts.main": "Safeguarding alerts service (issue 17)"}


def render_examples(kubernetes: Path, systemd: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="broker-examples-") as tmp:
        config = write_deployment(
            Path(tmp) / "srv" / "safeguarding",
            bootstrap_servers="127.0.0.1:9092",
            agencies=EXAMPLE_AGENCIES,
        )
        render = ["deploy", "render", "--config", str(config)]
        assert main([*render, "--target", "strimzi", "--out", str(kubernetes)]) == 0
        home = ["--home", "/srv/safeguarding"]
        assert main([*render, "--target", "systemd", "--out", str(systemd), *home]) == 0


if __name__ == "__main__":
    render_examples(REPO_ROOT / "deploy" / "kubernetes", REPO_ROOT / "deploy" / "systemd")
    sys.exit(0)
