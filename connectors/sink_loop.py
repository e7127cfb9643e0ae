"""Runs one sink: consume a batch, decode it with the registry, write it, dead-letter what the sink refused, and
only then commit the consumer offsets. While the target is down the batch is retried with backoff (the consumer
stays in its group, paused) and nothing is committed, so a crash at any point loses no record."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException, Message, TopicPartition
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from connectors import metrics
from connectors.base import Rejected, RetryableError, Sink, SinkRecord
from headwater.envelope import HeaderList, dead_letter_headers
from headwater.kafka import clients
from headwater.kafka.producer import AckedProducer, ProduceError, dlq_topic
from headwater.settings import KafkaSettings, RegistrySettings
from schemas.client import registry_client
from schemas.serde import AvroDeserializer, SerdeError

log = logging.getLogger(__name__)

_BACKOFF = wait_exponential(multiplier=0.5, min=0.5, max=30)


def _topic(message: Message) -> str:
    return message.topic() or ""


def _partition(message: Message) -> int:
    partition = message.partition()
    return -1 if partition is None else partition


def _offset(message: Message) -> int:
    offset = message.offset()
    return -1 if offset is None else offset


def _as_bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


def _headers(message: Message) -> HeaderList:
    found = message.headers() or []
    pairs = found.items() if isinstance(found, dict) else found
    return [(name, _as_bytes(value)) for name, value in pairs]


class SinkLoop:
    def __init__(
        self,
        sink: Sink[Any],
        *,
        kafka: KafkaSettings,
        registry: RegistrySettings,
        group_id: str | None = None,
    ) -> None:
        self.sink = sink
        topics: list[str] = list(getattr(sink.config, "topics", []))
        self.topics = topics
        self._consumer = clients.consumer(
            kafka,
            group_id or f"headwater-connect-{sink.name}",
            **{
                "max.poll.interval.ms": 600_000,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "queued.max.messages.kbytes": 262_144,
            },
        )
        self._client = registry_client(registry)
        self._deserializer = AvroDeserializer(self._client)
        self._dead_letters = AckedProducer(kafka)
        self._subscribed = False
        self._stop = threading.Event()
        self.committed: dict[tuple[str, int], int] = {}
        self.written = 0
        self.dead_lettered = 0

    def _schema_text(self, schema_id: int) -> str:
        return str(self._client.get_schema(schema_id).schema_str)

    def _subscribe(self) -> None:
        if not self._subscribed:
            self._consumer.subscribe(self.topics)
            self._subscribed = True

    def run(self, stop: threading.Event) -> None:
        """Consume and write until `stop` is set."""
        self._stop = stop
        self._subscribe()
        log.info("event=sink_started sink=%s topics=%s", self.sink.name, ",".join(self.topics))
        while not stop.is_set():
            self.step()

    def step(self) -> int:
        """One batch: returns how many messages it handled."""
        self._subscribe()
        messages = self._consumer.consume(self.sink.batch_size, timeout=self.sink.flush_interval)
        messages = [m for m in messages if self._usable(m)]
        if messages:
            self._handle(messages)
        elif self.sink.pending_offsets() is not None:
            self._handle([])
        return len(messages)

    @staticmethod
    def _usable(message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if not error.retriable() and error.fatal():
            raise KafkaException(error)
        log.warning("event=consume_error reason=%s", error.str())
        return False

    def _decode(self, messages: Sequence[Message]) -> tuple[list[SinkRecord], list[Rejected]]:
        records: list[SinkRecord] = []
        rejected: list[Rejected] = []
        deserializer = self._deserializer
        for message in messages:
            raw_key: bytes | None = message.key()
            raw_value: bytes | None = message.value()
            value: dict[str, Any] | None = None
            schema_id: int | None = None
            record_failure: SerdeError | None = None
            if raw_value is not None:
                try:
                    value, schema_id = deserializer.decode_with_id(raw_value)
                except SerdeError as exc:
                    record_failure = exc
            headers = _headers(message)
            record = SinkRecord(
                topic=_topic(message),
                partition=_partition(message),
                offset=_offset(message),
                key=None if raw_key is None else raw_key.decode("utf-8", errors="replace"),
                value=value,
                schema_id=schema_id,
                raw_key=raw_key,
                raw_value=raw_value,
                headers=headers,
                timestamp_ms=message.timestamp()[1],
            )
            if record_failure is None:
                records.append(record)
            else:
                rejected.append(Rejected(record, type(record_failure).__name__, str(record_failure)))
        return records, rejected

    def _handle(self, messages: Sequence[Message]) -> None:
        records, rejected = self._decode(messages)
        rejected += self._write(records)
        if rejected:
            self._dead_letter(rejected)
        written = len(records) - sum(1 for r in rejected if r.record.value is not None)
        self.written += written
        metrics.RECORDS.labels(self.sink.name, "written").inc(written)
        self._commit(messages)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "event=sink_retry sink=%s attempt=%d wait_s=%.1f reason=%s", self.sink.name, state.attempt_number, wait, exc
        )

    def _stopped(self, _state: RetryCallState) -> bool:
        return self._stop.is_set()

    def _idle(self, seconds: float) -> None:
        """Wait while staying a live group member: partitions paused, consumer still polled."""
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)
        deadline = time.monotonic() + seconds
        try:
            while (remaining := deadline - time.monotonic()) > 0 and not self._stop.is_set():
                self._consumer.poll(min(remaining, 1.0))
        finally:
            if assignment:
                self._consumer.resume(assignment)

    def _write(self, records: list[SinkRecord]) -> list[Rejected]:
        retrying = Retrying(
            retry=retry_if_exception_type(RetryableError),
            wait=_BACKOFF,
            sleep=self._idle,
            stop=self._stopped,
            before_sleep=self._log_retry,
            reraise=True,
        )
        result: list[Rejected] = retrying(self.sink.write, records, self._schema_text)
        return result

    def _dead_letter(self, rejected: Sequence[Rejected]) -> None:
        def send_all() -> None:
            for item in rejected:
                record = item.record
                headers = dead_letter_headers(
                    record.headers,
                    stage="sink",
                    error_class=item.error_class,
                    message=item.message,
                    source=record.source,
                )
                self._dead_letters.send_dead_letter(dlq_topic(record.topic), record.raw_value, record.raw_key, headers)
            self._dead_letters.flush_acked()

        Retrying(
            retry=retry_if_exception_type(ProduceError),
            wait=_BACKOFF,
            sleep=self._idle,
            before_sleep=self._log_retry,
            reraise=True,
        )(send_all)
        self.dead_lettered += len(rejected)
        metrics.RECORDS.labels(self.sink.name, "dead_letter").inc(len(rejected))
        log.warning(
            "event=records_dead_lettered sink=%s count=%d first_reason=%s",
            self.sink.name,
            len(rejected),
            rejected[0].error_class,
        )

    def _commit(self, messages: Sequence[Message]) -> None:
        next_offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            next_offsets[(_topic(message), _partition(message))] = _offset(message) + 1
        pending = self.sink.pending_offsets()
        if pending is not None:
            for tp, first_unwritten in pending.items():
                next_offsets[tp] = first_unwritten
            next_offsets = {tp: o for tp, o in next_offsets.items() if o > self.committed.get(tp, -1)}
        if not next_offsets:
            return
        self._consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()], asynchronous=False
        )
        self.committed.update(next_offsets)

    def end_offsets(self) -> dict[tuple[str, int], int]:
        ends: dict[tuple[str, int], int] = {}
        metadata = self._consumer.list_topics(timeout=30)
        for topic in self.topics:
            if topic not in metadata.topics:
                continue
            for partition in metadata.topics[topic].partitions:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
                ends[(topic, partition)] = high
        return ends

    def run_until_caught_up(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Write until every partition's end offset as of now is committed."""
        targets = self.end_offsets()
        committed = self._consumer.committed([TopicPartition(t, p) for t, p in targets], timeout=30)
        for tp in committed:
            if tp.offset >= 0:
                self.committed[(tp.topic, tp.partition)] = tp.offset
        # A one-shot load assigns the partitions itself instead of waiting seconds for a group rebalance.
        self._consumer.assign([TopicPartition(tp.topic, tp.partition, tp.offset) for tp in committed])
        self._subscribed = True
        deadline = time.monotonic() + timeout
        while any(self.committed.get(tp, 0) < end for tp, end in targets.items() if end > 0):
            if stop is not None and stop.is_set():
                return
            self._stop = stop or self._stop
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink {self.sink.name} did not catch up with {self.topics} in {timeout:.0f}s")
            self.step()

    def close(self) -> None:
        try:
            self._consumer.close()
        finally:
            self._dead_letters.close()
            self.sink.close()
