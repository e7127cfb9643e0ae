"""Fixtures that start real services for the tests: an Apache Kafka broker as a process, on a free port."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streams.broker import EmbeddedBroker
from streams.ports import free_port


class KafkaService:
    def __init__(self, broker: EmbeddedBroker, bootstrap: str) -> None:
        self.broker = broker
        self.bootstrap = bootstrap

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topic(self, name: str | None = None, partitions: int = 1, **config: str) -> str:
        """Create a topic (a fresh unique name by default) and wait until it exists."""
        topic = name or f"test.{uuid.uuid4().hex[:12]}.raw"
        futures = self.admin().create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config)],
            operation_timeout=30,
        )
        futures[topic].result(timeout=30)
        return topic


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaService]:
    data_dir: Path = tmp_path_factory.mktemp("kafka")
    broker = EmbeddedBroker(data_dir, port=free_port(), heap="768m")
    status = broker.start()
    assert status.bootstrap is not None
    try:
        yield KafkaService(broker, status.bootstrap)
    finally:
        broker.stop()
