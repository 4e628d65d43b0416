"""The live key registry: signed key records on the compacted `registry.keys` topic.

`records` is the pure record format (canonical Avro, signed by a registry-administrator key);
`live` applies a stream of records to a `KeyRegistry` in place and follows the topic;
`cli` holds `broker keys publish|revoke|rotate|list`.
"""
