"""The data catalog: every topic with its schemas, the pipelines and connectors around it, its size and retention,
and the warehouse tables loaded from it. Built from the cluster, the registry and the given config files."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.schema_registry import SchemaRegistryClient

from connectors.base import Connector, Sink
from connectors.lineage_events import connector_topics
from connectors.sinks.s3 import S3Sink
from connectors.sinks.warehouse import WarehouseSink
from headwater.kafka import clients
from headwater.settings import HeadwaterSettings
from schemas.client import registry_client
from streams.runtime.config import PipelineConfig

RETENTION_KEYS = ("retention.ms", "retention.bytes", "cleanup.policy")


@dataclass(frozen=True)
class Configured:
    """The pipelines and connectors the catalog knows about, from their files."""

    pipelines: Sequence[PipelineConfig] = ()
    connectors: Sequence[Connector[Any]] = ()


def _subjects(client: SchemaRegistryClient, topic: str, known: set[str]) -> dict[str, list[int]]:
    return {subject: sorted(client.get_versions(subject))
            for subject in (f"{topic}-value", f"{topic}-key") if subject in known}


def _counts(settings: HeadwaterSettings, topics: dict[str, list[int]]) -> dict[str, int]:
    consumer = clients.consumer(settings.kafka, f"headwater-catalog-{uuid.uuid4().hex[:8]}")
    try:
        counts: dict[str, int] = {}
        for topic, partitions in topics.items():
            total = 0
            for partition in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
                total += high - low
            counts[topic] = total
        return counts
    finally:
        consumer.close()


def _retention(settings: HeadwaterSettings, topics: Sequence[str]) -> dict[str, dict[str, str | None]]:
    if not topics:
        return {}
    admin = clients.admin(settings.kafka)
    found: dict[str, dict[str, str | None]] = {}
    for resource, future in admin.describe_configs([ConfigResource("topic", topic) for topic in topics]).items():
        entries = future.result(timeout=30)
        found[resource.name] = {key: entries[key].value if key in entries else None for key in RETENTION_KEYS}
    return found


def _tables(connectors: Sequence[Connector[Any]]) -> list[dict[str, Any]]:
    tables: list[dict[str, Any]] = []
    for sink in connectors:
        if isinstance(sink, WarehouseSink):
            tables += [{"connector": sink.name, "namespace": sink.dataset_namespace,
                        "table": sink.dataset_name(sink.config.table_for(topic)), "source_topic": topic}
                       for topic in sink.config.topics]
        elif isinstance(sink, S3Sink):
            tables += [{"connector": sink.name, "namespace": sink.dataset_namespace,
                        "table": sink.dataset_name(topic), "source_topic": topic} for topic in sink.config.topics]
    return tables


def build(settings: HeadwaterSettings, configured: Configured) -> dict[str, Any]:
    """The catalog as plain data (what `--json` prints)."""
    metadata = clients.admin(settings.kafka).list_topics(timeout=30)
    partitions = {name: sorted(topic.partitions) for name, topic in metadata.topics.items()}
    client = registry_client(settings.registry)
    known = set(client.get_subjects())
    counts = _counts(settings, partitions)
    retention = _retention(settings, sorted(partitions))
    tables = _tables(configured.connectors)
    topics: list[dict[str, Any]] = []
    for name in sorted(partitions):
        around = [connector for connector in configured.connectors if name in connector_topics(connector)]
        topics.append({
            "topic": name,
            "internal": name.startswith("_"),
            "partitions": len(partitions[name]),
            "records": counts[name],
            "retention": retention.get(name, {}),
            "subjects": _subjects(client, name, known),
            "read_by": [p.label for p in configured.pipelines if name in p.input.topics],
            "written_by": [p.label for p in configured.pipelines
                           if name in (p.output.topic, p.dead_letter_topic)],
            "fed_by": [c.name for c in around if not isinstance(c, Sink)],
            "drained_by": [c.name for c in around if isinstance(c, Sink)],
            "tables": [table["table"] for table in tables if table["source_topic"] == name],
        })
    pipelines = [{"pipeline": p.label, "reads": list(p.input.topics),
                  "writes": [p.output.topic, *([p.dead_letter_topic] if p.dead_letter_topic else [])]}
                 for p in configured.pipelines]
    connectors = [{"connector": c.name, "kind": c.kind, "topics": connector_topics(c)} for c in configured.connectors]
    return {"topics": topics, "tables": tables, "pipelines": pipelines, "connectors": connectors}
