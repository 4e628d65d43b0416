"""`broker init DIR`, `broker doctor --config C` and `broker deploy render --target T`."""

from __future__ import annotations

import argparse
from pathlib import Path

from broker.config import load_config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = subparsers.add_parser(
        "init",
        help="write a working deployment (config, keys, credentials, agreements, alert rules)",
        description=(
            "Write a deployment for a set of agencies into DIR: config.yaml, a signing key per "
            "agency (issuer), the router (router, checkpoint) and the registry authority "
            "(registry-admin), secrets (mode 0600), the example agreements and events that "
            "concern these agencies, the Prometheus alert rules, and on a secured Kafka the "
            "CA certificate, the operator's credential and a credential per principal (with "
            "the topics created and the registry's ACLs applied). Re-running never overwrites "
            "a key, a secret, a credential or config.yaml."
        ),
    )
    init.add_argument("directory", type=Path, metavar="DIR")
    init.add_argument(
        "--agency",
        action="append",
        default=[],
        metavar="ID=NAME",
        help="an agency of the registry (repeat); default: the demo's seven agencies",
    )
    init.add_argument(
        "--local-kafka",
        type=Path,
        default=None,
        metavar="DATA_DIR",
        help="use the local Kafka `broker kafka start` runs from DATA_DIR (default var/kafka)",
    )
    init.add_argument("--bootstrap", default=None, help="HOST:PORT of another cluster")
    init.add_argument("--kafka-ca", type=Path, default=None, help="its CA certificate (PEM)")
    init.add_argument(
        "--kafka-operator", type=Path, default=None, help="its operator credential (operator.json)"
    )
    init.add_argument("--partitions", type=int, default=3)
    init.add_argument("--replication", type=int, default=1, help="3 on a production cluster")
    init.add_argument("--metrics-port", type=int, default=9464, help="the router's /metrics port")
    init.add_argument(
        "--no-provision",
        action="store_true",
        help="write files only: issue credentials, topics and ACLs later",
    )
    init.set_defaults(func=_init)

    doctor = subparsers.add_parser(
        "doctor",
        help="check a deployment: one line per problem, exit 1 if any",
        description=(
            "Checks agreements (parties in the registry), signing keys (valid, not about to "
            "expire), the Kafka CA certificate, Kafka (reachable, credential accepted), every "
            "topic, the ACLs against the registry, and this host's clock against Kafka's."
        ),
    )
    doctor.add_argument("--config", type=Path, required=True)
    doctor.add_argument(
        "--expiry-days", type=float, default=30.0, help="warn of keys and certificates expiring"
    )
    doctor.add_argument(
        "--max-clock-skew", type=float, default=30.0, help="seconds of clock difference allowed"
    )
    doctor.add_argument("--quiet", action="store_true", help="print problems only")
    doctor.set_defaults(func=_doctor)
    register_deploy(subparsers)


def _init(args: argparse.Namespace) -> int:
    from broker.kafka.local import ClusterAccess, default_data_dir
    from broker.ops.init import (
        InitError,
        init_deployment,
        local_kafka_access,
        next_commands,
        parse_agencies,
    )

    if args.bootstrap:
        if (args.kafka_ca is None) != (args.kafka_operator is None):
            raise InitError("give both --kafka-ca and --kafka-operator for a secured cluster")
        access = ClusterAccess(
            args.bootstrap,
            args.kafka_ca,
            args.kafka_operator.parent if args.kafka_operator else None,
        )
        if args.kafka_operator is not None and args.kafka_operator.name != "operator.json":
            raise InitError(
                f"--kafka-operator must name an operator.json, not {args.kafka_operator}"
            )
    else:
        access = local_kafka_access((args.local_kafka or default_data_dir()).resolve())
    report = init_deployment(
        args.directory,
        access,
        agencies=parse_agencies(args.agency),
        partitions=args.partitions,
        replication=args.replication,
        metrics_port=args.metrics_port,
        provision=not args.no_provision,
    )
    for path in report.made:
        print(f"made  {path}")
    for path in report.kept:
        print(f"kept  {path} (exists: not overwritten)")
    if report.issued:
        print(
            f"Kafka: issued {len(report.issued)} credential(s) into "
            f"{report.config.parent / 'credentials'} (mode 0600), created the topics, applied "
            "the registry's ACLs"
        )
    if report.provision_error:
        print(f"Kafka: not provisioned: {report.provision_error}")
        print(
            "  when Kafka answers: broker kafka credentials issue --all --config "
            f"{report.config}; broker acl apply --config {report.config}"
        )
    print("next:")
    for command in next_commands(report):
        print(f"  {command}")
    if report.alerts:
        print(
            f"and the safeguarding alerts service (rules in {report.config.parent / 'alerts'}): "
            f"broker alerts --config {report.config} &"
        )
    if report.feed_agency:
        print(
            f"then see what {report.feed_agency} received: broker feed --config {report.config} "
            f"--agency {report.feed_agency} --from-beginning"
        )
    return 1 if report.provision_error else 0


def _doctor(args: argparse.Namespace) -> int:
    from broker.ops.doctor import diagnose, problems

    config = load_config(args.config)
    findings = diagnose(config, expiry_days=args.expiry_days, max_skew_s=args.max_clock_skew)
    for finding in findings:
        if not (args.quiet and finding.ok):
            print(str(finding).replace("CONFIG", str(args.config)))
    wrong = problems(findings)
    print(f"{len(wrong)} problem(s)" if wrong else "healthy: no problem found")
    return 1 if wrong else 0


def register_deploy(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deploy = subparsers.add_parser(
        "deploy",
        help="render the manifests of a deployment (Kubernetes with Strimzi, or one host)",
    )
    actions = deploy.add_subparsers(dest="action", metavar="ACTION", required=True)
    render = actions.add_parser(
        "render",
        help="write the manifests for --target into --out",
        description=(
            "strimzi: Kafka, node pools, topics, users with the registry's ACLs, the router, "
            "intakes and alerts service, PodDisruptionBudgets, NetworkPolicies, ConfigMaps "
            "(private keys and secrets are mounted from Secrets, never rendered). systemd: "
            "units for a single host."
        ),
    )
    render.add_argument("--target", choices=("strimzi", "systemd"), required=True)
    render.add_argument("--config", type=Path, required=True)
    render.add_argument("--out", type=Path, required=True)
    render.add_argument("--namespace", default="safeguarding")
    render.add_argument("--cluster", default="safeguarding", help="Strimzi cluster name")
    render.add_argument("--image", default="registry.example.org/safeguarding-broker:0.1.0")
    render.add_argument("--router-replicas", type=int, default=3)
    render.add_argument("--user", default="broker", help="systemd: the account the units run as")
    render.add_argument(
        "--home",
        type=Path,
        default=None,
        help="systemd: where the deployment directory is on the host (default: the config's)",
    )
    render.add_argument(
        "--broker-bin", default="/opt/safeguarding-broker/.venv/bin/broker",
        help="systemd: the installed `broker` command",
    )
    render.set_defaults(func=_render)


def _render(args: argparse.Namespace) -> int:
    from broker.ops import render

    config = load_config(args.config)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.target == "systemd":
        from broker.ops import single_host

        config_path = args.config.resolve()
        if args.home is not None:
            config_path = args.home / config_path.name
        written = single_host.write_units(
            config, config_path, out, user=args.user, broker=args.broker_bin
        )
    else:
        target = render.Target(
            namespace=args.namespace,
            cluster=args.cluster,
            image=args.image,
            router_replicas=args.router_replicas,
        )
        written = render.write_strimzi(config, target, out)
    for path in written:
        print(f"wrote {path}")
    return 0
