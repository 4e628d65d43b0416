"""The local Kafka runtime: a real Apache Kafka (KRaft) from Maven Central jars on 127.0.0.1.

No Docker engine and no download site is available where this project is built, so the broker
runs straight from the jars named in `deploy/kafka/pom.xml`, resolved once by Maven into a cache
outside the repository. One node is a combined broker+controller formatted `--standalone`;
`nodes=3` gives three combined nodes with a static controller quorum, replication factor 3 and
`min.insync.replicas=2`, for fault tests.

Secured by default: clients connect over TLS and authenticate with SCRAM-SHA-512; brokers and
controllers talk to each other over mutual TLS on listeners clients cannot use; the
StandardAuthorizer refuses whatever no ACL allows. Starting a new cluster makes a local CA
(`<data_dir>/tls`) and bootstraps the operator's credential into the storage format; what a
client needs (the CA certificate and `operator.json`) is in `<data_dir>/client`. `secure=False`
(`broker kafka start --insecure`) gives one plaintext listener for experiments only.

Everything about a running cluster (ports, pids, config and log paths) lives in
`<data_dir>/cluster.json`, so `status` and `stop` act only on the processes `start` launched.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template

from broker.errors import BrokerError
from broker.kafka.credentials import (
    MECHANISM,
    OPERATOR,
    Credential,
    new_password,
    sasl_ssl_options,
    write_credential,
)
from broker.kafka.tls import make_local_ca

log = logging.getLogger(__name__)

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
STATE_FILE = "cluster.json"
DEFAULT_START_TIMEOUT = 60.0
JVM_OPTS = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


class KafkaRuntimeError(BrokerError):
    """The local Kafka could not be set up, started, or stopped."""


def cache_dir() -> Path:
    """Where resolved jars live: `$BROKER_CACHE_DIR`, else `~/.cache/safeguarding-broker`."""
    configured = os.environ.get("BROKER_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "safeguarding-broker"


def default_data_dir() -> Path:
    """Where a cluster's data and logs go unless told otherwise: `./var/kafka`."""
    return Path(os.environ.get("BROKER_KAFKA_DATA_DIR", "var/kafka")).resolve()


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise KafkaRuntimeError(
            "Java was not found on PATH: install Java 17 or later "
            "(for example `apt-get install openjdk-17-jre-headless`) and try again"
        )
    return java


def resolve_jars(*, quiet: bool = True) -> Path:
    """Resolve the Kafka jars once into the cache and return the directory holding them.

    The cache key is a hash of the POM, so changing the Kafka version resolves afresh while an
    unchanged POM reuses the jars without running Maven at all.
    """
    pom = DEPLOY_DIR / "pom.xml"
    if not pom.is_file():
        raise KafkaRuntimeError(f"the Kafka runtime POM is missing at {pom}: reinstall the project")
    key = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    target = cache_dir() / "kafka-jars" / key
    if (target / ".complete").is_file():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaRuntimeError(
            "Maven (`mvn`) was not found on PATH and the Kafka jars are not cached yet: "
            "install Maven (for example `apt-get install maven`) and try again"
        )
    staging = target.with_name(f"{key}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    print(f"Resolving the Kafka jars from Maven Central into {target} (once) ...", flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise KafkaRuntimeError(
            "Maven could not resolve the Kafka jars (check access to Maven Central): "
            + " | ".join(tail)
        )
    (staging / ".complete").write_text(pom.read_text())
    if target.exists():  # another process won the race; keep its copy
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(target)
    return target


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free on 127.0.0.1 right now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _kafka_uuid() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own `Uuid.randomUuid`, never one starting with `-`: the storage tool's argument
    parser would read it as an option (1 id in 64 otherwise).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class ClusterAccess:
    """How a deployment reaches a cluster: its address and, when secured, the CA certificate
    and the directory holding the operator's credential (where others' are issued too)."""

    bootstrap_servers: str
    ca_file: Path | None = None
    credentials_dir: Path | None = None

    @property
    def secured(self) -> bool:
        return self.ca_file is not None

    def operator_options(self) -> dict[str, object]:
        """kafka-python options that connect as the operator (none for an insecure cluster)."""
        options: dict[str, object] = {"bootstrap_servers": self.bootstrap_servers.split(",")}
        if self.ca_file is not None and self.credentials_dir is not None:
            options.update(sasl_ssl_options(self.credentials_dir, OPERATOR, self.ca_file))
        return options


@dataclass
class NodeState:
    node_id: int
    broker_port: int
    controller_port: int
    dir: str
    pid: int | None = None
    internal_port: int | None = None  # the inter-broker listener (secured clusters only)

    @property
    def config_path(self) -> Path:
        return Path(self.dir) / "server.properties"

    @property
    def log_file(self) -> Path:
        return Path(self.dir) / "logs" / "server.log"

    @property
    def stdout_file(self) -> Path:
        return Path(self.dir) / "logs" / "stdout.log"


@dataclass
class ClusterState:
    cluster_id: str
    nodes: list[NodeState] = field(default_factory=list)
    secure: bool = False
    client_dir: str | None = None  # CA certificate and the operator's credential (secured only)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{node.broker_port}" for node in self.nodes)

    def ports(self) -> list[int]:
        return [
            port
            for node in self.nodes
            for port in (node.broker_port, node.internal_port, node.controller_port)
            if port is not None
        ]


def _process_is_ours(pid: int | None, node: NodeState) -> bool:
    """True when `pid` is alive and is the Kafka we launched for `node` (not a reused pid)."""
    if pid is None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(node.config_path).encode() in cmdline


def _port_answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class LocalKafka:
    """Start, inspect and stop a local Kafka cluster of one or three combined nodes."""

    def __init__(
        self, data_dir: Path | None = None, *, nodes: int = 1, secure: bool = True
    ) -> None:
        if nodes not in (1, 3):
            raise KafkaRuntimeError(f"--nodes must be 1 or 3, not {nodes}")
        self.data_dir = (data_dir or default_data_dir()).resolve()
        self.nodes = nodes
        self.secure = secure

    # -- state ---------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def load_state(self) -> ClusterState | None:
        if not self.state_path.is_file():
            return None
        raw = json.loads(self.state_path.read_text())
        return ClusterState(
            cluster_id=raw["cluster_id"],
            nodes=[NodeState(**node) for node in raw["nodes"]],
            secure=raw.get("secure", False),
            client_dir=raw.get("client_dir"),
        )

    def _save_state(self, state: ClusterState) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.replace(self.state_path)

    @property
    def bootstrap_servers(self) -> str:
        state = self.load_state()
        if state is None:
            raise KafkaRuntimeError(f"no local Kafka has been started in {self.data_dir}")
        return state.bootstrap_servers

    @property
    def client_dir(self) -> Path:
        """The CA certificate (`ca.pem`) and the operator's credential (`operator.json`)."""
        state = self.load_state()
        if state is None or state.client_dir is None:
            raise KafkaRuntimeError(
                f"no secured local Kafka has been started in {self.data_dir}: "
                "run `broker kafka start` (without --insecure)"
            )
        return Path(state.client_dir)

    @property
    def ca_file(self) -> Path:
        return self.client_dir / "ca.pem"

    def access(self) -> ClusterAccess:
        """The address, CA certificate and operator credential directory of this cluster."""
        state = self.load_state()
        if state is None:
            raise KafkaRuntimeError(f"no local Kafka has been started in {self.data_dir}")
        if not state.secure or state.client_dir is None:
            return ClusterAccess(state.bootstrap_servers)
        client = Path(state.client_dir)
        return ClusterAccess(state.bootstrap_servers, client / "ca.pem", client)

    def running_nodes(self) -> list[NodeState]:
        state = self.load_state()
        if state is None:
            return []
        return [node for node in state.nodes if _process_is_ours(node.pid, node)]

    # -- start ---------------------------------------------------------------------------------

    def start(self, *, port: int | None = None, timeout: float = DEFAULT_START_TIMEOUT) -> float:
        """Start the cluster and wait until every broker answers; return the seconds it took.

        When some nodes of a multi-node data directory run and others are stopped (a node
        fault), this starts only the stopped ones, with the data and configs they have, and
        waits until every node is back; it refuses only when every node already runs.
        """
        java = require_java()
        running = self.running_nodes()
        state = self.load_state()
        if running and state is not None:
            if len(running) == len(state.nodes):
                raise KafkaRuntimeError(
                    f"a local Kafka is already running from {self.data_dir} "
                    f"(bootstrap {self.bootstrap_servers}): run `broker kafka stop` first"
                )
            if len(state.nodes) != self.nodes or state.secure != self.secure:
                raise KafkaRuntimeError(
                    f"{self.data_dir} holds a {len(state.nodes)}-node "
                    f"{'secured' if state.secure else 'insecure'} cluster of which some nodes "
                    "run: start its stopped nodes with the same --nodes (and --insecure) "
                    "options, or `broker kafka stop` it first"
                )
            up = {node.node_id for node in running}
            return self._start_nodes(
                java, state, [n for n in state.nodes if n.node_id not in up], timeout
            )
        jars = resolve_jars()
        began = time.monotonic()
        if state is None or len(state.nodes) != self.nodes or state.secure != self.secure:
            state = self._prepare(java, jars, port)
        else:
            self._check_ports_free(state)
        processes = {node.node_id: self._launch(java, jars, node) for node in state.nodes}
        for node in state.nodes:
            node.pid = processes[node.node_id].pid
        self._save_state(state)
        try:
            self._wait_ready(state, processes, timeout)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - began

    def start_node(self, node_id: int, *, timeout: float = DEFAULT_START_TIMEOUT) -> float:
        """Start one stopped node of an existing cluster (after `stop_node`, a crash or a
        SIGKILL) and wait until the cluster lists it again; return the seconds it took."""
        java = require_java()
        state = self.load_state()
        if state is None:
            raise KafkaRuntimeError(f"no local Kafka has been started in {self.data_dir}")
        node = next((n for n in state.nodes if n.node_id == node_id), None)
        if node is None:
            raise KafkaRuntimeError(
                f"the cluster in {self.data_dir} has nodes "
                f"{', '.join(str(n.node_id) for n in state.nodes)}, no node {node_id}"
            )
        if _process_is_ours(node.pid, node):
            raise KafkaRuntimeError(f"Kafka node {node_id} already runs (pid {node.pid})")
        return self._start_nodes(java, state, [node], timeout)

    def _start_nodes(
        self, java: str, state: ClusterState, nodes: list[NodeState], timeout: float
    ) -> float:
        """Launch `nodes` of an existing cluster and wait until every node is a broker again.

        A failure stops only the nodes launched here: the ones already running carry on.
        """
        jars = resolve_jars()
        began = time.monotonic()
        for node in nodes:
            self._check_ports_free(ClusterState(state.cluster_id, [node]))
        processes = {node.node_id: self._launch(java, jars, node) for node in nodes}
        for node in nodes:
            node.pid = processes[node.node_id].pid
        self._save_state(state)
        try:
            self._wait_ready(state, processes, timeout)
        except BaseException:
            _terminate(nodes, 30.0)
            for node in nodes:
                node.pid = None
            self._save_state(state)
            raise
        return time.monotonic() - began

    def _prepare(self, java: str, jars: Path, port: int | None) -> ClusterState:
        """Render configs for a new cluster and format its storage."""
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        per_node = 3 if self.secure else 2
        if port is not None:
            ports = [port, *free_ports(per_node * self.nodes - 1)]
        else:
            ports = free_ports(per_node * self.nodes)
        state = ClusterState(cluster_id=_kafka_uuid(), secure=self.secure)
        for index in range(self.nodes):
            node_dir = self.data_dir / f"node-{index + 1}"
            (node_dir / "logs").mkdir(parents=True)
            mine = ports[per_node * index : per_node * (index + 1)]
            state.nodes.append(
                NodeState(
                    node_id=index + 1,
                    broker_port=mine[0],
                    controller_port=mine[1],
                    internal_port=mine[2] if self.secure else None,
                    dir=str(node_dir),
                )
            )
        self._check_ports_free(state)
        extra: dict[str, object] = {}
        scram: list[str] = []
        if self.secure:
            tls = make_local_ca(self.data_dir / "tls")
            client = self.data_dir / "client"
            client.mkdir(mode=0o700)
            shutil.copyfile(tls.ca_cert, client / "ca.pem")
            operator = Credential(OPERATOR, new_password())
            write_credential(client, operator)
            state.client_dir = str(client)
            extra = {
                "keystore": tls.broker_keystore,
                "truststore": tls.ca_cert,
                "operator": OPERATOR,
            }
            scram = ["--add-scram", f"{MECHANISM}=[name={OPERATOR},password={operator.password}]"]
            template_name = "server-secure.properties.template"
        else:
            template_name = "server.properties.template"
        template = Template((DEPLOY_DIR / template_name).read_text())
        if self.nodes == 1:
            controller = state.nodes[0].controller_port
            quorum = f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}"
        else:
            voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in state.nodes)
            quorum = f"controller.quorum.voters={voters}"
        for node in state.nodes:
            node.config_path.write_text(
                template.substitute(
                    node_id=node.node_id,
                    broker_port=node.broker_port,
                    controller_port=node.controller_port,
                    quorum=quorum,
                    log_dir=Path(node.dir) / "data",
                    replication_factor=self.nodes,
                    min_isr=min(2, self.nodes),
                    internal_port=node.internal_port,
                    **extra,
                )
            )
        formats = [
            subprocess.Popen(
                [
                    java,
                    *JVM_OPTS,
                    "-cp",
                    f"{jars}/*",
                    "kafka.tools.StorageTool",
                    "format",
                    *(["--standalone"] if self.nodes == 1 else []),
                    "-t",
                    state.cluster_id,
                    "-c",
                    str(node.config_path),
                    *scram,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for node in state.nodes
        ]
        for node, proc in zip(state.nodes, formats, strict=True):
            output, _ = proc.communicate()
            if proc.returncode != 0:
                (Path(node.dir) / "logs" / "format.log").write_text(output)
                last = next((ln for ln in reversed(output.splitlines()) if ln.strip()), "")
                raise KafkaRuntimeError(
                    f"formatting the storage of Kafka node {node.node_id} failed "
                    f"({last.strip()[:200] or f'exit status {proc.returncode}'}): "
                    f"see {Path(node.dir) / 'logs' / 'format.log'}"
                )
        self._save_state(state)
        return state

    @staticmethod
    def _check_ports_free(state: ClusterState) -> None:
        for port in state.ports():
            if not port_is_free(port):
                raise KafkaRuntimeError(
                    f"port {port} on 127.0.0.1 is already in use: stop whatever holds it, "
                    "or start with another --port (or --data-dir for a new cluster)"
                )

    def _launch(self, java: str, jars: Path, node: NodeState) -> subprocess.Popen[bytes]:
        logs = Path(node.dir) / "logs"
        with node.stdout_file.open("ab") as out:
            proc = subprocess.Popen(
                [
                    java,
                    *JVM_OPTS,
                    f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
                    f"-Dkafka.logs.dir={logs}",
                    "-cp",
                    f"{jars}/*",
                    "kafka.Kafka",
                    str(node.config_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the caller's terminal must not kill it
            )
        return proc

    def _wait_ready(
        self, state: ClusterState, processes: dict[int, subprocess.Popen[bytes]], timeout: float
    ) -> None:
        """Wait until the cluster reports every node as a broker in a metadata response.

        `processes` are the nodes launched by this call; the others must keep running.
        """
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaConfigurationError, KafkaError

        deadline = time.monotonic() + timeout
        while True:
            for node in state.nodes:
                process = processes.get(node.node_id)
                exited = (
                    process.poll() is not None
                    if process is not None
                    else not _process_is_ours(node.pid, node)
                )
                if exited:
                    raise KafkaRuntimeError(
                        f"Kafka node {node.node_id} exited during start-up: see {node.log_file} "
                        f"and {node.stdout_file}"
                    )
            if all(_port_answers(node.broker_port) for node in state.nodes):
                try:
                    admin = KafkaAdminClient(
                        **self.access().operator_options(), request_timeout_ms=5000
                    )
                    try:
                        brokers = admin.describe_cluster().get("brokers", [])
                    finally:
                        admin.close()
                    if len(brokers) >= len(state.nodes):
                        return
                except KafkaConfigurationError:
                    raise
                except (KafkaError, OSError) as exc:
                    log.debug("Kafka not ready yet: %s", exc)
            if time.monotonic() > deadline:
                raise KafkaRuntimeError(
                    f"Kafka did not become ready within {timeout:.0f} s: see "
                    + ", ".join(str(node.log_file) for node in state.nodes)
                )
            time.sleep(0.3)

    # -- stop ----------------------------------------------------------------------------------

    def stop(self, *, timeout: float = 30.0) -> int:
        """Stop every node this data directory started; return how many were running.

        All nodes get SIGTERM together: stopped one by one, the last nodes of a three-node
        cluster would wait for a controller quorum that is already gone.
        """
        state = self.load_state()
        if state is None:
            return 0
        stopped = _terminate([node for node in state.nodes], timeout)
        for node in state.nodes:
            node.pid = None
        self._save_state(state)
        return stopped

    def stop_node(self, node_id: int, *, timeout: float = 30.0) -> None:
        """Stop one node of a running cluster (fault tests)."""
        state = self.load_state()
        if state is None:
            raise KafkaRuntimeError(f"no local Kafka has been started in {self.data_dir}")
        node = next(n for n in state.nodes if n.node_id == node_id)
        _terminate([node], timeout)
        node.pid = None
        self._save_state(state)

    def kill_node(self, node_id: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` to one node (fault tests: SIGKILL a crash, SIGSTOP/SIGCONT a hang).

        After SIGKILL the node counts as stopped, and `start_node` starts it again.
        """
        state = self.load_state()
        if state is None:
            raise KafkaRuntimeError(f"no local Kafka has been started in {self.data_dir}")
        node = next(n for n in state.nodes if n.node_id == node_id)
        if node.pid is None or not _process_is_ours(node.pid, node):
            raise KafkaRuntimeError(f"Kafka node {node_id} is not running")
        os.killpg(node.pid, sig)
        if sig == signal.SIGKILL:
            deadline = time.monotonic() + 10.0
            while _process_is_ours(node.pid, node) and time.monotonic() < deadline:
                _reap(node.pid)
                time.sleep(0.05)
            node.pid = None
            self._save_state(state)


def _terminate(nodes: list[NodeState], timeout: float) -> int:
    """SIGTERM the nodes that are ours, wait for them, SIGKILL stragglers; return the count."""
    ours = {node.pid: node for node in nodes if node.pid and _process_is_ours(node.pid, node)}
    for pid in ours:
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    waiting = dict(ours)
    while waiting and time.monotonic() < deadline:
        for pid, node in list(waiting.items()):
            _reap(pid)
            if not _process_is_ours(pid, node):
                del waiting[pid]
        time.sleep(0.1)
    for pid, node in waiting.items():
        log.warning("Kafka node %d did not stop in %.0f s; killing it", node.node_id, timeout)
        os.killpg(pid, signal.SIGKILL)
        _reap(pid, block=True)
    return len(ours)


def _reap(pid: int, *, block: bool = False) -> None:
    """Collect the exit status if the node is our own child (when started in this process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0 if block else os.WNOHANG)
