"""Prometheus metrics of the alerts service. Labels are rule keys and reason codes only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class AlertsMetrics:
    """The alerts service's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.raised = Counter("broker_alerts_raised", "Alerts raised (committed), by rule",
                              ["rule"], registry=r)
        self.issue_failed = Counter("broker_alerts_issue_failed",
                                    "Alerts due that could not be signed or encoded, by rule",
                                    ["rule"], registry=r)
        self.clocks_open = Gauge("broker_alert_clocks_open",
                                 "Clocks running (not yet due), by rule", ["rule"], registry=r)
        self.clocks_overdue = Gauge(
            "broker_alert_clocks_overdue",
            "Clocks past their due time whose stopping event has still not come, by rule",
            ["rule"], registry=r)
        self.input = Counter("broker_alerts_input", "Feed records read, by outcome",
                             ["outcome"], registry=r)
        self.quarantined = Counter("broker_alerts_quarantined",
                                   "Feed records that failed verification, written to quarantine, "
                                   "by reason code", ["reason"], registry=r)
        self.condition_errors = Counter("broker_alerts_condition_errors",
                                        "Rule conditions that failed at run time", ["rule"],
                                        registry=r)
        self.state_ignored = Counter("broker_alerts_state_ignored",
                                     "State records not applied at a replay, by reason",
                                     ["reason"], registry=r)
        self.transactions = Counter("broker_alerts_transactions", "Transactions, by outcome",
                                    ["outcome"], registry=r)

    def serve(self, port: int) -> int:
        """Serve /metrics on 127.0.0.1:port (0 picks a free port); return the port."""
        server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return int(server.server_port)
