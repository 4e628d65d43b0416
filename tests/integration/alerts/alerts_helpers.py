"""Shared helpers of the alerts acceptance tests (issue 17).

A deployment like the router tests' (every demo agency with a random suffix, so its topics are
private to the test) plus the alerts service `alerts.main_<suffix>`: the example agreements and
the alert agreements (agreements/alerts/), rules from alerts/rules/, all with the suffixed ids.
The service's clock is injected: in process a `ManualClock`, in a child process a clock file.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from router_helpers import BASE_AGENCIES, Deployment, event, read_feed, router_thread
from service_helpers import running_service

from broker.alerts.service import AlertsService
from broker.config import load_config
from broker.kafka.local import ClusterAccess
from broker.kafka.operator import provision
from broker.scaffold import (
    ALERT_AGREEMENTS,
    ALERT_RULES,
    ALERTS_ID,
    EXAMPLE_AGREEMENTS,
    REPO_ROOT,
    write_deployment,
)

ALL_AGENCIES = {**BASE_AGENCIES, ALERTS_ID: "Safeguarding alerts service"}
_ID_RE = re.compile(r"(?<![\w.])(" + "|".join(re.escape(a) for a in ALL_AGENCIES) + r")(?![\w-])")

T0 = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
WESTMINSTER = "council.E09000033"
MET = "police.met"
GUARDIAN = "guardian.ictg"


@dataclass
class AlertsDeployment(Deployment):
    clock_file: Path = field(default=Path("clock"))

    @property
    def agency_ids(self) -> list[str]:
        return [self.id(a) for a in ALL_AGENCIES]

    def set_clock(self, at: datetime) -> None:
        """The time a service started with `--clock-file` reads."""
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(at.isoformat())
        tmp.replace(self.clock_file)


def _rewrite(source: Path, target: Path, suffix: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.yaml")):
        text = _ID_RE.sub(lambda m: f"{m.group(1)}_{suffix}", path.read_text())
        (target / path.name).write_text(text)


def make_alerts_deployment(
    directory: Path, access: ClusterAccess, *, alerts: Mapping[str, object] | None = None
) -> AlertsDeployment:
    suffix = uuid.uuid4().hex[:8]
    agreements = directory / "agreements"
    _rewrite(EXAMPLE_AGREEMENTS, agreements, suffix)
    _rewrite(ALERT_AGREEMENTS, agreements, suffix)
    rules = directory / "rules"
    _rewrite(ALERT_RULES, rules, suffix)
    config_path = write_deployment(
        directory,
        bootstrap_servers=access,
        agencies={f"{a}_{suffix}": name for a, name in ALL_AGENCIES.items()},
        agreements_dir=agreements,
        partitions=2,
        router={"group_id": f"router-{suffix}", "checkpoint_interval_s": 2.0},
        alerts={"id": f"{ALERTS_ID}_{suffix}", "rules_dir": str(rules), "tick_s": 0.2,
                "kafka_timeout_s": 5.0, **(alerts or {})},
    )
    provision(load_config(config_path))
    return AlertsDeployment(directory, config_path, suffix, directory / "clock")


# -- events ---------------------------------------------------------------------------------------


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def child_event(dep: Deployment, event_type: str, child: str, tag: str, hours: float,
                **fields: Any) -> dict[str, Any]:
    """A council event about `child` occurring `hours` after T0 (no name of any use to a rule
    is left to chance: the flags rules test are set explicitly)."""
    defaults: dict[str, Any] = {"la_child_id": child}
    if event_type.startswith(("child.", "guardian.")):
        defaults.update(trafficking_concern=False, uasc=False)
    if event_type == "child.missing.started":
        defaults.update(missing_type="M", risk_level="medium", missing_since=at(hours))
    if event_type == "child.missing.ended":
        defaults.update(missing_type="M", missing_since=at(hours - 1), missing_until=at(hours))
    evt = event(event_type, child, f"{tag}-{uuid.uuid4().hex[:6]}", **{**defaults, **fields})
    evt["occurred_at"] = at(hours)
    return evt


def police_report(dep: Deployment, child: str, tag: str, hours: float,
                  council: str = WESTMINSTER) -> dict[str, Any]:
    evt = event("police.missing_report.opened", f"MP-{tag}", f"{tag}-{uuid.uuid4().hex[:6]}",
                la_child_id=child, local_authority=dep.id(council), risk_level="high")
    evt["occurred_at"] = at(hours)
    return evt


# -- running the services ---------------------------------------------------------------


@contextlib.contextmanager
def alerts_thread(dep: Deployment, clock: Callable[[], datetime],
                  instance: str = "a0") -> Iterator[AlertsService]:
    """An alerts service running in this process until the block ends."""
    service = AlertsService(dep.config, clock=clock, instance_id=instance)
    with running_service(service, f"alerts-{instance}"):
        yield service


@contextlib.contextmanager
def running(dep: Deployment, clock: Callable[[], datetime]) -> Iterator[AlertsService]:
    with router_thread(dep), alerts_thread(dep, clock) as service:
        yield service


def wait_until(predicate: Callable[[], bool], timeout: float = 90.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def applied(service: AlertsService) -> float:
    """Feed records the service has applied to its clocks."""
    return service.metrics.input.labels("applied")._value.get()  # type: ignore[no-any-return]


def wait_applied(service: AlertsService, count: int, timeout: float = 90.0) -> None:
    wait_until(lambda: applied(service) >= count, timeout, f"{count} event(s) applied")


def alerts_in_feed(dep: Deployment, base: str) -> list[dict[str, Any]]:
    """The verified alert events in an agency's feed (EVENTS.md JSON form)."""
    out = []
    for item in read_feed(dep, base):
        assert item.event is not None, item.error
        if item.event.event_type == "alert.raised":
            out.append(item.event.to_json())
    return out


def rules_of(alerts: list[dict[str, Any]], child: str | None = None) -> list[tuple[str, str]]:
    return sorted((a["fields"]["rule"].split("@")[0], a["fields"]["stage"]) for a in alerts
                  if child is None or a["fields"]["la_child_id"] == child)


def wait_for_alerts(dep: Deployment, base: str, count: int, child: str | None = None,
                    timeout: float = 90.0) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal found
        found = [a for a in alerts_in_feed(dep, base)
                 if child is None or a["fields"]["la_child_id"] == child]
        return len(found) >= count

    wait_until(enough, timeout, f"{count} alert(s) in {base}'s feed")
    return found


@dataclass
class AlertsProcess:
    """`python -m broker.cli alerts` as a child process, its clock read from the clock file."""

    dep: AlertsDeployment
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AlertsProcess:
        args = [sys.executable, "-m", "broker.cli", "alerts", "--config",
                str(self.dep.config_path), "--clock-file", str(self.dep.clock_file)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=REPO_ROOT, env=dict(os.environ))
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
