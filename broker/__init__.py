"""Inter-agency safeguarding event broker: signed, selectively disclosed events on Kafka."""

__version__ = "0.1.0"
