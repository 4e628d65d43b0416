"""`broker init` then the commands it prints give a secured deployment that routes the example
events; `broker doctor` says it is healthy, then names each fault introduced (issue 18).

Everything runs as a new operator would: the `broker` command in subprocesses, on a real
secured local Kafka (TLS, SCRAM-SHA-512, ACLs).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from kafka.errors import AuthorizationError
from ops_tools import FAKETIME, require

from broker.config import load_config
from broker.errors import BrokerError
from broker.kafka import acl as acls
from broker.kafka.client import KafkaClients
from broker.kafka.credentials import OPERATOR
from broker.kafka.local import LocalKafka
from broker.scaffold import REPO_ROOT

pytestmark = pytest.mark.integration

BROKER = [sys.executable, "-m", "broker.cli"]


def broker(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
    done = subprocess.run(
        [*BROKER, *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env or dict(os.environ),
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and (p.name.endswith(".key.pem") or p.name.endswith(".secret")
                            or p.parent.name == "credentials")
    }


def doctor(config: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    code, out = broker("doctor", "--config", str(config), "--quiet", *extra, env=env)
    return code, [line for line in out.splitlines() if line.startswith("PROBLEM")]


def test_init_then_the_printed_commands_route_the_examples_and_doctor_names_each_fault(
    ops_kafka: LocalKafka, tmp_path: Path
) -> None:
    directory = tmp_path / "pilot"
    code, out = broker(
        "init", str(directory), "--local-kafka", str(ops_kafka.data_dir),
        "--metrics-port", str(free_port()),
    )
    assert code == 0, out
    config = directory / "config.yaml"
    assert f"made  {config}" in out
    assert "Kafka: issued 12 credential(s)" in out, out  # 7 agencies, the alerts service,
    # the router, the registry authority, the auditor and the statistics reader
    assert f"broker alerts --config {config} &" in out
    lines = out.splitlines()
    commands = [line.strip() for line in lines[lines.index("next:") + 1 :][:3]]
    assert [c.split()[1] for c in commands] == ["doctor", "route", "publish"], commands

    # Keys with the right roles, private files 0600 in 0700 folders.
    deployment = load_config(config)
    keys = {p.name: json.loads(p.read_text()) for p in (directory / "keys").glob("*.pub.json")}
    roles = {k["agency"]: k["roles"] for k in keys.values()}
    assert roles["router.main"] == ["checkpoint", "router"]
    assert roles["registry.main"] == ["registry-admin"]
    assert all(roles[a] == ["issuer"] for a in deployment.agency_ids)
    for folder in ("private", "credentials"):
        assert stat.S_IMODE((directory / folder).stat().st_mode) == 0o700
        for path in (directory / folder).iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert (directory / "monitoring" / "alerts.yml").is_file()

    # Re-running never overwrites a key, a secret or a credential.
    before = digests(directory)
    code, again = broker("init", str(directory), "--local-kafka", str(ops_kafka.data_dir))
    assert code == 0, again
    assert "made  " not in again and f"kept  {config}" in again
    assert digests(directory) == before

    # 1. doctor: healthy.
    code, out = broker(*shlex.split(commands[0])[1:])
    assert code == 0 and "healthy: no problem found" in out, out

    # Doctor's probe topic is the operator's alone: an agency may not write or read it.
    police = KafkaClients(deployment.kafka, "police.met")
    producer = police.producer(max_block_ms=10000)
    try:
        with pytest.raises(AuthorizationError):
            producer.send("ops.clock", b"probe").get(timeout=20)
    finally:
        producer.close(timeout=5)
    with pytest.raises(BrokerError, match=r"police\.met reading ops\.clock"):
        raise police.explain_missing("ops.clock")

    # 2. the router, 3. publish the example events; then the police's feed has them.
    route = shlex.split(commands[1].rstrip("& "))[1:]
    router = subprocess.Popen(
        [*BROKER, *route], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        code, out = broker(*shlex.split(commands[2])[1:])
        assert code == 0 and "published 7 event(s)" in out, out
        received: list[dict[str, object]] = []
        deadline = time.monotonic() + 120
        while len(received) < 4 and time.monotonic() < deadline:
            code, out = broker(
                "feed", "--config", str(config), "--agency", "police.met", "--from-beginning"
            )
            assert code == 0, out
            received = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            time.sleep(1)
    finally:
        router.send_signal(signal.SIGTERM)
        output = router.communicate(timeout=60)[0]
    assert router.returncode == 0, output
    assert len(received) == 4, output
    assert all(item["verified"] for item in received)
    assert {item["issuer"] for item in received} == {"council.E09000033"}

    # Faults, one at a time: doctor names each in one line, then it is undone.
    # a. a key about to expire
    met_key = next(p for p in (directory / "keys").glob("police.met.*.pub.json"))
    original = met_key.read_text()
    soon = datetime.now(UTC) + timedelta(days=3)
    met_key.write_text(
        json.dumps({**json.loads(original), "valid_until": soon.strftime("%Y-%m-%dT%H:%M:%SZ")})
    )
    code, found = doctor(config)
    assert code == 1 and len(found) == 1, found
    assert "the issuer key of police.met expires at" in found[0], found
    met_key.write_text(original)

    # b. an agreement whose recipient is not in the registry
    stray = directory / "agreements" / "stray.v1.yaml"
    text = (directory / "agreements" / "council-police-missing.v1.yaml").read_text()
    stray.write_text(
        text.replace("recipient: police.met", "recipient: police.btp").replace(
            "id: dsa.london-councils-met.missing-children", "id: dsa.stray"
        )
    )
    code, found = doctor(config)
    assert code == 1 and len(found) == 1, found
    assert "recipient police.btp is not in the agency registry" in found[0], found
    stray.unlink()

    # c. a missing ACL (the operator deleted one by hand)
    clients = KafkaClients(deployment.kafka, OPERATOR)
    rule = acls.Acl("router.main", acls.TOPIC, acls.PREFIXED, "ingress.", acls.READ)
    assert rule in acls.registry_acls(deployment)
    with clients.admin() as admin:
        admin.delete_acls([acls.exact_filter(acls.to_kafka(rule))])
    found = _until_found(config, "missing User:router.main read topic ingress.*")
    assert len(found) == 1, found
    code, out = broker("acl", "apply", "--config", str(config))
    assert code == 0 and "1 added" in out, out

    # d. a topic missing
    with clients.admin() as admin:
        admin.delete_topics(["quarantine"])
    found = _until_found(config, "quarantine is missing")
    assert len(found) == 1, found
    code, out = broker("acl", "apply", "--config", str(config))
    assert code == 0 and "created 1 topic(s): quarantine" in out, out

    # e. this host's clock ten minutes ahead of Kafka's (libfaketime, as a real skewed clock)
    skewed = {
        **os.environ,
        "LD_PRELOAD": str(require(FAKETIME)),
        "FAKETIME": "+600s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    code, found = doctor(config, env=skewed)
    assert code == 1 and len(found) == 1, found
    skew = re.search(r"this host's clock is ([0-9.]+) s ahead of Kafka's", found[0])
    assert skew is not None and 590 < float(skew.group(1)) < 610, found

    # f. Kafka unreachable (the config pointed at a port nothing listens on)
    raw = yaml.safe_load(config.read_text())
    raw["kafka"]["bootstrap_servers"] = f"127.0.0.1:{free_port()}"
    elsewhere = directory / "elsewhere.yaml"
    elsewhere.write_text(yaml.safe_dump(raw, sort_keys=False))
    code, found = doctor(elsewhere)
    assert code == 1, found
    assert any("Kafka is unreachable at 127.0.0.1:" in line for line in found), found

    # All undone: healthy again.
    code, found = doctor(config)
    assert code == 0 and not found, found


def _until_found(config: Path, text: str, timeout: float = 30) -> list[str]:
    """Doctor's problems once one names `text` (ACL and topic deletions reach every broker
    through the metadata log, a moment after the call returns)."""
    deadline = time.monotonic() + timeout
    while True:
        _, found = doctor(config)
        if any(text in line for line in found) or time.monotonic() > deadline:
            assert any(text in line for line in found), found
            return found
        time.sleep(1)
