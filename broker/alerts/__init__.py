"""Live safeguarding alerts: rules as code, per-child clocks, signed `alert.raised` events.

The pure core (`model`, `loader`, `check`, `clocks`) knows nothing of Kafka; `state` is the
sealed changelog codec and `service` the thin Kafka shell (docs/alerts.md).
"""

from broker.alerts.check import check_rules_dir, load_rules
from broker.alerts.clocks import AlertDue, ChildState, Engine
from broker.alerts.model import AlertRule

__all__ = ["AlertDue", "AlertRule", "ChildState", "Engine", "check_rules_dir", "load_rules"]
