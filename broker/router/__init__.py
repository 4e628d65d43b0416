"""The routing service: verify, apply agreements, forward, audit; exactly once on Kafka."""
