"""`broker kafka start|status|stop` and its error paths, driven through the real command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from broker.kafka.local import LocalKafka, resolve_jars

pytestmark = pytest.mark.integration


def _broker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def _java_processes_for(data_dir: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "kafka.Kafka"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(data_dir) in line]


def test_start_status_stop_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "kafka"
    started = _broker("kafka", "start", "--data-dir", str(data))
    assert started.returncode == 0, started.stderr
    assert "Kafka ready in" in started.stdout
    assert "secured (SASL_SSL, SCRAM-SHA-512, ACLs)" in started.stdout
    operator_file = data / "client" / "operator.json"
    assert operator_file.stat().st_mode & 0o777 == 0o600
    assert "bootstrap servers: 127.0.0.1:" in started.stdout
    try:
        status = _broker("kafka", "status", "--data-dir", str(data))
        assert status.returncode == 0
        assert "node 1: running" in status.stdout
        assert _java_processes_for(data)
    finally:
        stopped = _broker("kafka", "stop", "--data-dir", str(data))
    assert stopped.returncode == 0
    assert "stopped 1 Kafka node(s)" in stopped.stdout
    assert _java_processes_for(data) == []
    after = _broker("kafka", "status", "--data-dir", str(data))
    assert after.returncode == 3
    assert "not running" in after.stdout


def test_port_already_taken_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _broker("kafka", "start", "--data-dir", str(tmp_path / "k"), "--port", str(port))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0]
    assert _java_processes_for(tmp_path) == []


def test_java_missing_from_path_is_one_clear_line(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # an empty directory: no java, no mvn
    result = _broker("kafka", "start", "--data-dir", str(tmp_path / "k"), env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Java was not found on PATH" in lines[0]


def test_cached_jars_are_reused_without_maven(tmp_path: Path) -> None:
    first = resolve_jars()
    saved = os.environ["PATH"]
    os.environ["PATH"] = str(tmp_path)  # no mvn: only the cache can answer
    try:
        assert resolve_jars() == first
    finally:
        os.environ["PATH"] = saved


def test_broker_that_does_not_come_up_names_its_log(tmp_path: Path) -> None:
    data = tmp_path / "kafka"
    kafka = LocalKafka(data)
    kafka.start()
    kafka.stop()
    # Break the formatted storage so the broker refuses to start.
    (data / "node-1" / "data" / "meta.properties").unlink()
    result = _broker("kafka", "start", "--data-dir", str(data))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "exited during start-up" in lines[0] or "did not become ready" in lines[0]
    assert str(data / "node-1" / "logs" / "server.log") in lines[0]
    assert _java_processes_for(data) == []


def test_start_timeout_stops_what_it_started(tmp_path: Path) -> None:
    data = tmp_path / "kafka"
    result = _broker("kafka", "start", "--data-dir", str(data), "--timeout", "0.2")
    assert result.returncode != 0
    assert "did not become ready within" in result.stderr
    assert "server.log" in result.stderr
    assert _java_processes_for(data) == []


@pytest.mark.slow
def test_three_nodes_survive_one_node_down(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "kafka3", nodes=3)
    kafka.start()
    try:
        operator = kafka.access().operator_options()  # secured: TLS, SCRAM, ACLs
        assert operator["security_protocol"] == "SASL_SSL"
        admin = KafkaAdminClient(**operator)
        admin.create_topics([NewTopic("replicated", 1, 3)])
        admin.wait_for_topics(["replicated"])
        (described,) = admin.describe_topics(["replicated"])
        assert len(described["partitions"][0]["replica_nodes"]) == 3
        admin.close()

        producer = KafkaProducer(**operator, acks="all", retries=10)
        for i in range(50):
            producer.send("replicated", f"before-{i}".encode())
        producer.flush()

        kafka.stop_node(2)
        assert {n.node_id for n in kafka.running_nodes()} == {1, 3}
        time.sleep(1)
        for i in range(50):
            producer.send("replicated", f"after-{i}".encode()).get(timeout=60)
        producer.close()

        consumer = KafkaConsumer(
            "replicated",
            **{
                **operator,
                "bootstrap_servers": [f"127.0.0.1:{n.broker_port}" for n in kafka.running_nodes()],
            },
            auto_offset_reset="earliest",
            consumer_timeout_ms=10000,
        )
        values = [record.value.decode() for record in consumer]
        consumer.close()
        assert values == [f"before-{i}" for i in range(50)] + [f"after-{i}" for i in range(50)]

        # Node-level control: status names each node; one stopped node starts again alone.
        data = str(tmp_path / "kafka3")
        status = _broker("kafka", "status", "--data-dir", data)
        assert status.returncode == 1, status.stdout
        assert "node 2: stopped" in status.stdout and "node 1: running" in status.stdout
        again = _broker("kafka", "start", "--node", "2", "--data-dir", data)
        assert again.returncode == 0, again.stderr
        assert "node 2: running" in again.stdout
        assert {n.node_id for n in kafka.running_nodes()} == {1, 2, 3}
        # A crashed node: `start` on the data directory starts only the stopped one.
        kafka.kill_node(3)
        assert {n.node_id for n in kafka.running_nodes()} == {1, 2}
        restarted = _broker("kafka", "start", "--nodes", "3", "--data-dir", data)
        assert restarted.returncode == 0, restarted.stderr
        assert "started the stopped node(s) 3" in restarted.stdout
        assert {n.node_id for n in kafka.running_nodes()} == {1, 2, 3}
        refused = _broker("kafka", "start", "--nodes", "3", "--data-dir", data)
        assert refused.returncode != 0 and "already running" in refused.stderr
    finally:
        kafka.stop()
    assert _java_processes_for(tmp_path) == []
