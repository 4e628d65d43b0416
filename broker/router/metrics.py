"""Prometheus metrics of the routing service. Labels carry agency ids, types and codes only.

Label values come only from fixed sets: agency ids from the registry, event types from the
schemas, reason codes from the code. A value from outside them (an issuer or event type named in
the header of a forged record, which is read before anything is verified) is counted under
`unknown`, so no record can create a series, and the number of series is bounded by the
registry and the schemas whatever the input.

Health that tells the truth: the metrics that say whether the router makes progress are
computed when scraped, from times the routing loop records, so a loop that is stuck inside a
call still shows as stuck (a gauge the loop itself sets would keep its last, healthy value).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from broker.envelope.errors import ReasonCode
from broker.ingress import BAD_ENCODING, DUPLICATE, INTERNAL_ERROR, WRONG_INGRESS

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
        # Unix time since when routing is held because the registry cannot be read (None:
        # following it); see RouterService._registry_hold.
        self.registry_hold_since: float | None = None

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
        status = "stuck" if stuck else ("busy" if self.pending() else "idle")
        if self.registry_hold_since is not None:
            status = "registry_unavailable"
        return {
            "status": status,
            "registry_unavailable_since": self.registry_hold_since,
            "last_commit": self.last_commit,
            "seconds_since_last_commit": (
                None if self.last_commit is None else round(time.time() - self.last_commit, 3)
            ),
            "transaction_open_seconds": round(self.open_seconds(), 3),
            "consumer_lag": self.lag,
            "kafka_unavailable_since": self.kafka_down_since,
            "stuck_after_s": self.stuck_after_s,
        }


# The label every value outside the known sets is counted under.
UNKNOWN = "unknown"
REASON_CODES: frozenset[str] = frozenset(
    {*get_args(ReasonCode), BAD_ENCODING, DUPLICATE, INTERNAL_ERROR, WRONG_INGRESS}
)


class _ExpiryCollector:
    def __init__(self, keys: Callable[[], Iterable[Any]], ca_file: Path | None) -> None:
        self.keys = keys
        self.ca_file = ca_file

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "broker_key_expiry_timestamp_seconds",
            "Unix time a signing key stops being valid (+Inf: no end); revoked keys left out",
            labels=["agency", "role", "key_id"],
        )
        for key in self.keys():
            if key.revoked_at is not None:
                continue
            ends = math.inf if key.valid_until is None else key.valid_until.timestamp()
            for role in key.roles:
                family.add_metric([key.agency_id, role, key.key_id], ends)
        yield family
        if self.ca_file is not None:
            certificate = GaugeMetricFamily(
                "broker_tls_certificate_expiry_timestamp_seconds",
                "Unix time the Kafka CA certificate (kafka.ssl_cafile) expires",
            )
            try:
                from cryptography import x509

                loaded = x509.load_pem_x509_certificates(self.ca_file.read_bytes())
                certificate.add_metric([], min(c.not_valid_after_utc.timestamp() for c in loaded))
            except (OSError, ValueError):
                pass  # unreadable: no sample, and the rule on absence says so
            yield certificate


class RouterMetrics:
    """One registry per router instance (tests run several in one process).

    `agencies` and `event_types` are the label values allowed for issuers, recipients and
    types (the registry's agencies and the schemas' event types); see the module docstring."""

    def __init__(
        self,
        stuck_after_s: float = 30.0,
        *,
        agencies: Collection[str] = (),
        event_types: Collection[str] = (),
    ) -> None:
        self.agencies = frozenset(agencies)
        self.event_types = frozenset(event_types)
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
            "registry.keys and registry.agreements records not applied: unsigned, forged, "
            "malformed, invalid or conflicting",
            ["reason"],
            registry=r,
        )
        self.registry_position = Gauge(
            "broker_registry_position",
            "Offset after the last registry.keys record the router has read",
            registry=r,
        )
        self.registry_agreements_position = Gauge(
            "broker_registry_agreements_position",
            "Offset after the last registry.agreements record the router has read",
            registry=r,
        )
        self.registry_stale_seconds = Gauge(
            "broker_registry_stale_seconds",
            "Seconds since the router last read the registry topics to their end",
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

    def watch_expiry(self, keys: Callable[[], Iterable[Any]], ca_file: Path | None) -> None:
        """Export, computed at each scrape, when each signing role's newest key stops being
        valid (`broker_key_expiry_timestamp_seconds`, +Inf for a key without an end) and when
        the Kafka CA certificate expires (`broker_tls_certificate_expiry_timestamp_seconds`).
        Revoked keys are left out. Labels: the agency id, role and key id only."""
        self.registry.register(_ExpiryCollector(keys, ca_file))

    def agency(self, value: str | None) -> str:
        """`value` as a label: an agency of the registry, else `unknown`."""
        return value if value in self.agencies else UNKNOWN

    def event_type(self, value: str | None) -> str:
        """`value` as a label: an event type of the schemas, else `unknown`."""
        return value if value in self.event_types else UNKNOWN

    @staticmethod
    def reason(value: str | None) -> str:
        """`value` as a label: a reason code of the code, else `unknown`."""
        return value if value in REASON_CODES else UNKNOWN

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics and /healthz on host:port (0 picks a free port); return the port.

        /healthz answers 200 with a JSON status `idle` or `busy`, or 503 with `stuck` or
        `registry_unavailable` (routing held: the registry could not be read for longer than
        `router.registry_max_stale_s`).
        """
        registry, progress = self.registry, self.progress

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/healthz", "/health"):
                    health = progress.health()
                    body = json.dumps(health).encode()
                    code = 503 if health["status"] in ("stuck", "registry_unavailable") else 200
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

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        return int(server.server_port)
