"""`broker deploy render`: the manifests of a deployment, from its registry and config.

`strimzi`: Kubernetes with the Strimzi operator (docs/operations.md, "Kubernetes"): a KRaft
`Kafka` with a controller and a broker `KafkaNodePool` (3 each; replication 3, min in-sync 2;
one TLS listener with SCRAM-SHA-512), a `KafkaTopic` per topic of `topic_specs` with its
settings, the `KafkaUser`s of `broker.kafka.acl.strimzi_users` (the one ACL generator) plus the
operator, the router as a StatefulSet (stable instance ids: see `_router`), the HTTP intakes and
the alerts service as Deployments, PodDisruptionBudgets, NetworkPolicies, the config, public keys
and agreements as ConfigMaps. Private keys and secrets are never rendered: pods mount Secrets
the operator creates (`kubectl create secret`, listed in the rendered README).

`systemd`: a single host (docs/operations.md, "Single host"): one unit per process, run as a
dedicated user with the host's protections, reading the deployment directory `broker init`
wrote.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.config import (
    TOPIC_AUDIT,
    TOPIC_CHECKPOINTS,
    TOPIC_QUARANTINE,
    TOPIC_REGISTRY_AGREEMENTS,
    TOPIC_REGISTRY_KEYS,
    TOPIC_ROUTER_STATE,
    BrokerConfig,
)
from broker.kafka.acl import strimzi_users
from broker.kafka.credentials import OPERATOR, principal_of

PART_OF = "safeguarding-broker"
METRICS_PORT = 9464
INTAKE_PORT = 8903
KAFKA_PORT = 9093
DAY_MS = 86_400_000

# Retention per topic (docs/operations.md, "Topics and retention"): -1 keeps for ever.
RETENTION_MS: dict[str, int] = {
    "ingress.": 6 * 365 * DAY_MS,  # audit replay re-checks decisions against these: P6Y
    "feed.": 30 * DAY_MS,  # each agency reads its feed; a month to catch up or re-read
    TOPIC_AUDIT: -1,  # the tamper-evident log: never deleted
    TOPIC_CHECKPOINTS: -1,
    TOPIC_QUARANTINE: 90 * DAY_MS,  # rejected input, kept long enough to investigate
    TOPIC_ROUTER_STATE: -1,  # compacted: the latest state per partition is kept
    TOPIC_REGISTRY_KEYS: -1,  # compacted, signed registry records
    TOPIC_REGISTRY_AGREEMENTS: -1,
}


def retention_ms(topic: str) -> int:
    for prefix, value in RETENTION_MS.items():
        if topic == prefix or (prefix.endswith(".") and topic.startswith(prefix)):
            return value
    raise KeyError(f"no retention stated for topic {topic}: add it to RETENTION_MS")


@dataclass(frozen=True)
class Target:
    namespace: str = "safeguarding"
    cluster: str = "safeguarding"
    image: str = "registry.example.org/safeguarding-broker:0.1.0"
    router_replicas: int = 3
    intake_replicas: int = 2


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": PART_OF}


def _meta(name: str, target: Target, component: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": target.namespace}
    meta["labels"] = (
        _labels(component) if component else {"app.kubernetes.io/part-of": PART_OF}
    )
    return meta


def _k8s_name(name: str) -> str:
    """A DNS-1123 name for a Kafka name (topic names may hold upper case and `_`)."""
    return name.lower().replace("_", "-")


# -- Strimzi ------------------------------------------------------------------------------------


def strimzi(config: BrokerConfig, target: Target, sources: dict[str, str]) -> list[dict[str, Any]]:
    """Every resource, in the order `kubectl apply` needs them."""
    from broker.ops.doctor import CLOCK_TOPIC
    from broker.router.service import topic_specs

    resources: list[dict[str, Any]] = [_kafka(target), *_node_pools(target)]
    specs = topic_specs(config)
    for spec in specs:
        topic_config: dict[str, Any] = {
            "min.insync.replicas": 2,
            "retention.ms": retention_ms(spec.name),
            "cleanup.policy": "compact" if spec.compacted else "delete",
        }
        if spec.append_time:
            topic_config["message.timestamp.type"] = "LogAppendTime"
        resources.append(_topic(spec.name, spec.partitions, topic_config, target))
    resources.append(
        _topic(
            CLOCK_TOPIC,
            1,
            {"retention.ms": 3_600_000, "message.timestamp.type": "LogAppendTime"},
            target,
        )
    )
    users = strimzi_users(config, cluster=target.cluster)
    for user in users:
        user["metadata"]["namespace"] = target.namespace
    operator = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaUser",
        "metadata": {
            "name": OPERATOR,
            "namespace": target.namespace,
            "labels": {"strimzi.io/cluster": target.cluster},
        },
        # A super user (Kafka's superUsers): no ACLs of its own.
        "spec": {"authentication": {"type": "scram-sha-512"}},
    }
    resources += [*users, operator]
    resources += _config_maps(config, target, sources)
    resources += [_service_account(target)]
    resources += _router(config, target)
    resources += _intakes(config, target)
    resources += _alerts(config, target)
    resources += _network_policies(config, target)
    return resources


def _kafka(target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "Kafka",
        "metadata": {
            "name": target.cluster,
            "namespace": target.namespace,
            # Strimzi 0.4x needs these to run KRaft with node pools; 1.x ignores them.
            "annotations": {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"},
        },
        "spec": {
            "kafka": {
                "listeners": [
                    {
                        "name": "tls",
                        "port": KAFKA_PORT,
                        "type": "internal",
                        "tls": True,
                        "authentication": {"type": "scram-sha-512"},
                        # Only the broker's own pods reach the brokers (besides Strimzi).
                        "networkPolicyPeers": [
                            {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}}}
                        ],
                    }
                ],
                "authorization": {"type": "simple", "superUsers": [OPERATOR]},
                "config": {
                    "default.replication.factor": 3,
                    "min.insync.replicas": 2,
                    "offsets.topic.replication.factor": 3,
                    "transaction.state.log.replication.factor": 3,
                    "transaction.state.log.min.isr": 2,
                    "auto.create.topics.enable": False,
                    "unclean.leader.election.enable": False,
                },
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
        },
    }


def _node_pools(target: Target) -> list[dict[str, Any]]:
    pools = []
    for name, role, size in (("controllers", "controller", "20Gi"), ("brokers", "broker", "200Gi")):
        pools.append(
            {
                "apiVersion": "kafka.strimzi.io/v1",
                "kind": "KafkaNodePool",
                "metadata": {
                    "name": name,
                    "namespace": target.namespace,
                    "labels": {"strimzi.io/cluster": target.cluster},
                },
                "spec": {
                    "replicas": 3,
                    "roles": [role],
                    "storage": {
                        "type": "persistent-claim",
                        "size": size,
                        "deleteClaim": False,
                    },
                },
            }
        )
    return pools


def _topic(name: str, partitions: int, settings: dict[str, Any], target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {
            "name": _k8s_name(name),
            "namespace": target.namespace,
            "labels": {"strimzi.io/cluster": target.cluster},
        },
        "spec": {"topicName": name, "partitions": partitions, "replicas": 3, "config": settings},
    }


# -- the broker's own workloads ----------------------------------------------------------------

CONFIG_DIR = "/etc/broker"
KEYS_DIR = "/etc/broker/keys"
AGREEMENTS_DIR = "/etc/broker/agreements"
CREDENTIALS_DIR = "/var/run/broker/credentials"
PRIVATE_DIR = "/var/run/broker/private"
CA_FILE = "/var/run/broker/kafka/ca.crt"


def cluster_config(config: BrokerConfig, target: Target) -> dict[str, Any]:
    """The config file the pods read: in-cluster addresses, mounted secrets, no secret inline."""
    agencies = []
    for agency in config.agencies:
        entry: dict[str, Any] = {"id": agency.id, "name": agency.name}
        if agency.kind in ("council", "police", "nrm", "alerts"):
            entry["signing_key"] = f"{PRIVATE_DIR}/{agency.id}/signing.key.pem"
            entry["event_id_secret_file"] = f"{PRIVATE_DIR}/{agency.id}/event-id.secret"
        agencies.append(entry)
    return {
        "kafka": {
            "bootstrap_servers": f"{target.cluster}-kafka-bootstrap.{target.namespace}.svc:"
            f"{KAFKA_PORT}",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "ssl_cafile": CA_FILE,
            "credentials_dir": CREDENTIALS_DIR,
            # The KafkaTopic resources create them; nothing else may.
            "topics": {
                "create": False,
                "partitions": config.kafka.topics.partitions,
                "replication_factor": 3,
            },
        },
        "keys_dir": KEYS_DIR,
        "agreements_dir": AGREEMENTS_DIR,
        "agencies": agencies,
        "router": {
            "id": config.router.id,
            "signing_key": f"{PRIVATE_DIR}/{config.router.id}/signing.key.pem",
            "pseudonym_secret_env": "BROKER_PSEUDONYM_SECRET",
            "group_id": config.router.group_id,
            "metrics_port": METRICS_PORT,
            "metrics_host": "0.0.0.0",
        },
        **(
            {"registry": {"id": config.registry.id}} if config.registry is not None else {}
        ),
    }


def _config_maps(
    config: BrokerConfig, target: Target, sources: dict[str, str]
) -> list[dict[str, Any]]:
    import yaml

    keys = {p.name: p.read_text() for p in sorted(config.keys_dir.glob("*.pub.json"))}
    agreements = {
        p.name: p.read_text()
        for p in sorted(config.agreements_dir.iterdir())
        if p.suffix in (".yaml", ".yml")
    }
    text = yaml.safe_dump(cluster_config(config, target), sort_keys=False)
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("broker-config", target),
            "data": {"config.yaml": text, **sources},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("broker-keys", target),
            "data": keys,  # public keys only
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("broker-agreements", target),
            "data": agreements,
        },
    ]


def _service_account(target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta("safeguarding-broker", target),
        "automountServiceAccountToken": False,  # the broker never calls the Kubernetes API
    }


def _secret_volume(name: str, secret: str, items: list[tuple[str, str]] | None = None) -> Any:
    volume: dict[str, Any] = {"name": name, "secret": {"secretName": secret, "defaultMode": 0o400}}
    if items:
        volume["secret"]["items"] = [{"key": k, "path": p} for k, p in items]
    return volume


def _pod(
    target: Target,
    component: str,
    args: list[str],
    principal: str,
    private: list[str],
    *,
    port: int,
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A pod template: the broker image, read-only, non-root, its principal's Kafka credential
    (Strimzi's KafkaUser secret), the cluster CA, and the private keys of `private` ids."""
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": "broker-config", "items": [
            {"key": "config.yaml", "path": "config.yaml"}]}},
        {"name": "keys", "configMap": {"name": "broker-keys"}},
        {"name": "agreements", "configMap": {"name": "broker-agreements"}},
        _secret_volume("credential", principal, [("password", "password")]),
        _secret_volume("kafka-ca", f"{target.cluster}-cluster-ca-cert", [("ca.crt", "ca.crt")]),
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR + "/config.yaml", "subPath": "config.yaml",
         "readOnly": True},
        {"name": "keys", "mountPath": KEYS_DIR, "readOnly": True},
        {"name": "agreements", "mountPath": AGREEMENTS_DIR, "readOnly": True},
        {"name": "credential", "mountPath": f"{CREDENTIALS_DIR}/{principal}", "readOnly": True},
        {"name": "kafka-ca", "mountPath": str(Path(CA_FILE).parent), "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    for owner in private:
        volume = f"private-{_k8s_name(owner).replace('.', '-')}"
        volumes.append(_secret_volume(volume, f"{_k8s_name(owner)}-private"))
        mounts.append({"name": volume, "mountPath": f"{PRIVATE_DIR}/{owner}", "readOnly": True})
    container: dict[str, Any] = {
        "name": component,
        "image": target.image,
        "args": args,
        "ports": [{"name": "http", "containerPort": port}],
        "volumeMounts": mounts,
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "livenessProbe": {
            "tcpSocket": {"port": port},
            "initialDelaySeconds": 20,
            "periodSeconds": 10,
        },
    }
    if env:
        container["env"] = env
    return {
        "metadata": {"labels": _labels(component)},
        "spec": {
            "serviceAccountName": "safeguarding-broker",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationGracePeriodSeconds": 60,  # SIGTERM: the router stops within 45 s
            "containers": [container],
            "volumes": volumes,
        },
    }


def _pdb(name: str, component: str, target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, target, component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _labels(component)}},
    }


def _router(config: BrokerConfig, target: Target) -> list[dict[str, Any]]:
    """The router as a StatefulSet: each replica's instance id (its pod name, router-0, ...)
    is its transactional id, and it must stay the same across restarts, so that a restarted
    instance fences its predecessor's producer at once (a Deployment's random pod names would
    leave an open transaction to time out, and old ids to pile up)."""
    component = "router"
    pod = _pod(
        target,
        component,
        ["route", "--config", f"{CONFIG_DIR}/config.yaml", "--instance", "$(POD_NAME)"],
        principal_of(config.router.id),
        [config.router.id],
        port=METRICS_PORT,
        env=[
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "BROKER_PSEUDONYM_SECRET",
                "valueFrom": {
                    "secretKeyRef": {"name": "router-pseudonym-secret", "key": "secret"}
                },
            },
        ],
    )
    pod["metadata"]["annotations"] = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
    }
    pod["spec"]["containers"][0]["ports"][0]["name"] = "metrics"
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("router", target, component),
            "spec": {
                "clusterIP": "None",  # headless: one address per router pod, for scraping
                "selector": _labels(component),
                "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta("router", target, component),
            "spec": {
                "serviceName": "router",
                "replicas": target.router_replicas,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": _labels(component)},
                "template": pod,
            },
        },
        _pdb("router", component, target),
    ]


def _intakes(config: BrokerConfig, target: Target) -> list[dict[str, Any]]:
    """An HTTP intake (`broker connect council|police serve`) per council and police force."""
    resources: list[dict[str, Any]] = []
    for agency in config.agencies:
        if agency.kind not in ("council", "police"):
            continue
        name = f"intake-{_k8s_name(agency.id).replace('.', '-')}"
        component = name
        pod = _pod(
            target,
            component,
            [
                "connect", agency.kind, "serve", "--config", f"{CONFIG_DIR}/config.yaml",
                "--agency", agency.id, "--host", "0.0.0.0", "--port", str(INTAKE_PORT),
                "--tokens", f"{PRIVATE_DIR}/{agency.id}/live-tokens.txt",
            ],
            principal_of(agency.id),
            [agency.id],
            port=INTAKE_PORT,
        )
        pod["metadata"]["labels"]["broker.safeguarding/role"] = "intake"
        resources += [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(name, target, component),
                "spec": {
                    "selector": _labels(component),
                    "ports": [{"name": "http", "port": INTAKE_PORT, "targetPort": INTAKE_PORT}],
                },
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _meta(name, target, component),
                "spec": {
                    "replicas": target.intake_replicas,
                    "selector": {"matchLabels": _labels(component)},
                    "template": pod,
                },
            },
            _pdb(name, component, target),
        ]
    return resources


def _alerts(config: BrokerConfig, target: Target) -> list[dict[str, Any]]:
    """The alerts service (issue 17: `broker alerts`, not built yet) per `alerts.*` agency:
    one replica, its clocks live in Kafka-backed state."""
    resources: list[dict[str, Any]] = []
    for agency in config.agencies:
        if agency.kind != "alerts":
            continue
        name = f"alerts-{_k8s_name(agency.id).split('.', 1)[1]}"
        pod = _pod(
            target,
            name,
            ["alerts", "--config", f"{CONFIG_DIR}/config.yaml", "--agency", agency.id],
            principal_of(agency.id),
            [agency.id],
            port=METRICS_PORT,
        )
        pod["metadata"]["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(METRICS_PORT),
        }
        resources.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _meta(name, target, name),
                "spec": {
                    "replicas": 1,
                    "strategy": {"type": "Recreate"},  # never two at once: one set of clocks
                    "selector": {"matchLabels": _labels(name)},
                    "template": pod,
                },
            }
        )
    return resources


def _network_policies(config: BrokerConfig, target: Target) -> list[dict[str, Any]]:
    ours = {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}}
    kafka_pods = {"matchLabels": {"strimzi.io/cluster": target.cluster}}
    dns = {
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("broker-default-deny", target),
            "spec": {"podSelector": ours, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("broker-to-kafka", target),
            "spec": {
                "podSelector": ours,
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": [{"podSelector": kafka_pods}], "ports": [
                        {"protocol": "TCP", "port": KAFKA_PORT}]},
                    dns,
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("broker-metrics-from-prometheus", target),
            "spec": {
                "podSelector": ours,
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [monitoring], "ports": [
                    {"protocol": "TCP", "port": METRICS_PORT}]}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("broker-intake-http", target),
            "spec": {
                "podSelector": {"matchLabels": {"broker.safeguarding/role": "intake"}},
                "policyTypes": ["Ingress"],
                # Agencies' case systems reach the intake through the ingress controller.
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "ingress-nginx"}}}], "ports": [
                    {"protocol": "TCP", "port": INTAKE_PORT}]}],
            },
        },
    ]


def secret_commands(config: BrokerConfig, target: Target) -> list[str]:
    """The `kubectl create secret` commands that put the private material in the cluster, run
    in the directory `broker init` wrote (the manifests only reference these Secrets)."""
    home = config.source.resolve().parent
    ns = target.namespace

    def rel(path: Path | None, default: str) -> str:
        if path is None:
            return default
        try:
            return shlex.quote(str(path.resolve().relative_to(home)))
        except ValueError:
            return shlex.quote(str(path))

    commands = []
    for agency in config.agencies:
        if agency.kind not in ("council", "police", "nrm", "alerts"):
            continue
        files = [f"--from-file=signing.key.pem={rel(agency.signing_key, 'PRIVATE_KEY')}"]
        files.append(f"--from-file=event-id.secret={rel(agency.event_id_secret_file, 'SECRET')}")
        if agency.kind in ("council", "police"):
            files.append(f"--from-file=live-tokens.txt=live-tokens/{agency.id}.txt")
        commands.append(
            f"kubectl -n {ns} create secret generic {_k8s_name(agency.id)}-private "
            + " ".join(files)
        )
    commands.append(
        f"kubectl -n {ns} create secret generic {_k8s_name(config.router.id)}-private "
        f"--from-file=signing.key.pem={rel(config.router.signing_key, 'PRIVATE_KEY')}"
    )
    secret = rel(config.router.pseudonym_secret_file, "private/pseudonym.secret")
    commands.append(
        f"kubectl -n {ns} create secret generic router-pseudonym-secret --from-file=secret={secret}"
    )
    return commands


# -- files --------------------------------------------------------------------------------------

_GROUPS = (
    ("00-kafka.yaml", ("Kafka", "KafkaNodePool")),
    ("10-topics.yaml", ("KafkaTopic",)),
    ("20-users.yaml", ("KafkaUser",)),
    ("30-config.yaml", ("ConfigMap", "ServiceAccount")),
    ("40-workloads.yaml", ("Service", "StatefulSet", "Deployment", "PodDisruptionBudget")),
    ("50-network-policies.yaml", ("NetworkPolicy",)),
)


def write_strimzi(config: BrokerConfig, target: Target, out: Path) -> list[Path]:
    """Render into `out`: one YAML file per group of resources, and README.md (the Secrets to
    create, and the order to apply)."""
    import yaml

    resources = strimzi(config, target, {})
    written = []
    for name, kinds in _GROUPS:
        chosen = [r for r in resources if r["kind"] in kinds]
        path = out / name
        header = (
            "# Rendered by `broker deploy render --target strimzi` from the agency registry "
            "and config.\n# Do not edit: change the config and render again.\n"
        )
        path.write_text(header + yaml.safe_dump_all(chosen, sort_keys=False))
        written.append(path)
    readme = out / "README.md"
    commands = "\n".join(secret_commands(config, target))
    readme.write_text(
        "# Kubernetes manifests (Strimzi)\n\n"
        "Rendered by `broker deploy render --target strimzi`; see docs/operations.md, "
        "\"Kubernetes\".\n\n"
        "Private keys and secrets are never in these files. Create them first, from the\n"
        "directory `broker init` wrote (each agency's intake also needs its `live-tokens.txt`,\n"
        "from `broker connect token`):\n\n"
        f"```sh\nkubectl create namespace {target.namespace}\n{commands}\n```\n\n"
        "Then, with the Strimzi operator installed and watching the namespace:\n\n"
        "```sh\n"
        + "".join(f"kubectl apply -f {name}\n" for name, _ in _GROUPS)
        + "```\n"
    )
    written.append(readme)
    return written
