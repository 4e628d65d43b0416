"""Prometheus metrics of the routing service. Labels carry agency ids, types and codes only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Buckets around the live-path objective: a missing child reaches the police in well under 1 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)


class RouterMetrics:
    """One registry per router instance (tests run several in one process)."""

    def __init__(self) -> None:
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

    def serve(self, port: int) -> int:
        """Serve /metrics on 127.0.0.1:port (0 picks a free port); return the port."""
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return int(server.server_port)
