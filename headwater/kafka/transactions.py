"""Consume-transform-produce in one Kafka transaction: a batch's records and the consumer's position after the
input it came from commit together or not at all, so a consumer restarted after a crash neither skips nor repeats
what a committed batch wrote (readers use `isolation.level=read_committed`)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from headwater.envelope import HeaderList
from headwater.kafka import clients
from headwater.kafka.errors import ProduceFailure

TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: HeaderList | None = None


def positions_after(consumed: Sequence[Message]) -> list[TopicPartition]:
    """Per topic-partition, the offset after the last consumed message: what a commit of `consumed` stores."""
    after: dict[tuple[str, int], int] = {}
    for message in consumed:
        key = (message.topic() or "", message.partition() or 0)
        after[key] = max(after.get(key, 0), (message.offset() or 0) + 1)
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in after.items()]


class Transaction:
    """A transaction that may span several batches: each batch's records are sent as they come (the broker
    acknowledges them while the caller works on the next batch), and `commit` stores the group's position after
    everything consumed since it began together with them, or aborts all of it if the broker refused a record."""

    def __init__(self, producer: Producer, consumer: Consumer) -> None:
        self._producer = producer
        self._consumer = consumer
        self._failures: list[ProduceFailure] = []
        self._consumed: list[Message] = []
        self._began: float | None = None

    @property
    def age(self) -> float:
        """Seconds since the open transaction began; 0 when none is open."""
        return 0.0 if self._began is None else time.monotonic() - self._began

    def _delivered(self, failure: ProduceFailure | None, _message: Message | None) -> None:
        if failure is not None:
            self._failures.append(failure)

    def send(self, records: Iterable[Outgoing], consumed: Sequence[Message]) -> None:
        if self._began is None:
            self._producer.begin_transaction()
            self._began = time.monotonic()
        for record in records:
            clients.send(self._producer, record.topic, record.value, record.key, record.headers, self._delivered)
        self._consumed.extend(consumed)
        self._producer.poll(0)

    def commit(self) -> ProduceFailure | None:
        """Commit what was sent since the transaction began; the first refusal (the transaction then aborted) or
        None. Nothing to do when none is open."""
        if self._began is None:
            return None
        positions = positions_after(self._consumed)
        if positions:
            self._producer.send_offsets_to_transaction(positions, self._consumer.consumer_group_metadata(), TIMEOUT_S)
        self._producer.flush(TIMEOUT_S)
        failure = self._failures[0] if self._failures else None
        if failure is not None:
            self._producer.abort_transaction(TIMEOUT_S)
        else:
            self._producer.commit_transaction(TIMEOUT_S)
        self._failures, self._consumed, self._began = [], [], None
        return failure


def commit_batch(
    producer: Producer, consumer: Consumer, records: Iterable[Outgoing], consumed: Sequence[Message]
) -> ProduceFailure | None:
    """Write `records` and commit the group's position after `consumed` as one transaction; if the broker refuses a
    record the transaction is aborted (nothing of it is visible) and the first failure is returned."""
    transaction = Transaction(producer, consumer)
    transaction.send(records, consumed)
    return transaction.commit()
