"""Encode sample events with the registry's schemas and produce them to their raw topics."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable

from confluent_kafka.schema_registry import SchemaRegistryClient

from headwater import envelope
from headwater.kafka import clients
from headwater.settings import KafkaSettings
from schemas import catalog
from schemas.serde import AvroSerializer
from streams.sample import SampleRecord

RAW_SCHEMAS = {"crm.contacts.raw": "crm/contact", "erp.orders.raw": "erp/order"}


def produce_sample(
    events: Iterable[SampleRecord],
    kafka: KafkaSettings,
    registry: SchemaRegistryClient,
    schemas: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    rate_per_second: float | None = None,
    stop: threading.Event | None = None,
) -> Counter[str]:
    """Produce every event (Avro-encoded, or its raw bytes) with a fresh `hw-trace-id`; count per topic.

    With `rate_per_second`, events are paced to that rate (for latency measurements at a fixed load); setting
    `stop` ends producing early (what was produced is still flushed).
    """
    serializers: dict[str, AvroSerializer] = {}
    for topic, name in (schemas or RAW_SCHEMAS).items():
        serializers[topic] = AvroSerializer(registry, f"{topic}-value", catalog.load_schema(name))
    producer = clients.producer(kafka, **{"linger.ms": 10})
    counts: Counter[str] = Counter()
    started = time.monotonic()
    for sent, event in enumerate(events, start=1):
        if stop is not None and stop.is_set():
            break
        value = event.raw if event.record is None else serializers[event.topic].encode(event.record)
        headers: list[tuple[str, str | bytes | None]] = [(envelope.TRACE_ID, uuid.uuid4().hex.encode())]
        while True:
            try:
                producer.produce(event.topic, value, event.key.encode(), headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        counts[event.topic] += 1
        if rate_per_second:
            ahead = sent / rate_per_second - (time.monotonic() - started)
            if ahead > 0.002:
                producer.poll(0)
                time.sleep(ahead)
        if progress is not None and sent % 1000 == 0:
            producer.poll(0)
            progress(sent)
    remaining = producer.flush(60)
    producer.close()
    if remaining:
        raise RuntimeError(f"{remaining} sample records were not acknowledged by the broker within 60s")
    return counts
