"""Reads a topic for `headwater tail`: decoded records, and dead letters with their reasons."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

from headwater import envelope
from headwater.kafka import clients, cluster
from headwater.settings import HeadwaterSettings
from schemas.client import registry_client
from schemas.serde import AvroDeserializer, SerdeError

# As long as tail waited for metadata before it checked the broker first.
STARTUP_DEADLINE_S = 10.0


@dataclass(frozen=True)
class TailedRecord:
    source: str
    key: str | None
    headers: dict[str, str]
    record: dict[str, Any] | None
    raw: bytes | None
    error: str | None

    @property
    def dead_letter(self) -> bool:
        return envelope.ERROR_STAGE in self.headers


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def render(record: dict[str, Any]) -> str:
    return json.dumps(record, default=json_default, ensure_ascii=False)


def tail(
    settings: HeadwaterSettings, topic: str, from_beginning: bool, idle_timeout: float | None
) -> Iterator[TailedRecord]:
    """Records of every partition of the topic, from its start or from now, until idle for `idle_timeout`."""
    decoder = AvroDeserializer(registry_client(settings.registry))
    # Refused credentials end here in one line (clients.AuthenticationFailed) before a consumer logs retries.
    cluster.wait_for_broker(settings.kafka, STARTUP_DEADLINE_S)
    consumer = clients.consumer(settings.kafka, f"headwater-tail-{uuid.uuid4().hex[:8]}")
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise ValueError(f"topic {topic} does not exist")
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, partition, start) for partition in metadata.partitions])
        idle = 0.0
        while idle_timeout is None or idle < idle_timeout:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                idle += 0.5
                continue
            idle = 0.0
            headers = {name: _text(value) or "" for name, value in cast(list[Any], message.headers() or [])}
            value = message.value()
            record: dict[str, Any] | None = None
            error: str | None = None
            if value is not None:
                try:
                    record = decoder.decode(value)
                except SerdeError as exc:
                    error = str(exc)
            yield TailedRecord(
                envelope.source_of(topic, message.partition() or 0, message.offset() or 0),
                _text(message.key()), headers, record, value, error,
            )
    finally:
        consumer.close()
