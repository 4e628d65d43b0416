"""Prometheus metrics of the routing service. Labels carry agency ids, types and codes only.

Health that tells the truth: the metrics that say whether the router makes progress are
computed when scraped, from times the routing loop records, so a loop that is stuck inside a
call still shows as stuck (a gauge the loop itself sets would keep its last, healthy value).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Buckets around the live-path objective: a missing child reaches the police in well under 1 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)


class Progress:
    """What the routing loop is doing, as times it records; read by scrapes and /healthz.

    Work is *pending* while a transaction (or the recovery of the producer or of partition
    state) is open, or while the last known consumer lag is above zero. The router is *stuck*
    when work has been pending for `stuck_after_s` without a committed transaction; *idle*
    when nothing is pending (however long ago the last commit was).
    """

    def __init__(self, stuck_after_s: float) -> None:
        self.stuck_after_s = stuck_after_s
        self._guard = threading.Lock()
        self.started = time.time()
        self.last_commit: float | None = None  # Unix time of the last committed transaction
        self.busy_since: float | None = None  # a transaction or a recovery is open since then
        self.lag = 0  # records not yet routed, as last measured
        self.kafka_down_since: float | None = None

    def begin(self) -> None:
        with self._guard:
            if self.busy_since is None:
                self.busy_since = time.time()

    def committed(self) -> None:
        with self._guard:
            self.last_commit = time.time()
            self.busy_since = None

    def idle(self) -> None:
        """Nothing open any more (an abort followed by a rebuild completed, say)."""
        with self._guard:
            self.busy_since = None

    def open_seconds(self) -> float:
        busy = self.busy_since
        return 0.0 if busy is None else max(0.0, time.time() - busy)

    def pending(self) -> bool:
        return self.busy_since is not None or self.lag > 0

    def stuck(self) -> bool:
        busy = self.busy_since
        if busy is not None:
            return time.time() - busy >= self.stuck_after_s
        if self.lag > 0:  # work waiting but no transaction open: measure from the last commit
            return time.time() - (self.last_commit or self.started) >= self.stuck_after_s
        return False

    def health(self) -> dict[str, Any]:
        stuck = self.stuck()
        return {
            "status": "stuck" if stuck else ("busy" if self.pending() else "idle"),
            "last_commit": self.last_commit,
            "seconds_since_last_commit": (
                None if self.last_commit is None else round(time.time() - self.last_commit, 3)
            ),
            "transaction_open_seconds": round(self.open_seconds(), 3),
            "consumer_lag": self.lag,
            "kafka_unavailable_since": self.kafka_down_since,
            "stuck_after_s": self.stuck_after_s,
        }


class RouterMetrics:
    """One registry per router instance (tests run several in one process)."""

    def __init__(self, stuck_after_s: float = 30.0) -> None:
        self.progress = Progress(stuck_after_s)
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "broker_events_in", "Ingress events read", ["issuer", "event_type"], registry=r
        )
        self.forwarded = Counter(
            "broker_events_forwarded", "Envelopes forwarded", ["recipient"], registry=r
        )
        self.denied = Counter(
            "broker_events_denied",
            "Valid events no agreement allowed to forward",
            ["issuer", "event_type"],
            registry=r,
        )
        self.quarantined = Counter(
            "broker_events_quarantined", "Ingress records quarantined", ["reason"], registry=r
        )
        self.routing_seconds = Histogram(
            "broker_routing_seconds",
            "From reading an ingress record to committing its outputs",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.event_age_seconds = Histogram(
            "broker_event_age_seconds",
            "Age of an event (since the issuer signed it) when its forwards were committed",
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.transactions = Counter(
            "broker_transactions", "Routing transactions", ["result"], registry=r
        )
        self.consumer_lag = Gauge(
            "broker_consumer_lag",
            "Ingress records not yet routed",
            ["topic", "partition"],
            registry=r,
        )
        self.state_ignored = Counter(
            "broker_router_state_ignored",
            "router.state records not applied at a replay: not written by this router "
            "(no or bad MAC), malformed, or stale",
            ["reason"],
            registry=r,
        )
        self.registry_ignored = Counter(
            "broker_registry_ignored",
            "registry.keys records not applied: unsigned, forged, malformed or conflicting",
            ["reason"],
            registry=r,
        )
        self.registry_position = Gauge(
            "broker_registry_position",
            "Offset after the last registry.keys record the router has read",
            registry=r,
        )
        self.partitions_owned = Gauge(
            "broker_partitions_owned", "Ingress partitions owned by this instance", registry=r
        )
        self.state_records_read = Gauge(
            "broker_state_recovery_records",
            "router.state records read at the last rebuild of partition state (bounded by the "
            "snapshot interval, not by the history)",
            registry=r,
        )
        self.dedup_entries = Gauge(
            "broker_dedup_window_events",
            "Event ids held in the de-duplication windows of the owned partitions",
            registry=r,
        )
        self.snapshots = Counter(
            "broker_state_snapshots", "Snapshots of the owned partitions' state written", registry=r
        )

        progress = self.progress
        Gauge(
            "broker_last_commit_timestamp_seconds",
            "Unix time of the last committed routing transaction (0: none yet)",
            registry=r,
        ).set_function(lambda: progress.last_commit or 0.0)
        Gauge(
            "broker_transaction_open_seconds",
            "How long the open transaction (or producer or state recovery) has been open; 0: none",
            registry=r,
        ).set_function(progress.open_seconds)
        Gauge(
            "broker_work_pending",
            "1 while a transaction is open or the last known consumer lag is above 0",
            registry=r,
        ).set_function(lambda: float(progress.pending()))
        Gauge(
            "broker_stuck",
            "1 when work has been pending for router.stuck_after_s without a commit",
            registry=r,
        ).set_function(lambda: float(progress.stuck()))

    def serve(self, port: int) -> int:
        """Serve /metrics and /healthz on 127.0.0.1:port (0 picks a free port); return the port.

        /healthz answers 200 with a JSON status `idle` or `busy`, or 503 with `stuck`.
        """
        registry, progress = self.registry, self.progress

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/healthz", "/health"):
                    health = progress.health()
                    body = json.dumps(health).encode()
                    code = 503 if health["status"] == "stuck" else 200
                    kind = "application/json"
                elif path in ("/metrics", "/"):
                    body, code, kind = generate_latest(registry), 200, CONTENT_TYPE_LATEST
                else:
                    body, code, kind = b"not found\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds are not worth a log line

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        return int(server.server_port)
