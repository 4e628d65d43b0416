"""`broker deploy render`: every rendered resource validates offline (issue 18).

Strimzi resources against Strimzi's own CRDs (shared/reference/strimzi, converted to JSON schema
by scripts/crd_to_jsonschema.py, made strict) with kubeconform; core resources against the
Kubernetes schemas kubernetes-validate bundles, strict. Each validator is shown to refuse a
broken resource, so a pass means something. The systemd units pass `systemd-analyze verify`
with no warning. The committed examples (deploy/kubernetes, deploy/systemd) are what the
renderer makes today.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ops_tools import KUBECONFORM, require

from broker.cli import main
from broker.config import BrokerConfig, load_config
from broker.kafka.acl import strimzi_users
from broker.ops.render import RETENTION_MS, Target, strimzi
from broker.router.service import topic_specs
from broker.scaffold import REPO_ROOT

CRDS = REPO_ROOT.parent / "shared" / "reference" / "strimzi"
STRIMZI_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
K8S_VERSION = kubernetes_validate.latest_version()

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from render_deploy_examples import render_examples  # noqa: E402


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    crds = sorted(CRDS.glob("04*-Crd-*.yaml"))
    assert len(crds) == 4, f"the Strimzi CRDs are not in {CRDS}"
    out = tmp_path_factory.mktemp("schemas")
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "crd_to_jsonschema.py"), str(out)]
        + [str(crd) for crd in crds],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The examples rendered afresh: (kubernetes dir, systemd dir)."""
    base = tmp_path_factory.mktemp("render")
    render_examples(base / "kubernetes", base / "systemd")
    return base / "kubernetes", base / "systemd"


def kubeconform(schemas: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(require(KUBECONFORM)),
            "-strict",
            "-summary",
            "-output", "json",
            "-schema-location",
            f"{schemas}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
    )


def documents(directory: Path) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(directory.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def write_all(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


@pytest.mark.parametrize("which", ["rendered", "committed"])
def test_every_resource_validates_offline(
    which: str, rendered: tuple[Path, Path], schemas: Path, tmp_path: Path
) -> None:
    directory = rendered[0] if which == "rendered" else REPO_ROOT / "deploy" / "kubernetes"
    docs = documents(directory)
    custom = [d for d in docs if d["kind"] in STRIMZI_KINDS]
    core = [d for d in docs if d["kind"] not in STRIMZI_KINDS]
    assert {d["kind"] for d in custom} == STRIMZI_KINDS
    done = kubeconform(schemas, write_all(tmp_path / "strimzi.yaml", custom))
    summary = json.loads(done.stdout)["summary"]
    assert done.returncode == 0, done.stdout
    assert summary == {"valid": len(custom), "invalid": 0, "errors": 0, "skipped": 0}, summary
    kinds = set()
    for doc in core:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.add(doc["kind"])
    assert kinds == {
        "ConfigMap", "ServiceAccount", "Service", "StatefulSet", "Deployment",
        "PodDisruptionBudget", "NetworkPolicy",
    }


def test_the_validators_refuse_a_broken_resource(
    rendered: tuple[Path, Path], schemas: Path, tmp_path: Path
) -> None:
    docs = documents(rendered[0])
    pool = copy.deepcopy(next(d for d in docs if d["kind"] == "KafkaNodePool"))
    pool["spec"]["storage"]["deleteClaims"] = False  # a misspelt field the CRD does not have
    topic = copy.deepcopy(next(d for d in docs if d["kind"] == "KafkaTopic"))
    topic["spec"]["replicas"] = "three"
    done = kubeconform(schemas, write_all(tmp_path / "bad.yaml", [pool, topic]))
    assert done.returncode == 1
    assert json.loads(done.stdout)["summary"]["invalid"] == 2, done.stdout
    router = copy.deepcopy(next(d for d in docs if d["kind"] == "StatefulSet"))
    router["spec"]["replica"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(router, K8S_VERSION, strict=True)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> BrokerConfig:
    from render_deploy_examples import EXAMPLE_AGENCIES

    from broker.scaffold import write_deployment

    path = write_deployment(
        tmp_path_factory.mktemp("dep"), bootstrap_servers="x:1", agencies=EXAMPLE_AGENCIES
    )
    return load_config(path)


def test_the_manifests_carry_the_registry_topics_and_settings(config: BrokerConfig) -> None:
    resources = strimzi(config, Target(), {})
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_kind.setdefault(resource["kind"], []).append(resource)
    (kafka,) = by_kind["Kafka"]
    listener = kafka["spec"]["kafka"]["listeners"][0]
    assert listener["tls"] is True and listener["authentication"]["type"] == "scram-sha-512"
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    assert kafka["spec"]["kafka"]["config"]["default.replication.factor"] == 3
    pools = {p["metadata"]["name"]: p["spec"] for p in by_kind["KafkaNodePool"]}
    assert pools["brokers"]["replicas"] == 3 and pools["brokers"]["roles"] == ["broker"]
    assert pools["controllers"]["roles"] == ["controller"]
    # A KafkaTopic per topic, with its partitions, compaction and a stated retention.
    topics = {t["spec"]["topicName"]: t["spec"] for t in by_kind["KafkaTopic"]}
    for spec in topic_specs(config):
        rendered = topics[spec.name]
        assert rendered["partitions"] == spec.partitions and rendered["replicas"] == 3
        policy = rendered["config"]["cleanup.policy"]
        assert policy == ("compact" if spec.compacted else "delete"), spec.name
        assert "retention.ms" in rendered["config"]
    for name in ("router.state", "registry.keys", "registry.agreements"):
        assert topics[name]["config"]["cleanup.policy"] == "compact"
    assert topics["feed.police.met"]["config"]["retention.ms"] == RETENTION_MS["feed."]
    # The users are the ACL generator's, plus the operator (a super user, no ACLs).
    users = {u["metadata"]["name"]: u for u in by_kind["KafkaUser"]}
    for user in strimzi_users(config):
        assert users[user["metadata"]["name"]]["spec"] == user["spec"]
    assert "operator" in kafka["spec"]["kafka"]["authorization"]["superUsers"]
    assert "authorization" not in users["operator"]["spec"]
    # Workloads: several routers, an intake per council and police force, the alerts service.
    (router,) = by_kind["StatefulSet"]
    assert router["spec"]["replicas"] == 3
    deployments = {d["metadata"]["name"] for d in by_kind["Deployment"]}
    assert "alerts-main" in deployments
    assert "intake-police-met" in deployments and "intake-council-e09000033" in deployments
    assert {p["metadata"]["name"] for p in by_kind["PodDisruptionBudget"]} >= {"router"}
    assert len(by_kind["NetworkPolicy"]) >= 3
    # Secrets are mounted, never rendered: no Secret object and no private material anywhere.
    assert "Secret" not in by_kind
    text = yaml.safe_dump_all(resources)
    assert "PRIVATE KEY" not in text
    for secret in (config.pseudonym_secret.decode(),):
        assert secret not in text
    # The pods' config is a valid config (paths are the mounts), with no secret inline.
    (settings,) = [c for c in by_kind["ConfigMap"] if c["metadata"]["name"] == "broker-config"]
    in_pod = BrokerConfig.model_validate(yaml.safe_load(settings["data"]["config.yaml"]))
    assert in_pod.kafka.secured and in_pod.kafka.topics.replication_factor == 3
    assert in_pod.router.metrics_host == "0.0.0.0" and in_pod.router.pseudonym_secret_file is None
    pod = router["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"router.main", "safeguarding-cluster-ca-cert", "router.main-private"}
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert "secretKeyRef" in env["BROKER_PSEUDONYM_SECRET"]["valueFrom"]


def test_the_committed_examples_are_current(rendered: tuple[Path, Path]) -> None:
    """What is under deploy/ is what the renderer makes, except the throwaway deployment's
    public keys and key file names (scripts/render_deploy_examples.py renders them again)."""
    fresh_k8s, fresh_systemd = rendered

    def comparable(directory: Path) -> list[dict[str, Any]]:
        docs = documents(directory)
        for doc in docs:
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "broker-keys":
                doc["data"] = sorted(name.split(".")[:2] for name in doc["data"])
        return docs

    assert comparable(fresh_k8s) == comparable(REPO_ROOT / "deploy" / "kubernetes")
    for unit in sorted(fresh_systemd.glob("*.service")) + sorted(fresh_systemd.glob("*.target")):
        committed = REPO_ROOT / "deploy" / "systemd" / unit.name
        assert committed.read_text() == unit.read_text(), unit.name


def test_the_systemd_units_verify(config: BrokerConfig, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not on PATH (Debian: the systemd package)")
    out = tmp_path / "units"
    broker = str(Path(sys.executable).with_name("broker"))
    args = ["deploy", "render", "--target", "systemd", "--config", str(config.source)]
    assert main([*args, "--out", str(out), "--broker-bin", broker]) == 0
    template = out / "safeguarding-router@.service"
    shutil.copy(template, out / "safeguarding-router@1.service")  # an instance of the template
    units = sorted(
        p for p in out.iterdir() if p.suffix in (".service", ".target") and p != template
    )
    done = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, units)], capture_output=True, text=True, cwd=out
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    # And it does complain: an unknown directive is reported.
    bad = out / "bad.service"
    bad.write_text(template.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    done = subprocess.run([analyze, "verify", "--man=no", str(bad)], capture_output=True, text=True)
    assert "restart specifier" in done.stderr, done.stderr
