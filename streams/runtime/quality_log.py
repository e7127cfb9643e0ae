"""A one-partition compacted topic read whole by every worker of a pipeline: the quality stage's shared state.

Uniqueness entries and pause/resume control records live on such topics. One partition gives one order that every
worker reads alike; compaction keeps the latest record per key, so reading from the beginning rebuilds the state
after a restart or on whichever worker takes a partition over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from headwater.kafka import clients, cluster
from headwater.kafka.config import KafkaSettings
from streams.runtime.quality_reports import QualityWriteFailed

CATCH_UP_LIMIT_S = 60.0
Reader = Callable[[bytes, bytes | None], None]


def ensure(kafka: KafkaSettings, topic: str, configs: Mapping[str, str]) -> None:
    admin = clients.admin(kafka)
    cluster.ensure_topics(admin, [topic], 1, configs={topic: {"cleanup.policy": "compact", **configs}})


class TopicLog:
    def __init__(self, kafka: KafkaSettings, topic: str, group: str, producer: Producer) -> None:
        self.topic = topic
        self.producer = producer
        self._partition = TopicPartition(topic, 0)
        self._consumer: Consumer = clients.consumer(kafka, group, **{"enable.partition.eof": False})
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self._next = 0
        self._failures: list[str] = []

    def _apply(self, messages: list[Message], reader: Reader) -> None:
        for message in messages:
            if message.error() is not None:
                continue
            key = message.key()
            if key is not None:
                reader(key, message.value())
            self._next = (message.offset() or 0) + 1

    def catch_up(self, reader: Reader) -> None:
        """Read every record written before this call (by any worker), blocking until done."""
        _low, high = self._consumer.get_watermark_offsets(self._partition, timeout=10, cached=False)
        deadline = time.monotonic() + CATCH_UP_LIMIT_S
        while self._next < high:
            if time.monotonic() > deadline:
                raise QualityWriteFailed(f"could not read {self.topic} to offset {high} within {CATCH_UP_LIMIT_S}s")
            self._apply(self._consumer.consume(1000, 0.5), reader)

    def poll(self, reader: Reader) -> None:
        """Whatever the consumer already fetched, without waiting."""
        self._apply(self._consumer.consume(1000, 0), reader)

    def wait(self, reader: Reader, seconds: float) -> None:
        self._apply(self._consumer.consume(1000, seconds), reader)

    def write(self, key: bytes, value: bytes | None) -> None:
        def delivered(error: object, _message: object) -> None:
            if error is not None:
                self._failures.append(str(error))

        self.producer.produce(self.topic, value, key, on_delivery=delivered)

    def flush(self) -> None:
        """Wait for the broker to take every write; raises (the batch is retried) if it refused one."""
        self.producer.flush(30)
        if self._failures:
            failure, self._failures = self._failures[0], []
            raise QualityWriteFailed(f"write to {self.topic} failed: {failure}")

    def close(self) -> None:
        self._consumer.close()
