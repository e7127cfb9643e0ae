"""confluent-kafka clients for the pipeline worker: dependency checks with backoff, topics, and their size limits."""

from __future__ import annotations

import logging
import threading

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
)

from streams.settings import KafkaSettings

log = logging.getLogger(__name__)
DEFAULT_MAX_BYTES = 1_048_588


class DependencyDown(RuntimeError):
    """The broker or the registry does not answer (yet)."""


def _backoff(deadline: float, halt: threading.Event | None = None) -> Retrying:
    stop = stop_after_delay(deadline) | stop_when_event_set(halt) if halt is not None else stop_after_delay(deadline)
    return Retrying(
        retry=retry_if_exception_type(DependencyDown),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop,
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )


def wait_for_broker(
    kafka: KafkaSettings, deadline: float = 300.0, halt: threading.Event | None = None
) -> AdminClient:
    """An admin client once the cluster answers a metadata request; retried with backoff until the deadline."""
    admin = AdminClient({**kafka.confluent(), "log_level": 0, "socket.timeout.ms": 3000})

    def check() -> None:
        try:
            metadata = admin.list_topics(timeout=3)
        except KafkaException as exc:
            log.warning("event=broker_unreachable bootstrap=%s error=%s", kafka.bootstrap_servers, exc)
            raise DependencyDown(f"broker {kafka.bootstrap_servers} unreachable") from exc
        if not metadata.brokers:
            raise DependencyDown(f"broker {kafka.bootstrap_servers} lists no brokers")

    _backoff(deadline, halt)(check)
    return admin


def wait_for_registry(
    client: SchemaRegistryClient, url: str, deadline: float = 300.0, halt: threading.Event | None = None
) -> None:
    def check() -> None:
        try:
            client.get_subjects()
        except Exception as exc:  # connection refused, timeouts and 5xx answers all mean "not there yet"
            log.warning("event=registry_unreachable url=%s error=%s", url, type(exc).__name__)
            raise DependencyDown(f"registry {url} unreachable") from exc

    _backoff(deadline, halt)(check)


def ensure_topics(admin: AdminClient, topics: list[str], partitions: int) -> None:
    """Create the output and dead-letter topics when missing (an existing topic is left as it is)."""
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [NewTopic(topic, num_partitions=partitions, replication_factor=-1) for topic in topics
               if topic not in existing]
    if not missing:
        return
    for topic, future in admin.create_topics(missing, operation_timeout=30).items():
        try:
            future.result(timeout=30)
            log.info("event=topic_created topic=%s partitions=%d", topic, partitions)
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
            limits[resource.name] = int(entry.value) if entry is not None and entry.value else DEFAULT_MAX_BYTES

    _backoff(60.0)(describe)
    return limits
