"""`headwater.consume`: a topic's records decoded through the registry, with key, headers, lineage and position.

Without a group, the partitions are assigned directly from the start position and nothing is committed. With a
group, the consumer joins it (the group's committed offsets win over `start` where they exist) and commits only when
told: `consumption.commit()` after the records were handled, so a crash re-reads them (at-least-once).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from headwater import envelope
from headwater.api.positions import Start, Until, parse_start, parse_until, resolve
from headwater.kafka import clients
from headwater.settings import HeadwaterSettings, load_settings
from schemas.client import registry_client
from schemas.serde import AvroDeserializer, SerdeError

_LINEAGE = "hw-"


class TopicNotFound(LookupError):
    """The topic does not exist."""


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    value: dict[str, Any] | None
    headers: dict[str, str]
    raw_value: bytes | None = field(repr=False)
    schema_id: int | None
    error: str | None

    @property
    def lineage(self) -> dict[str, str]:
        """Headwater's `hw-*` headers: source, pipeline, schemas, trace id, enrichment, quality, errors."""
        return {name: value for name, value in self.headers.items() if name.startswith(_LINEAGE)}

    @property
    def dead_letter(self) -> bool:
        return envelope.ERROR_STAGE in self.headers

    @property
    def source(self) -> str:
        return envelope.source_of(self.topic, self.partition, self.offset)

    def as_json(self, with_headers: bool = False) -> dict[str, Any]:
        """The record as one JSON object: position, key and value (and headers when asked)."""
        data: dict[str, Any] = {
            "topic": self.topic, "partition": self.partition, "offset": self.offset,
            "timestamp_ms": self.timestamp_ms, "key": self.key, "value": self.value,
        }
        if self.error is not None:
            data["error"] = self.error
        if with_headers:
            data["headers"] = self.headers
        return data


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


class Consumption:
    """An iterator over a topic's records between two positions; close it (or use `with`) when done."""

    def __init__(
        self, settings: HeadwaterSettings, topic: str, start: Start, until: Until, group: str | None,
        idle_timeout: float | None, poll_timeout: float = 1.0,
    ) -> None:
        self.topic = topic
        self.group = group
        self.idle_timeout = idle_timeout
        self._poll_timeout = poll_timeout
        self._decoder = AvroDeserializer(registry_client(settings.registry))
        self._consumer: Consumer = clients.consumer(
            settings.kafka, group or f"headwater-consume-{uuid.uuid4().hex[:8]}",
            **{"enable.partition.eof": False},
        )
        metadata = self._consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            self._consumer.close()
            raise TopicNotFound(f"topic {topic} does not exist")
        partitions = sorted(metadata.partitions)
        begin, self.stop_offsets = resolve(self._consumer, topic, partitions, start, until)
        if group is not None:
            committed = self._consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
            begin.update({tp.partition: tp.offset for tp in committed if tp.offset >= 0})
        self.start_offsets = begin
        self._next: dict[int, int] = dict(begin)
        self._consumer.assign([TopicPartition(topic, p, offset) for p, offset in begin.items()])
        self._done: set[int] = {
            p for p, offset in begin.items() if self.stop_offsets is not None and offset >= self.stop_offsets[p]
        }

    @property
    def planned(self) -> int | None:
        """How many records lie between start and stop (None when following)."""
        if self.stop_offsets is None:
            return None
        return sum(max(0, self.stop_offsets[p] - offset) for p, offset in self.start_offsets.items())

    def _record(self, message: Message) -> ConsumedRecord:
        headers = {name: _text(value) or "" for name, value in cast(list[tuple[str, bytes]], message.headers() or [])}
        raw = message.value()
        value: dict[str, Any] | None = None
        schema_id: int | None = None
        error: str | None = None
        if raw is not None:
            try:
                value, schema_id = self._decoder.decode_with_id(raw)
            except SerdeError as exc:
                error = str(exc)
        return ConsumedRecord(
            topic=message.topic() or self.topic, partition=message.partition() or 0, offset=message.offset() or 0,
            timestamp_ms=message.timestamp()[1], key=_text(message.key()), value=value,
            headers=headers, raw_value=raw, schema_id=schema_id, error=error,
        )

    def __iter__(self) -> Iterator[ConsumedRecord]:
        partitions = set(self.start_offsets)
        idle_since = time.monotonic()
        while self.stop_offsets is None or self._done != partitions:
            messages = self._consumer.consume(500, self._poll_timeout)
            if not messages:
                if self.idle_timeout is not None and time.monotonic() - idle_since >= self.idle_timeout:
                    return
                continue
            idle_since = time.monotonic()
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {self.topic}: {error.str()}")
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                if self.stop_offsets is not None and offset >= self.stop_offsets[partition]:
                    self._finish(partition)
                    continue
                self._next[partition] = offset + 1
                yield self._record(message)
                if self.stop_offsets is not None and offset + 1 >= self.stop_offsets[partition]:
                    self._finish(partition)

    def _finish(self, partition: int) -> None:
        if partition not in self._done:
            self._done.add(partition)
            self._consumer.pause([TopicPartition(self.topic, partition)])

    def commit(self) -> None:
        """Commit the position after every record yielded so far (only with a group)."""
        if self.group is None:
            raise ValueError("commit needs a consumer group: consume(..., group='name')")
        offsets = [TopicPartition(self.topic, p, offset) for p, offset in self._next.items()]
        self._consumer.commit(offsets=offsets, asynchronous=False)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> Consumption:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def consume(
    topic: str,
    *,
    settings: HeadwaterSettings | None = None,
    start: str | Start = "earliest",
    until: str | Until | None = "end",
    group: str | None = None,
    idle_timeout: float | None = None,
) -> Consumption:
    """Records of `topic` from `start` (earliest, latest, a time, or `P:OFFSET,...`) to `until` (`end`: the end
    offsets as of now; a time; `follow` or None: keep reading), decoded through the registry."""
    return Consumption(
        settings or load_settings(),
        topic,
        start if isinstance(start, Start) else parse_start(start),
        until if isinstance(until, Until) else parse_until(until if until is not None else "follow"),
        group,
        idle_timeout,
    )
