"""Source cursors in the compacted topic `_headwater.connect-offsets`, keyed by connector name.

A cursor is written only after the broker acknowledged every record it covers, so a source restarted after a
crash resumes at or before the last record it delivered: duplicates are possible, gaps are not.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition
from confluent_kafka.cimpl import NewTopic

from connectors.base import Cursor
from headwater.kafka import clients
from headwater.kafka.producer import AckedProducer
from headwater.settings import KafkaSettings

OFFSETS_TOPIC = "_headwater.connect-offsets"
log = logging.getLogger(__name__)


class OffsetStore:
    def __init__(self, kafka: KafkaSettings, topic: str = OFFSETS_TOPIC) -> None:
        self.kafka = kafka
        self.topic = topic
        self._producer: AckedProducer | None = None

    def ensure_topic(self) -> None:
        admin = clients.admin(self.kafka)
        if self.topic in admin.list_topics(timeout=30).topics:
            return
        spec = NewTopic(self.topic, num_partitions=1, replication_factor=1, config={"cleanup.policy": "compact"})
        try:
            admin.create_topics([spec], operation_timeout=30)[self.topic].result(timeout=30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise

    def load(self, name: str) -> Cursor | None:
        """The last cursor committed under `name` (reads the topic up to its end), or None."""
        self.ensure_topic()
        consumer = clients.consumer(self.kafka, f"headwater-offsets-reader-{uuid.uuid4().hex}")
        try:
            metadata = consumer.list_topics(self.topic, timeout=30)
            partitions = list(metadata.topics[self.topic].partitions)
            found: Cursor | None = None
            for partition in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=30)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(self.topic, partition, OFFSET_BEGINNING)])
                position = low
                while position < high:
                    message = consumer.poll(5.0)
                    if message is None:
                        continue
                    if message.error():
                        raise KafkaException(message.error())
                    position = (message.offset() or position) + 1
                    if message.key() == name.encode():
                        value = message.value()
                        found = None if value is None else _decode(value)
            return found
        finally:
            consumer.close()

    def commit(self, name: str, cursor: Cursor) -> None:
        """Write the cursor and return once the broker acknowledged it."""
        if self._producer is None:
            self._producer = AckedProducer(self.kafka)
        self._producer.send(self.topic, key=name.encode(), value=json.dumps(cursor, sort_keys=True).encode())
        self._producer.flush_acked()
        log.debug("event=offset_committed connector=%s", name)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()


def _decode(value: bytes) -> Cursor:
    data: Any = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError(f"offset record in {OFFSETS_TOPIC} is not a JSON object")
    return data
