"""The one place that talks to Kafka: the local runtime, clients and admin."""
