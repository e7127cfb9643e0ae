"""Replay runs in the compacted topic `_headwater.replays`, keyed by run id: the plan, where the records go, the
counts so far and whether the run is done. The replay writes its state inside the same Kafka transaction as the
records it covers, so the counts and the committed input offsets always agree with what the topics hold."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.cimpl import NewTopic

from headwater.kafka import clients
from headwater.kafka.config import KafkaSettings

REPLAYS_TOPIC = "_headwater.replays"
Into = Literal["side", "live"]
Status = Literal["running", "done"]


@dataclass
class ReplayState:
    run_id: str
    pipeline_file: str
    pipeline: str
    kind: Literal["range", "dlq"]
    into: Into
    output_topic: str
    dead_letter_topic: str
    source_topic: str
    live_topic: str
    plan: dict[str, list[int]]
    status: Status = "running"
    records_in: int = 0
    records_out: int = 0
    dead_lettered: int = 0
    selection: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> ReplayState:
        return cls(**json.loads(data))


def ensure_topic(kafka: KafkaSettings) -> None:
    admin = clients.admin(kafka)
    if REPLAYS_TOPIC in admin.list_topics(timeout=30).topics:
        return
    spec = NewTopic(REPLAYS_TOPIC, num_partitions=1, replication_factor=-1, config={"cleanup.policy": "compact"})
    try:
        admin.create_topics([spec], operation_timeout=30)[REPLAYS_TOPIC].result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def load(kafka: KafkaSettings, run_id: str) -> ReplayState | None:
    """The latest committed state of `run_id` (reads the topic to its end), or None."""
    ensure_topic(kafka)
    consumer = clients.consumer(kafka, f"headwater-replays-reader-{uuid.uuid4().hex}",
                                **{"isolation.level": "read_committed"})
    try:
        partition = TopicPartition(REPLAYS_TOPIC, 0)
        low, high = consumer.get_watermark_offsets(partition, timeout=30)
        found: ReplayState | None = None
        if high <= low:
            return None
        consumer.assign([TopicPartition(REPLAYS_TOPIC, 0, low)])
        while True:
            message = consumer.poll(5.0)
            if message is None:
                position = consumer.position([partition])[0].offset
                if position >= high:
                    return found
                continue
            if message.error() is None and message.key() == run_id.encode() and message.value():
                found = ReplayState.decode(message.value() or b"{}")
            if (message.offset() or 0) + 1 >= high:
                return found
    finally:
        consumer.close()
