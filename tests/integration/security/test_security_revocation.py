"""Acceptance (issue 12): revoking a credential stops that principal at once, clearly, and only it.

`broker.kafka.operator.revoke` deletes the principal's SCRAM credential and every ACL it
holds. A new connection as that principal then fails authentication: the command says so in
one line (who, and how to get a new credential) within a bounded time, with no traceback and
no hang. A connection opened before the revocation is refused by the ACLs. The router goes on
routing every other agency's events, and `apply` does not give the ACLs back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from router_helpers import (
    LAMBETH,
    MET,
    WESTMINSTER,
    decisions,
    event,
    make_deployment,
    publish,
    read_feed,
    router_thread,
    wait_for_decisions,
)

from broker.kafka import operator
from broker.kafka.acl import any_filter
from broker.kafka.client import KafkaDenied
from broker.kafka.credentials import principal_of
from broker.kafka.local import ClusterAccess
from broker.publish import Publisher
from broker.scaffold import REPO_ROOT

pytestmark = pytest.mark.integration

# How long a command may take to say that its credential was refused: the client's check
# gives up after 8 s (KafkaClients.check), plus the start of a Python process.
REFUSAL_BOUND_S = 30.0


def _publish_cli(config: Path, agency: str, events: Path) -> tuple[int, str, float]:
    args = [sys.executable, "-m", "broker.cli", "publish", "--config", str(config)]
    args += ["--agency", agency, str(events)]
    began = time.monotonic()
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ),
        timeout=REFUSAL_BOUND_S * 2,
    )
    return done.returncode, done.stderr, time.monotonic() - began


def test_a_revoked_agency_is_refused_in_one_line_and_the_others_are_still_routed(
    tmp_path: Path, kafka_access: ClusterAccess
) -> None:
    dep = make_deployment(tmp_path / "deployment", kafka_access)
    config = dep.config
    lambeth = dep.id(LAMBETH)
    principal = principal_of(lambeth)
    clients = operator.operator_clients(config)
    missing = {"missing_type": "M", "la_child_id": "LA-R1"}
    events = tmp_path / "lambeth.jsonl"
    events.write_text(json.dumps(event("child.missing.started", "child-r1", "r-l1", **missing)))

    with router_thread(dep):
        # Before: Lambeth publishes, and its event is routed.
        assert _publish_cli(dep.config_path, lambeth, events)[0] == 0
        wait_for_decisions(dep, 1)
        already_open = Publisher(config, lambeth)  # a connector that keeps running

        withdrawn = operator.revoke(clients, principal)
        # Its twelve rules: ingress write+describe; feed, checkpoints and the two registry
        # topics read+describe; its two group patterns.
        assert withdrawn == 12
        with clients.admin() as admin:
            bindings, _ = admin.describe_acls(any_filter())
        assert not [b for b in bindings if str(b.principal) == f"User:{principal}"]

        # A new connection: one line naming the principal and the fix, in bounded time.
        code, stderr, took = _publish_cli(dep.config_path, lambeth, events)
        assert code != 0
        assert took < REFUSAL_BOUND_S, took
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        assert "Traceback" not in stderr
        assert principal in lines[0] and "refused the credential" in lines[0], lines[0]
        assert "credentials issue" in lines[0], lines[0]

        # The connection opened before: refused by the (withdrawn) ACLs, in one line naming
        # the principal, the topic and the fix; nothing published.
        with pytest.raises(KafkaDenied) as refused:
            already_open.publish_all(
                [("event 0", event("child.missing.ended", "child-r1", "r-l2", **missing))]
            )
        message = str(refused.value)
        assert principal in message and f"ingress.{dep.id(LAMBETH)}" in message, message
        assert "broker acl apply" in message, message
        already_open.close()

        # Everyone else: Westminster's event still reaches the police.
        before = len(decisions(dep))
        publish(dep, WESTMINSTER, [event("child.missing.started", "child-r2", "r-w1", **missing)])
        wait_for_decisions(dep, before + 1)
        assert "evt-r-w1" in {
            item.event.header.event_id for item in read_feed(dep, MET) if item.event
        }

    # `apply` gives a principal without a credential nothing back.
    result = operator.apply(clients, config, prune=False)
    assert principal in result.without_credential
    assert not [rule for rule in result.plan.missing if rule.principal == principal]
    with clients.admin() as admin:
        bindings, _ = admin.describe_acls(any_filter())
    assert not [b for b in bindings if str(b.principal) == f"User:{principal}"]
