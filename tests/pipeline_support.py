"""Helpers of the pipeline tests: pipeline files on unique topics, producing inputs, reading topics with deadlines."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from headwater import envelope
from schemas import catalog
from schemas.serde import AvroSerializer


@dataclass(frozen=True)
class Read:
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    offset: int
    partition: int


def pipeline_file(tmp_path: Path, raw_topic: str, **overrides: Any) -> Path:
    """A contacts pipeline reading `raw_topic` and writing `<domain>.<entity>.enriched`/`.dlq` beside it."""
    domain, entity = raw_topic.split(".")[:2]
    definition: dict[str, Any] = {
        "name": f"p_{uuid.uuid4().hex[:8]}",
        "version": "3",
        "input": {"topics": [raw_topic]},
        "output": {"topic": f"{domain}.{entity}.enriched", "schema": "crm/contact_enriched"},
        "transform": [
            {"op": "trim", "fields": ["first_name", "notes", "email", "phone"]},
            {"op": "hook", "function": "tests.pipeline_hooks:explode_on_marker"},
            {"op": "coalesce", "fields": ["account_id"], "to": "account_check"},
            {"op": "cast", "field": "account_check", "to": "long"},
            {"op": "drop", "fields": ["account_check"]},
            {"op": "normalise_email", "field": "email", "to": "email_normalized"},
            {"op": "country_iso", "field": "mailing_address.country", "to": "country_code"},
            {"op": "phone_e164", "field": "phone", "to": "phone_e164", "region_field": "country_code"},
        ],
        "enrich": [
            {"provider": "sentiment", "options": {"text_field": "notes"}},
            {"provider": "flaky", "options": {"timeout_seconds": 0.5, "batch_size": 50}},
        ],
        "quality": {"suite": "crm_contacts"},
        "batch": {"size": 200, "linger_ms": 20},
        "consumer_group": f"test-{uuid.uuid4().hex[:8]}",
    }
    definition.update(overrides)
    path = tmp_path / f"{definition['name']}.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return path


def contact(index: int, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "contact_id": f"C{index:06d}", "source_system": "salesforce", "first_name": "Zoë", "last_name": "Åberg",
        "email": f" Zoe.{index}@Example.com ", "phone": "030 12345678", "account_id": f"{1000 + index}",
        "job_title": "cfo", "mailing_address": {"street": None, "city": "Berlin", "postal_code": None,
                                                "region": None, "country": "Deutschland"},
        "lifecycle_stage": "customer", "notes": "Very happy with the service, wants to expand.",
        "created_at": 1_700_000_000_000 + index, "updated_at": 1_700_000_000_000 + index,
    }
    record.update(changes)
    return record


def producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})


def produce_values(bootstrap: str, topic: str, items: list[tuple[bytes, bytes | None]], trace: bool = True) -> None:
    out = producer(bootstrap)
    for index, (key, value) in enumerate(items):
        headers: list[tuple[str, str | bytes | None]] = [("origin", b"test")]
        if trace:
            headers.append((envelope.TRACE_ID, f"trace-{index}".encode()))
        out.produce(topic, value, key, headers=headers)
    assert out.flush(30) == 0


def encoder(client: SchemaRegistryClient, topic: str) -> AvroSerializer:
    return AvroSerializer(client, f"{topic}-value", catalog.load_schema("crm/contact"))


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60.0, settle: float = 0.0) -> list[Read]:
    """Every record of the topic once at least `expected` were read (then `settle` more seconds for extras)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                break
            time.sleep(0.1)
        assert metadata is not None and metadata.partitions, f"topic {topic} never appeared"
        consumer.assign([TopicPartition(topic, partition, 0) for partition in metadata.partitions])
        found: list[Read] = []
        settle_until: float | None = None
        while time.monotonic() < deadline:
            if len(found) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            headers = {name: (value or b"").decode() for name, value in message.headers() or []}
            found.append(Read(message.key(), message.value(), headers, message.offset() or 0,
                              message.partition() or 0))
        return found
    finally:
        consumer.close()
