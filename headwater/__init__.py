"""Headwater's kernel and public Python API.

The kernel is what every part (`schemas`, `quality`, `connectors`, `streams`) stands on and imports none of them:
settings, the one Kafka layer (`headwater.kafka`), the record envelope, logging, ports and the status server.
"""
