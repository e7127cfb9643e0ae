"""The cluster as every part sees it: does it answer, which topics exist, how many partitions, how large a record."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from headwater.dependencies import DependencyDown, backoff
from headwater.kafka import clients
from headwater.kafka.clients import DEFAULT_MAX_MESSAGE_BYTES
from headwater.kafka.config import KafkaSettings

log = logging.getLogger(__name__)


def wait_for_broker(
    kafka: KafkaSettings, deadline: float = 300.0, halt: threading.Event | None = None
) -> AdminClient:
    """An admin client once the cluster answers a metadata request; retried with backoff until the deadline.

    Refused credentials or TLS settings raise `clients.AuthenticationFailed` at once: no retry can fix them."""
    refusals = clients.Refusals()
    admin = clients.admin(kafka, log_level=0, error_cb=refusals, **{"socket.timeout.ms": 3000})

    def check() -> None:
        try:
            metadata = admin.list_topics(timeout=3)
        except KafkaException as exc:
            admin.poll(0)  # serves the error callbacks that say why
            refusals.raise_first(kafka)
            log.warning("event=broker_unreachable bootstrap=%s error=%s", kafka.bootstrap_servers, exc)
            raise DependencyDown(f"broker {kafka.bootstrap_servers} unreachable") from exc
        if not metadata.brokers:
            raise DependencyDown(f"broker {kafka.bootstrap_servers} lists no brokers")

    backoff(deadline, halt)(check)
    return admin


def ensure_topics(
    admin: AdminClient, topics: list[str], partitions: int, configs: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    """Create the topics that are missing, each with its entry of `configs` (topic properties such as
    `max.message.bytes`); an existing topic is left as it is."""
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = configs or {}
    missing = [
        NewTopic(topic, num_partitions=partitions, replication_factor=-1, config=dict(wanted.get(topic, {})))
        for topic in topics if topic not in existing
    ]
    if not missing:
        return
    for topic, future in admin.create_topics(missing, operation_timeout=30).items():
        try:
            future.result(timeout=30)
            log.info("event=topic_created topic=%s partitions=%d config=%s", topic, partitions, wanted.get(topic, {}))
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def partition_count(admin: AdminClient, topic: str) -> int:
    found = admin.list_topics(topic, timeout=10).topics.get(topic)
    return len(found.partitions) if found is not None and found.partitions else 1


def max_message_bytes(admin: AdminClient, topics: list[str]) -> dict[str, int]:
    """Each topic's `max.message.bytes`, so an over-large record is dead-lettered instead of failing its batch."""
    limits: dict[str, int] = {}

    def describe() -> None:
        resources = [ConfigResource("topic", topic) for topic in topics if topic not in limits]
        for resource, future in admin.describe_configs(resources).items():
            try:
                entry = future.result(timeout=30).get("max.message.bytes")
            except KafkaException as exc:  # a topic created a moment ago may not be known to every broker yet
                raise DependencyDown(f"cannot describe topic {resource.name}: {exc}") from exc
            limits[resource.name] = int(entry.value) if entry is not None and entry.value else DEFAULT_MAX_MESSAGE_BYTES

    backoff(60.0)(describe)
    return limits
