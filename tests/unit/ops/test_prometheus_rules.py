"""The Prometheus alert rules (deploy/monitoring/alerts.yml): `promtool check rules` and the
rule unit tests (`promtool test rules alerts.test.yml`, each alert firing on its fault and quiet
on the healthy case beside it) pass; the tests can fail (a broken rule fails them); every
metric the rules read is exported by the router (except the alerts service's, issue 17), and
every alert has its runbook section in docs/operations.md.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from ops_tools import PROMTOOL, require

from broker.envelope.keys import KeyRegistry
from broker.kafka.tls import make_local_ca
from broker.router.metrics import RouterMetrics
from broker.scaffold import REPO_ROOT, write_deployment

MONITORING = REPO_ROOT / "deploy" / "monitoring"
RULES = MONITORING / "alerts.yml"
# Exported by the alerts service of issue 17 once it exists (documented in docs/operations.md).
NOT_YET_EXPORTED = {"broker_alert_clocks_overdue"}


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(require(PROMTOOL)), *args], capture_output=True, text=True, cwd=cwd
    )


def alerts() -> list[dict[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_rule_tests_fail_on_a_broken_rule(tmp_path: Path) -> None:
    shutil.copy(MONITORING / "alerts.test.yml", tmp_path)
    broken = RULES.read_text().replace(
        "max by (job, instance) (broker_stuck) == 1", "max by (job, instance) (broker_stuck) == 2"
    )
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    tested = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert tested.returncode == 1
    assert "BrokerRouterStuck" in tested.stdout + tested.stderr


def test_every_alert_is_required_by_the_brief_and_has_a_runbook() -> None:
    names = {rule["alert"] for rule in alerts()}
    assert names == {
        "BrokerRouterDown", "BrokerRouterStuck", "BrokerConsumerLagGrowing",
        "BrokerQuarantineRateHigh", "BrokerTransactionsAborting", "BrokerCheckpointOverdue",
        "BrokerKeyExpiringSoon", "BrokerCertificateExpiringSoon", "BrokerAlertClocksOverdue",
    }
    runbook = (REPO_ROOT / "docs" / "operations.md").read_text()
    for rule in alerts():
        assert f"### {rule['alert']}" in runbook, rule["alert"]
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"


def test_every_metric_the_rules_read_is_exported(tmp_path: Path) -> None:
    """What the rules read is what a router serves (a renamed metric would silence an alert)."""
    metrics = RouterMetrics()
    config = write_deployment(tmp_path / "dep", bootstrap_servers="x:1")
    keys = KeyRegistry.from_dir(config.parent / "keys")
    metrics.watch_expiry(keys.keys, make_local_ca(tmp_path / "tls").ca_cert)
    exposed: set[str] = set()
    for family in metrics.registry.collect():
        exposed.add(family.name)
        if family.type == "counter":
            exposed.add(f"{family.name}_total")
    read: set[str] = set()
    for rule in alerts():
        read |= set(re.findall(r"\b(broker_[a-z_]+)\b", rule["expr"]))
    assert read - NOT_YET_EXPORTED <= exposed, sorted(read - NOT_YET_EXPORTED - exposed)
    assert {"broker_stuck", "broker_key_expiry_timestamp_seconds"} <= read


def exported_names(tmp_path: Path) -> set[str]:
    metrics = RouterMetrics()
    config = write_deployment(tmp_path / "dep", bootstrap_servers="x:1")
    keys = KeyRegistry.from_dir(config.parent / "keys")
    metrics.watch_expiry(keys.keys, make_local_ca(tmp_path / "tls").ca_cert)
    names: set[str] = {"up"}
    for family in metrics.registry.collect():
        names.add(family.name)
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
        if family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
    return names


def test_the_dashboard_reads_exported_metrics_and_each_panel_is_documented(
    tmp_path: Path,
) -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exposed = exported_names(tmp_path)
    docs = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert len(dashboard["panels"]) >= 10
    for panel in dashboard["panels"]:
        assert f"| {panel['title']} |" in docs, panel["title"]
        for target in panel["targets"]:
            read = set(re.findall(r"\b(broker_[a-z_]+|up)\b", target["expr"]))
            assert read and read <= exposed, (panel["title"], read - exposed)
