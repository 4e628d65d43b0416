"""`broker kafka start|status|stop|credentials` and `broker acl plan|apply|render`.

The local Kafka cluster for development, tests and demos (secured unless `--insecure`), the
principals' credentials, and the ACLs the agency registry implies.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from broker.config import load_config
from broker.kafka.local import DEFAULT_START_TIMEOUT, LocalKafka, default_data_dir, resolve_jars


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "kafka",
        help="start, inspect or stop a local Kafka (from Maven Central jars)",
        description="A real Apache Kafka (KRaft) on 127.0.0.1, run from Maven Central jars.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (
        ("start", "start a local cluster and wait until it is ready"),
        ("status", "say whether the local cluster runs, and where"),
        ("stop", "stop the cluster started from the data directory"),
        ("jars", "resolve the Kafka jars from Maven Central into the cache (once)"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help=f"cluster data and logs (default: {default_data_dir()})",
        )
        if name == "start":
            action.add_argument("--nodes", type=int, choices=(1, 3), default=1)
            action.add_argument(
                "--node",
                type=int,
                default=None,
                metavar="N",
                help="start only node N of an existing cluster (after a node fault)",
            )
            action.add_argument(
                "--insecure",
                action="store_true",
                help="one plaintext listener, no authentication, no ACLs: experiments only",
            )
            action.add_argument(
                "--port", type=int, default=None, help="broker port of node 1 (default: a free one)"
            )
            action.add_argument(
                "--timeout",
                type=float,
                default=DEFAULT_START_TIMEOUT,
                help="seconds to wait until ready",
            )
        action.set_defaults(func=_run)
    _register_credentials(actions)
    _register_acl(subparsers)


def _register_credentials(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = actions.add_parser(
        "credentials",
        help="issue, revoke or list principals' SCRAM credentials (as the operator)",
        description=(
            "Principals' SCRAM-SHA-512 credentials. `issue` gives each named principal a new "
            "random password in the cluster and writes <principal>.json (mode 0600) into "
            "kafka.credentials_dir (or --out); `revoke` deletes the credential and every ACL "
            "the principal holds; `list` shows who holds one. Principals: an agency's id, the "
            "router's id, auditor, stats, operator."
        ),
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, help_text in (
        ("issue", "a new random password for each principal; writes <principal>.json"),
        ("revoke", "delete each principal's credential and withdraw its ACLs"),
        ("list", "who holds a credential"),
    ):
        sub = verbs.add_parser(verb, help=help_text)
        if verb != "list":
            sub.add_argument("principals", nargs="*", metavar="PRINCIPAL")
        sub.add_argument("--config", type=Path, required=True)
        if verb == "issue":
            sub.add_argument("--all", action="store_true", help="every principal of the registry")
            sub.add_argument("--out", type=Path, default=None, help="write the files here")
        sub.set_defaults(func=_credentials)


def _register_acl(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "acl",
        help="the Kafka ACLs the agency registry implies: plan, apply, render",
        description=(
            "`plan` prints the ACLs the registry implies and how the cluster differs; `apply` "
            "creates the registry's topics and makes the cluster's ACLs match (adds the "
            "missing, removes the stale), as the operator; `render --target strimzi` prints "
            "the same rules as Strimzi KafkaUser resources."
        ),
    )
    parser.add_argument("verb", choices=("plan", "apply", "render"))
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--target", choices=("strimzi",), default="strimzi")
    parser.add_argument("--cluster", default="safeguarding", help="render: Strimzi cluster name")
    parser.add_argument(
        "--keep-stale", action="store_true", help="apply: add the missing, remove nothing"
    )
    parser.set_defaults(func=_acl)


def _run(args: argparse.Namespace) -> int:
    if args.action == "jars":
        print(f"Kafka jars: {resolve_jars()}")
        return 0
    nodes = getattr(args, "nodes", 1)
    kafka = LocalKafka(args.data_dir, nodes=nodes, secure=not getattr(args, "insecure", False))
    if args.action == "start" and args.node is not None:
        took = kafka.start_node(args.node, timeout=args.timeout)
        print(f"Kafka node {args.node} of {kafka.data_dir} ready in {took:.1f} s")
        return _status(kafka)
    if args.action == "start":
        before = {node.node_id for node in kafka.running_nodes()}
        took = kafka.start(port=args.port, timeout=args.timeout)
        if before:
            started = sorted({n.node_id for n in kafka.running_nodes()} - before)
            print(
                f"started the stopped node(s) {', '.join(map(str, started))} of "
                f"{kafka.data_dir} in {took:.1f} s (the others were running)"
            )
            return _status(kafka)
        mode = "secured (SASL_SSL, SCRAM-SHA-512, ACLs)" if kafka.secure else "INSECURE"
        print(f"Kafka ready in {took:.1f} s: {nodes} node(s), {mode}, data in {kafka.data_dir}")
        print(f"bootstrap servers: {kafka.bootstrap_servers}")
        if kafka.secure:
            print(
                f"CA certificate: {kafka.ca_file}; operator credential: "
                f"{kafka.client_dir / 'operator.json'} (mode 0600)"
            )
        return 0
    if args.action == "status":
        return _status(kafka)
    stopped = kafka.stop()
    if stopped:
        print(f"stopped {stopped} Kafka node(s) of {kafka.data_dir}")
    else:
        print("Kafka was not running")
    return 0


def _status(kafka: LocalKafka) -> int:
    """Each node's state; exit 0 when all run, 1 when some do, 3 when none does."""
    state = kafka.load_state()
    running = {node.node_id for node in kafka.running_nodes()}
    if state is None:
        print(f"Kafka is not running (data dir {kafka.data_dir})")
        return 3
    for node in state.nodes:
        where = f"127.0.0.1:{node.broker_port}"
        if node.node_id in running:
            print(f"node {node.node_id}: running at {where} (pid {node.pid}, log {node.log_file})")
        else:
            print(f"node {node.node_id}: stopped (port {node.broker_port}, log {node.log_file})")
    if not running:
        print(f"Kafka is not running (data dir {kafka.data_dir})")
        return 3
    print(f"bootstrap servers: {state.bootstrap_servers}")
    if len(running) < len(state.nodes):
        print(
            f"{len(running)} of {len(state.nodes)} nodes running: "
            "`broker kafka start --node N` starts a stopped one"
        )
        return 1
    return 0


def _credentials(args: argparse.Namespace) -> int:
    from broker.kafka import acl, operator
    from broker.kafka.credentials import CredentialError, principal_of

    config = load_config(args.config)
    if not config.kafka.secured:
        raise CredentialError(
            f"{args.config}: kafka.security_protocol is PLAINTEXT: credentials need SASL_SSL"
        )
    clients = operator.operator_clients(config)
    if args.verb == "list":
        holders = operator.credentialed(clients)
        for principal in sorted(holders | set(acl.principals(config))):
            state = "credential" if principal in holders else "NO credential"
            print(f"{principal}: {state}")
        return 0
    names = [principal_of(name) for name in args.principals]
    if args.verb == "issue":
        if args.all:
            names += acl.principals(config)
        if not names:
            raise CredentialError("name the principals to issue credentials for, or give --all")
        out = args.out or config.kafka.credentials_dir
        assert out is not None  # a secured config names it
        issued = operator.issue(clients, sorted(set(names)), out)
        for principal, path in issued:
            print(f"issued {principal}: {path} (mode 0600)")
        applied = operator.apply(clients, config, prune=False, issued=[p for p, _ in issued])
        print(f"ACLs: {len(applied.plan.missing)} added")
        return 0
    if not names:
        raise CredentialError("name the principals whose credentials to revoke")
    for principal in names:
        removed = operator.revoke(clients, principal)
        print(f"revoked {principal}: credential deleted, {removed} ACL(s) withdrawn")
    return 0


def _acl(args: argparse.Namespace) -> int:
    from broker.kafka import acl, operator

    config = load_config(args.config)
    if args.verb == "render":
        import yaml

        users = acl.strimzi_users(config, cluster=args.cluster)
        yaml.safe_dump_all(users, sys.stdout, sort_keys=False)
        return 0
    clients = operator.operator_clients(config)
    if args.verb == "apply":
        from broker.alerts.state import alerts_topic_specs
        from broker.router.service import topic_specs

        made = clients.ensure_topics(topic_specs(config) + alerts_topic_specs(config))
        if made:
            print(f"created {len(made)} topic(s): {', '.join(made)}")
        result = operator.apply(clients, config, prune=not args.keep_stale)
        removed = 0 if args.keep_stale else len(result.plan.stale)
        print(f"ACLs: {len(result.plan.missing)} added, {removed} removed")
    else:
        result = operator.plan(clients, config)
        for rule in result.plan.wanted:
            mark = "+" if rule in result.plan.missing else " "
            print(f"{mark} {rule}")
        for rule in result.plan.stale:
            print(f"- {rule}")
        print(
            f"{len(result.plan.wanted)} ACL(s) wanted: {len(result.plan.missing)} missing, "
            f"{len(result.plan.stale)} stale"
        )
    for principal in result.without_credential:
        print(f"  {principal}: no credential, so no ACLs (`broker kafka credentials issue`)")
    if args.verb == "plan" and not result.plan.in_sync:
        return 1
    return 0
