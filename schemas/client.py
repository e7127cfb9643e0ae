"""Build confluent-kafka's `SchemaRegistryClient` from Headwater's registry settings."""

from __future__ import annotations

from confluent_kafka.schema_registry import SchemaRegistryClient

from streams.settings import RegistrySettings


def registry_client(settings: RegistrySettings | None = None) -> SchemaRegistryClient:
    return SchemaRegistryClient((settings or RegistrySettings()).confluent())  # type: ignore[call-arg]
