"""Kafka plumbing shared by the connectors: a producer that reports whether everything it sent was acknowledged,
and the dead-letter topic of a topic."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from headwater import oversized
from headwater.envelope import HeaderList
from headwater.kafka import clients
from headwater.kafka.errors import ProduceFailure
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


@dataclass(slots=True)
class _Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: HeaderList
    original: bytes | None  # a dead letter's untouched value, which truncation cuts from; None for other records


class AckedProducer:
    """An idempotent producer whose `flush_acked` returns only when every record sent since the last flush was
    acknowledged, and raises otherwise, so callers can commit their position afterwards.

    A dead letter (`send_dead_letter`) refused as too large is truncated (`headwater.oversized`) and sent again
    within the same `flush_acked`, so it ends within any limit instead of failing every retry of its batch.
    """

    def __init__(self, kafka: KafkaSettings, delivery_timeout_ms: int = 30_000, **extra: Any) -> None:
        self._producer = clients.producer(
            kafka, **{"linger.ms": 20, "message.timeout.ms": delivery_timeout_ms, **extra}
        )
        self._lock = threading.Lock()
        self._failed: list[tuple[_Outgoing, ProduceFailure]] = []
        self._timeout_s = delivery_timeout_ms / 1000 + 5

    def _submit(self, item: _Outgoing) -> None:
        def delivered(failure: ProduceFailure | None, _message: Any) -> None:
            if failure is not None:
                with self._lock:
                    self._failed.append((item, failure))

        clients.send(self._producer, item.topic, item.value, item.key, item.headers, delivered)

    def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, headers: HeaderList | None = None
    ) -> None:
        self._submit(_Outgoing(topic, key, value, list(headers or ()), original=None))

    def send_dead_letter(self, topic: str, value: bytes | None, key: bytes | None, headers: HeaderList) -> None:
        """Send a dead letter of `value` (the original bytes), truncated if its topic refuses it as too large."""
        self._submit(_Outgoing(topic, key, value, list(headers), original=value or b""))

    def _truncate(self, item: _Outgoing, original: bytes) -> None:
        """Send a refused dead letter again at half the size refused: it converges on any limit."""
        limit = oversized.record_size(item.key, item.value, item.headers) // 2
        item.value, item.headers = oversized.truncated(item.key, original, item.headers, limit)
        log.warning("event=dead_letter_truncated topic=%s original_bytes=%d kept_bytes=%d",
                    item.topic, len(original), len(item.value))
        self._submit(item)

    def flush_acked(self) -> None:
        while True:
            remaining = self._producer.flush(self._timeout_s)
            with self._lock:
                failed, self._failed = self._failed, []
            if remaining:
                raise ProduceError(f"{remaining} records were not acknowledged within {self._timeout_s:.0f}s")
            too_large: list[tuple[_Outgoing, bytes]] = []
            others: list[ProduceFailure] = []
            for item, failure in failed:
                if failure.too_large and item.original is not None:
                    too_large.append((item, item.original))
                else:
                    others.append(failure)
            if others:
                raise ProduceError(f"{len(others)} records were not acknowledged: {others[0].error}")
            if not too_large:
                return
            for item, original in too_large:
                self._truncate(item, original)

    def close(self) -> None:
        self._producer.flush(5)
        # Closed now rather than when collected, so it never reconnects (and logs) after its broker stopped.
        self._producer.close()
