"""Kafka plumbing shared by the connectors: a producer that reports whether everything it sent was acknowledged,
and the dead-letter topic of a topic."""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import KafkaError

from headwater.envelope import HeaderList
from headwater.kafka import clients
from headwater.settings import KafkaSettings

log = logging.getLogger(__name__)


class ProduceError(Exception):
    """Some records were not acknowledged by the broker (unreachable, timed out, refused)."""


def dlq_topic(topic: str) -> str:
    """`crm.contacts.raw` -> `crm.contacts.dlq` (ARCHITECTURE.md: `<domain>.<entity>.dlq`)."""
    parts = topic.split(".")
    if len(parts) >= 3:
        return ".".join([*parts[:2], "dlq"])
    return f"{topic}.dlq"


def _header_list(headers: HeaderList | None) -> list[tuple[str, str | bytes | None]] | None:
    return None if headers is None else [(name, value) for name, value in headers]


class AckedProducer:
    """An idempotent producer whose `flush_acked` returns only when every record sent since the last flush was
    acknowledged, and raises otherwise, so callers can commit their position afterwards."""

    def __init__(self, kafka: KafkaSettings, delivery_timeout_ms: int = 30_000, **extra: Any) -> None:
        self._producer = clients.producer(
            kafka, **{"linger.ms": 20, "message.timeout.ms": delivery_timeout_ms, **extra}
        )
        self._lock = threading.Lock()
        self._failed: list[str] = []
        self._timeout_s = delivery_timeout_ms / 1000 + 5

    def _on_delivery(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            with self._lock:
                self._failed.append(str(error))

    def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, headers: HeaderList | None = None
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=_header_list(headers), on_delivery=self._on_delivery
                )
                return
            except BufferError:
                self._producer.poll(0.1)

    def flush_acked(self) -> None:
        remaining = self._producer.flush(self._timeout_s)
        with self._lock:
            failed, self._failed = self._failed, []
        if remaining:
            raise ProduceError(f"{remaining} records were not acknowledged within {self._timeout_s:.0f}s")
        if failed:
            raise ProduceError(f"{len(failed)} records were not acknowledged: {failed[0]}")

    def close(self) -> None:
        self._producer.flush(5)
        # Closed now rather than when collected, so it never reconnects (and logs) after its broker stopped.
        self._producer.close()
