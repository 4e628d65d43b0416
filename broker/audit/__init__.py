"""The pure core of the tamper-evident audit log: records, hash chains, Merkle trees, checkpoints.

Nothing here talks to Kafka: callers hand in the bytes of ``audit.decisions`` and
``audit.checkpoints`` records with their offsets, and get back bytes to produce or findings.
See docs/audit.md for the formats and the reasoning.
"""
