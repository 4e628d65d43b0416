"""A real Prometheus (Debian's, `make tools`) on 127.0.0.1 scrapes a running router and
evaluates deploy/monitoring/alerts.yml: BrokerRouterStuck fires against a stuck router, and
BrokerRouterDown fires once the router is stopped (issue 18).

Stuck the way production gets stuck: a backlog is waiting, the router is routing it, and
every Kafka node is frozen (SIGSTOP: connections stay open and nothing answers, as a dead
coordinator looks to a client), so nothing commits. The rules are the committed ones with the
same expressions; only their `for:` durations are cut to 2 s, and the router's
`stuck_after_s` to 3 s, so the test takes seconds rather than minutes.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_tools import PROMETHEUS, require

from broker.config import load_config
from broker.kafka.local import LocalKafka
from broker.kafka.operator import provision
from broker.publish import Publisher
from broker.scaffold import REPO_ROOT, write_deployment

pytestmark = pytest.mark.integration

RULES = REPO_ROOT / "deploy" / "monitoring" / "alerts.yml"
WESTMINSTER = "council.E09000033"
BACKLOG = 1500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def metric(port: int, name: str) -> float | None:
    try:
        text = get(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        return None
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else None


def backlog(count: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Westminster's example missing-child event, `count` times with new ids and subjects."""
    example = next(
        json.loads(line)
        for line in (REPO_ROOT / "examples" / "events" / f"{WESTMINSTER}.jsonl").open()
        if '"child.missing.started"' in line
    )
    for n in range(count):
        subject = f"WCC-LOAD-{n:05d}"
        fields = {**example["fields"], "la_child_id": subject}
        event = {**example, "event_id": str(uuid.uuid4()), "subject": subject, "fields": fields}
        yield f"event {n}", event


class Prometheus:
    def __init__(self, directory: Path, router_port: int) -> None:
        self.port = free_port()
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "2s"
        (directory / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "900ms"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "broker-router",
                 "static_configs": [{"targets": [f"127.0.0.1:{router_port}"]}]}
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = directory / "prometheus.log"
        self.process = subprocess.Popen(
            [
                str(require(PROMETHEUS)),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                get(f"http://127.0.0.1:{self.port}/-/ready")
                return
            except (OSError, urllib.error.HTTPError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"Prometheus did not start:\n{self.log.read_text()}"
                    ) from None
                time.sleep(0.5)

    def alerts(self) -> dict[str, str]:
        """Alert name -> state (pending or firing)."""
        data = get(f"http://127.0.0.1:{self.port}/api/v1/alerts")["data"]["alerts"]
        return {a["labels"]["alertname"]: a["state"] for a in data}

    def wait_firing(self, name: str, timeout: float) -> float:
        began = time.monotonic()
        seen: dict[str, str] = {}
        while time.monotonic() - began < timeout:
            seen = self.alerts()
            if seen.get(name) == "firing":
                return time.monotonic() - began
            time.sleep(0.5)
        raise AssertionError(f"{name} not firing after {timeout:.0f} s; alerts: {seen}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_a_real_prometheus_fires_stuck_then_router_down(
    ops_kafka: LocalKafka, tmp_path: Path
) -> None:
    router_port = free_port()
    path = write_deployment(
        tmp_path / "deployment",
        bootstrap_servers=ops_kafka.access(),
        router={
            "group_id": f"router-{uuid.uuid4().hex[:6]}",
            "metrics_port": router_port,
            "stuck_after_s": 3.0,
            "batch_max_records": 50,
        },
    )
    config = load_config(path)
    provision(config)
    publisher = Publisher(config, WESTMINSTER)
    try:
        report = publisher.publish_all(backlog(BACKLOG))
    finally:
        publisher.close()
    assert report.total_published == BACKLOG, report.rejected[:3]

    prometheus = Prometheus(tmp_path, router_port)
    router = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "route", "--config", str(path)],
        cwd=REPO_ROOT,
        stdout=(tmp_path / "router.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    nodes = [node.node_id for node in ops_kafka.running_nodes()]
    frozen = False
    try:
        # The router is at work on the backlog: freeze every Kafka node.
        deadline = time.monotonic() + 120
        while metric(router_port, "broker_work_pending") != 1.0:
            assert router.poll() is None, (tmp_path / "router.log").read_text()
            assert time.monotonic() < deadline, "the router never had work pending"
            time.sleep(0.1)
        for node in nodes:
            ops_kafka.kill_node(node, signal.SIGSTOP)
        frozen = True
        assert prometheus.alerts().get("BrokerRouterStuck") is None
        stuck_after = prometheus.wait_firing("BrokerRouterStuck", timeout=60)
        assert metric(router_port, "broker_stuck") == 1.0
        assert "BrokerRouterDown" not in prometheus.alerts()  # it answers: stuck, not down
    finally:
        if frozen:
            for node in nodes:
                ops_kafka.kill_node(node, signal.SIGCONT)
    try:
        router.send_signal(signal.SIGTERM)
        router.wait(timeout=90)
        down_after = prometheus.wait_firing("BrokerRouterDown", timeout=60)
    finally:
        if router.poll() is None:
            router.kill()
            router.wait()
        prometheus.stop()
    print(
        f"\n[Prometheus: BrokerRouterStuck firing {stuck_after:.1f} s after Kafka froze; "
        f"BrokerRouterDown firing {down_after:.1f} s after the router stopped]"
    )
