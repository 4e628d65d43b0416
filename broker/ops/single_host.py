"""`broker deploy render --target systemd`: a pilot on one host, as systemd units.

Why systemd and not a compose file (docs/operations.md, "Single host"): the broker runs Kafka
from Maven Central jars and needs no container engine, which council and police hosts often do
not allow; systemd is on every such host, restarts what fails, orders start-up after Kafka, logs
to the journal, and confines each process (its own user, read-only system, no new privileges)
without a daemon of its own. `systemd-analyze verify` checks the units offline.

Units (one file each): `safeguarding-kafka.service` (the local secured Kafka, `broker kafka
start|stop` on a data directory), `safeguarding-router@.service` (a template: `@1`, `@2` are
instances `router-1`, `router-2`; instance ids must stay stable), one
`safeguarding-intake-<agency>.service` per council and police force (the HTTP intake), one
`safeguarding-alerts-<name>.service` per `alerts.*` agency (issue 17), and
`safeguarding.target` grouping them.
"""

from __future__ import annotations

from pathlib import Path

from broker.config import BrokerConfig

_HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
UMask=0077
"""


def _unit(
    description: str,
    exec_start: str,
    *,
    user: str,
    workdir: Path,
    writable: list[Path],
    after: str = "safeguarding-kafka.service",
    extra: str = "",
    stop_timeout_s: int = 60,
) -> str:
    return (
        "# Rendered by `broker deploy render --target systemd`: render again rather than edit.\n"
        "[Unit]\n"
        f"Description={description}\n"
        f"After=network-online.target {after}\n"
        f"Wants=network-online.target {after}\n"
        "PartOf=safeguarding.target\n\n"
        "[Service]\n"
        f"User={user}\n"
        f"Group={user}\n"
        f"WorkingDirectory={workdir}\n"
        f"ExecStart={exec_start}\n"
        f"{extra}"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        # SIGTERM: the router finishes or abandons its transaction within 45 s.
        f"TimeoutStopSec={stop_timeout_s}\n"
        f"ReadWritePaths={' '.join(str(p) for p in writable)}\n"
        f"{_HARDENING}\n"
        "[Install]\n"
        "WantedBy=safeguarding.target\n"
    )


def units(
    config: BrokerConfig,
    config_path: Path,
    *,
    user: str = "broker",
    broker: str = "/opt/safeguarding-broker/.venv/bin/broker",
    kafka_data: Path = Path("/var/lib/safeguarding/kafka"),
) -> dict[str, str]:
    """Unit file name -> text."""
    home = config_path.parent
    conf = str(config_path)
    files: dict[str, str] = {}
    files["safeguarding-kafka.service"] = _unit(
        "Safeguarding broker: local secured Kafka (KRaft, from Maven Central jars)",
        f"{broker} kafka start --data-dir {kafka_data} --port 9092",
        user=user,
        workdir=kafka_data.parent,
        writable=[kafka_data.parent],
        after="",
        # `kafka start` returns once the node answers; the JVM stays in this unit's cgroup.
        extra=(
            "Type=oneshot\nRemainAfterExit=yes\nTimeoutStartSec=180\n"
            f"ExecStop={broker} kafka stop --data-dir {kafka_data}\n"
            f"Environment=BROKER_CACHE_DIR={kafka_data.parent}/cache\n"
        ),
    )
    files["safeguarding-router@.service"] = _unit(
        "Safeguarding broker: router instance router-%i",
        f"{broker} route --config {conf} --instance router-%i",
        user=user,
        workdir=home,
        writable=[home],
        # One pseudonym secret for every instance, from a file only this user reads.
        extra="",
    )
    for agency in config.agencies:
        if agency.kind in ("council", "police"):
            files[f"safeguarding-intake-{agency.id}.service"] = _unit(
                f"Safeguarding broker: HTTP intake of {agency.id}",
                f"{broker} connect {agency.kind} serve --config {conf} --agency {agency.id}",
                user=user,
                workdir=home,
                writable=[home],
            )
        if agency.kind == "alerts":
            files[f"safeguarding-alerts-{agency.id.split('.', 1)[1]}.service"] = _unit(
                f"Safeguarding broker: alerts service {agency.id} (issue 17)",
                f"{broker} alerts --config {conf} --agency {agency.id}",
                user=user,
                workdir=home,
                writable=[home],
            )
    files["safeguarding.target"] = (
        "# Rendered by `broker deploy render --target systemd`.\n"
        "[Unit]\n"
        "Description=Safeguarding event broker (Kafka, routers, intakes)\n"
        "Wants=safeguarding-kafka.service safeguarding-router@1.service "
        "safeguarding-router@2.service\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    return files


def write_units(
    config: BrokerConfig, config_path: Path, out: Path, *, user: str, broker: str
) -> list[Path]:
    written = []
    for name, text in units(config, config_path, user=user, broker=broker).items():
        path = out / name
        path.write_text(text)
        written.append(path)
    readme = out / "README.md"
    readme.write_text(
        "# Single host (systemd)\n\n"
        "Rendered by `broker deploy render --target systemd`; why systemd, and the steps, are\n"
        "in docs/operations.md, \"Single host\".\n\n"
        "```sh\n"
        f"sudo useradd --system --home {config_path.parent} {user}\n"
        f"sudo cp *.service *.target /etc/systemd/system/ && sudo systemctl daemon-reload\n"
        "sudo systemctl enable --now safeguarding.target\n"
        "sudo systemctl enable --now "
        + " ".join(
            name.replace("@.service", "@1.service")
            for name in sorted(p.name for p in written)
            if name.startswith("safeguarding-intake") or name.startswith("safeguarding-alerts")
        )
        + "\n```\n"
    )
    written.append(readme)
    return written
