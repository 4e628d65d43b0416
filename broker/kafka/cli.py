"""`broker kafka start|status|stop`: the local Kafka cluster for development, tests and demos."""

from __future__ import annotations

import argparse
from pathlib import Path

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
                "--port", type=int, default=None, help="broker port of node 1 (default: a free one)"
            )
            action.add_argument(
                "--timeout",
                type=float,
                default=DEFAULT_START_TIMEOUT,
                help="seconds to wait until ready",
            )
        action.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.action == "jars":
        print(f"Kafka jars: {resolve_jars()}")
        return 0
    nodes = getattr(args, "nodes", 1)
    kafka = LocalKafka(args.data_dir, nodes=nodes)
    if args.action == "start":
        took = kafka.start(port=args.port, timeout=args.timeout)
        print(f"Kafka ready in {took:.1f} s: {nodes} node(s), data in {kafka.data_dir}")
        print(f"bootstrap servers: {kafka.bootstrap_servers}")
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
    state = kafka.load_state()
    running = {node.node_id for node in kafka.running_nodes()}
    if state is None or not running:
        print(f"Kafka is not running (data dir {kafka.data_dir})")
        return 3
    for node in state.nodes:
        where = f"127.0.0.1:{node.broker_port}"
        print(
            f"node {node.node_id}: {'running' if node.node_id in running else 'stopped'} "
            f"at {where} (pid {node.pid}, log {node.log_file})"
        )
    print(f"bootstrap servers: {state.bootstrap_servers}")
    return 0
