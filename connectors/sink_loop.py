"""Runs one sink: consume a batch, decode it with the registry, write it, dead-letter what the sink refused, and
only then commit the consumer offsets. While the target is down the batch is retried with backoff (the consumer
stays in its group, paused) and nothing is committed, so a crash at any point loses no record.

A rebalance can take partitions away between two steps or while a batch is retried (the group callbacks run inside
`consume()`/`poll()` on this thread). From then on the loop writes nothing more of those partitions, the sink
forgets what it buffered for them, and their offsets are never committed by this loop: the next owner re-reads
from the last commit. That holds even when a partition comes back in the same rebalance: its fetch restarts from
the committed offset, so the records of it in the batch in hand are read again rather than written now."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
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
# A write may take minutes (a large batch, a slow warehouse); the connection's own settings take precedence.
_CONSUMER_DEFAULTS: dict[str, Any] = {
    "max.poll.interval.ms": 600_000,
    "fetch.max.bytes": 64 * 1024 * 1024,
    "queued.max.messages.kbytes": 262_144,
}
# The group moved on without this consumer (it stalled past max.poll.interval.ms, or a rebalance is under way):
# its partitions belong to another member, which re-reads them from the last commit.
_COMMIT_FENCED = frozenset(
    {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS}
)


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


def _pairs(partitions: Sequence[TopicPartition]) -> list[tuple[str, int]]:
    return [(tp.topic, tp.partition) for tp in partitions]


def _listed(partitions: Sequence[tuple[str, int]]) -> str:
    return ",".join(f"{topic}/{partition}" for topic, partition in sorted(partitions)) or "-"


def _headers(message: Message) -> HeaderList:
    found = message.headers()
    if not found:
        return []
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
        configured = kafka.properties()
        self._consumer = clients.consumer(
            kafka,
            group_id or f"headwater-connect-{sink.name}",
            **{name: value for name, value in _CONSUMER_DEFAULTS.items() if name not in configured},
        )
        self._client = registry_client(registry)
        self._deserializer = AvroDeserializer(self._client)
        self._dead_letters = AckedProducer(kafka)
        self._subscribed = False
        self._stop = threading.Event()
        self.owned: set[tuple[str, int]] = set()
        self._released_in_batch: set[tuple[str, int]] = set()
        self.committed: dict[tuple[str, int], int] = {}
        self.written = 0
        self.dead_lettered = 0

    def _schema_text(self, schema_id: int) -> str:
        return str(self._client.get_schema(schema_id).schema_str)

    def _subscribe(self) -> None:
        if not self._subscribed:
            self._consumer.subscribe(
                self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            self._subscribed = True

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assigned = _pairs(partitions)
        self.owned.update(assigned)
        log.info("event=partitions_assigned sink=%s partitions=%s", self.sink.name, _listed(assigned))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(_pairs(partitions), "revoked")

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(_pairs(partitions), "lost")

    def _release(self, partitions: list[tuple[str, int]], how: str) -> None:
        """Give partitions up for good: if they come back, they start from the broker's committed offset with no
        state left over from the earlier ownership."""
        self.owned.difference_update(partitions)
        self._released_in_batch.update(partitions)
        for tp in partitions:
            self.committed.pop(tp, None)
        self.sink.revoked(partitions)
        log.info("event=partitions_%s sink=%s partitions=%s", how, self.sink.name, _listed(partitions))

    def _still_ours(self, tp: tuple[str, int]) -> bool:
        """Whether the batch in hand may write and commit this partition."""
        return tp in self.owned and tp not in self._released_in_batch

    def _owned_only(self, records: Sequence[SinkRecord]) -> list[SinkRecord]:
        return [r for r in records if self._still_ours((r.topic, r.partition))]

    def run(self, stop: threading.Event) -> None:
        """Consume and write until `stop` is set."""
        self._stop = stop
        self._subscribe()
        log.info("event=sink_started sink=%s topics=%s", self.sink.name, ",".join(self.topics))
        with metrics.running(self.sink.name):
            while not stop.is_set():
                self.step()

    def step(self) -> int:
        """One batch: returns how many messages it handled."""
        self._subscribe()
        messages = self._consumer.consume(self.sink.batch_size, timeout=self.sink.flush_interval)
        # What consume() returns comes from the assignment as it stands after any rebalance it served.
        self._released_in_batch.clear()
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
        # Runs once per record of every batch: the look-ups are hoisted out of the loop.
        decode = self._deserializer.decode_with_id
        keep = records.append
        for message in messages:
            raw_key: bytes | None = message.key()
            raw_value: bytes | None = message.value()
            value: dict[str, Any] | None = None
            schema_id: int | None = None
            record_failure: SerdeError | None = None
            if raw_value is not None:
                try:
                    value, schema_id = decode(raw_value)
                except SerdeError as exc:
                    record_failure = exc
            record = SinkRecord(
                topic=_topic(message),
                partition=_partition(message),
                offset=_offset(message),
                key=None if raw_key is None else raw_key.decode("utf-8", errors="replace"),
                value=value,
                schema_id=schema_id,
                raw_key=raw_key,
                raw_value=raw_value,
                headers=_headers(message),
                timestamp_ms=message.timestamp()[1],
            )
            if record_failure is None:
                keep(record)
            else:
                rejected.append(Rejected(record, type(record_failure).__name__, str(record_failure)))
        return records, rejected

    def _handle(self, messages: Sequence[Message]) -> None:
        records, rejected = self._decode(messages)
        refused = self._write(records)
        # A retried write polls the consumer, so partitions may have been revoked meanwhile: what is left of
        # them is the next owner's to write.
        records = self._owned_only(records)
        rejected = [r for r in rejected if self._still_ours((r.record.topic, r.record.partition))] + refused
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
        paused = self._consumer.assignment()
        if paused:
            self._consumer.pause(paused)
        deadline = time.monotonic() + seconds
        try:
            while (remaining := deadline - time.monotonic()) > 0 and not self._stop.is_set():
                message = self._consumer.poll(min(remaining, 1.0))
                if message is not None and message.error() is None:
                    paused.append(self._hold(message))
        finally:
            # Resumed whether still assigned or not: librdkafka keeps a pause across a rebalance, so a partition
            # left paused here would stay stopped when it is assigned to this consumer again.
            if paused:
                self._consumer.resume(paused)

    def _hold(self, message: Message) -> TopicPartition:
        """A partition newly assigned by a rebalance during the wait is fetched: rewind it to this message and
        pause it, so the message is consumed once the wait is over instead of being skipped."""
        partition = TopicPartition(_topic(message), _partition(message), _offset(message))
        self._consumer.seek(partition)
        self._consumer.pause([partition])
        return partition

    def _write(self, records: list[SinkRecord]) -> list[Rejected]:
        retrying = Retrying(
            retry=retry_if_exception_type(RetryableError),
            wait=_BACKOFF,
            sleep=self._idle,
            stop=self._stopped,
            before_sleep=self._log_retry,
            reraise=True,
        )
        result: list[Rejected] = retrying(lambda: self.sink.write(self._owned_only(records), self._schema_text))
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
        # A revoked partition's offsets are its new owner's to commit; ours could move them backwards.
        next_offsets = {tp: o for tp, o in next_offsets.items() if self._still_ours(tp)}
        if not next_offsets:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()], asynchronous=False
            )
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() not in _COMMIT_FENCED:
                raise
            log.warning(
                "event=commit_refused sink=%s partitions=%s reason=%s",
                self.sink.name,
                _listed(list(next_offsets)),
                error.str(),
            )
            return
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
        self.owned = set(targets)
        self._subscribed = True
        deadline = time.monotonic() + timeout
        while not self._caught_up(targets):
            if stop is not None and stop.is_set():
                return
            self._stop = stop or self._stop
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink {self.sink.name} did not catch up with {self.topics} in {timeout:.0f}s")
            self.step()

    def _caught_up(self, targets: dict[tuple[str, int], int]) -> bool:
        """Every partition committed up to its target, or read past it with nothing left to write: a topic written
        by transactions ends with a commit marker, which no record's offset + 1 ever reaches."""
        behind = [tp for tp, end in targets.items() if end > 0 and self.committed.get(tp, 0) < end]
        if not behind:
            return True
        pending = self.sink.pending_offsets() or {}
        positions = self._consumer.position([TopicPartition(topic, partition) for topic, partition in behind])
        return all(
            tp.offset >= targets[(tp.topic, tp.partition)] and (tp.topic, tp.partition) not in pending
            for tp in positions
        )

    def close(self) -> None:
        try:
            self._consumer.close()
        finally:
            self._dead_letters.close()
            self.sink.close()
