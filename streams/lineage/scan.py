"""Bounded reads of topics: the last N records of each partition, so a lineage lookup on a large topic ends."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from confluent_kafka import KafkaError, Message, TopicPartition

from headwater import envelope
from headwater.kafka import clients
from headwater.settings import KafkaSettings


@dataclass(frozen=True)
class Seen:
    """One record as a lineage lookup sees it: where it is, its key and its headers as text."""

    topic: str
    partition: int
    offset: int
    key: str | None
    timestamp_ms: int
    headers: dict[str, str]
    schema_id: int | None

    @property
    def position(self) -> str:
        return envelope.source_of(self.topic, self.partition, self.offset)

    @property
    def trace_id(self) -> str | None:
        return self.headers.get(envelope.TRACE_ID)


def _seen(message: Message) -> Seen:
    raw = cast(list[tuple[str, bytes | None]], message.headers() or [])
    key, value = message.key(), message.value()
    wire = value is not None and len(value) >= 5 and value[0] == 0  # Confluent wire format: magic 0, 4-byte id
    return Seen(
        message.topic() or "", message.partition() or 0, message.offset() or 0,
        None if key is None else key.decode("utf-8", "replace"), message.timestamp()[1],
        {name: (data or b"").decode("utf-8", "replace") for name, data in raw},
        int.from_bytes(value[1:5], "big") if value is not None and wire else None,
    )


def scan(kafka: KafkaSettings, topics: Sequence[str], takes: Callable[[Seen], bool], last: int) -> Iterator[Seen]:
    """The records among the last `last` of each partition of `topics` that `takes` accepts, oldest first per
    partition, read by one consumer (topics that do not exist are skipped)."""
    consumer = clients.consumer(kafka, f"headwater-lineage-{uuid.uuid4().hex[:8]}",
                                **{"isolation.level": "read_committed"})
    try:
        metadata = consumer.list_topics(timeout=30).topics
        ends: dict[tuple[str, int], int] = {}
        starts: list[TopicPartition] = []
        for topic in topics:
            found = metadata.get(topic)
            if found is None or found.error is not None:
                continue
            for partition in found.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
                if high > low:
                    ends[(topic, partition)] = high
                    starts.append(TopicPartition(topic, partition, max(low, high - last)))
        consumer.assign(starts)
        while ends:
            for message in consumer.consume(1000, 1.0):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {message.topic()}: {error.str()}")
                    continue
                seen = _seen(message)
                if takes(seen):
                    yield seen
            for tp in consumer.position([TopicPartition(topic, partition) for topic, partition in list(ends)]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    del ends[(tp.topic, tp.partition)]
    finally:
        consumer.close()


def topic_names(kafka: KafkaSettings) -> list[str]:
    """Every topic of the cluster, internal ones included, sorted."""
    admin = clients.admin(kafka)
    return sorted(admin.list_topics(timeout=30).topics)
