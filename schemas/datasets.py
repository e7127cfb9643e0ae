"""OpenLineage datasets of topics: named after the cluster, with the fields of the topic's latest value schema."""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from headwater.openlineage import DatasetRef, kafka_namespace


def _type_name(avro: Any) -> str:
    if isinstance(avro, str):
        return avro
    if isinstance(avro, list):
        return "|".join(_type_name(item) for item in avro if item != "null") or "null"
    if isinstance(avro, dict):
        return str(avro.get("logicalType") or avro.get("type"))
    return str(avro)


def topic_dataset(client: SchemaRegistryClient, bootstrap_servers: str, topic: str) -> DatasetRef:
    """The topic as a dataset; without a schema facet when `<topic>-value` has no schema yet."""
    try:
        latest = client.get_latest_version(f"{topic}-value")
    except SchemaRegistryError:
        return DatasetRef(kafka_namespace(bootstrap_servers), topic)
    schema = json.loads(latest.schema.schema_str or "{}")
    fields = schema.get("fields", []) if isinstance(schema, dict) else []
    return DatasetRef(kafka_namespace(bootstrap_servers), topic,
                      tuple((str(item["name"]), _type_name(item["type"])) for item in fields))
