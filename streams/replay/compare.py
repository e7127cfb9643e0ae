"""`headwater replay diff RUN`: the side topic of a run against the live enriched topic, record by record.

Records are matched by `hw-source` (the input record each came from); the live side keeps the latest record per
source. Fields that change on every run by nature (`enriched_at`, `pipeline`) are left out of the comparison.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import KafkaError, Message, TopicPartition

from headwater import envelope
from headwater.kafka import clients
from headwater.settings import HeadwaterSettings
from schemas.client import registry_client
from schemas.serde import AvroDeserializer, SerdeError

VOLATILE_FIELDS = frozenset({"enriched_at", "pipeline"})


@dataclass
class Difference:
    identical: int = 0
    changed: int = 0
    new: int = 0
    dead_lettered: int = 0
    fields: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)


def read_all(settings: HeadwaterSettings, topic: str) -> Iterator[Message]:
    """Every committed record of `topic` up to its end as of now (nothing when the topic does not exist)."""
    consumer = clients.consumer(settings.kafka, f"headwater-read-{uuid.uuid4().hex[:8]}",
                                **{"isolation.level": "read_committed"})
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return
        ends: dict[int, int] = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        while ends:
            for message in consumer.consume(1000, 1.0):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {topic}: {error.str()}")
                    continue
                yield message
            for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
    finally:
        consumer.close()


def text_headers(message: Message) -> dict[str, str]:
    raw = cast(list[tuple[str, bytes | None]], message.headers() or [])
    return {name: (value or b"").decode("utf-8", "replace") for name, value in raw}


def _decoded(decoder: AvroDeserializer, value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return {key: item for key, item in decoder.decode(value).items() if key not in VOLATILE_FIELDS}
    except SerdeError:
        return None


def compare(settings: HeadwaterSettings, side_topic: str, side_dead_letters: str | None, live_topic: str) -> Difference:
    decoder = AvroDeserializer(registry_client(settings.registry))
    side: dict[str, dict[str, Any] | None] = {}
    for message in read_all(settings, side_topic):
        source = text_headers(message).get(envelope.SOURCE)
        if source is not None:
            side[source] = _decoded(decoder, message.value())
    found = Difference()
    if side_dead_letters is not None:
        found.dead_lettered = sum(1 for _ in read_all(settings, side_dead_letters))
    live: dict[str, dict[str, Any] | None] = {}
    for message in read_all(settings, live_topic):
        headers = text_headers(message)
        source = headers.get(envelope.SOURCE)
        if source in side and "hw-replay-run" not in headers:
            live[source] = _decoded(decoder, message.value())
    for source, replayed in side.items():
        if source not in live:
            found.new += 1
            continue
        before = live[source]
        if before == replayed:
            found.identical += 1
            continue
        found.changed += 1
        for name in sorted(set(before or {}) | set(replayed or {})):
            if (before or {}).get(name) != (replayed or {}).get(name):
                found.fields[name] += 1
                found.examples.setdefault(
                    name, f"{source}: {(before or {}).get(name)!r} -> {(replayed or {}).get(name)!r}"
                )
    return found
