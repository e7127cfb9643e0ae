"""Consume-transform-produce in one Kafka transaction: a batch's records and the consumer's position after the
input it came from commit together or not at all, so a consumer restarted after a crash neither skips nor repeats
what a committed batch wrote (readers use `isolation.level=read_committed`)."""

from __future__ import annotations

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


def commit_batch(
    producer: Producer, consumer: Consumer, records: Iterable[Outgoing], consumed: Sequence[Message]
) -> ProduceFailure | None:
    """Write `records` and commit the group's position after `consumed` as one transaction; if the broker refuses a
    record the transaction is aborted (nothing of it is visible) and the first failure is returned."""
    failures: list[ProduceFailure] = []

    def delivered(failure: ProduceFailure | None, _message: Message | None) -> None:
        if failure is not None:
            failures.append(failure)

    producer.begin_transaction()
    for record in records:
        clients.send(producer, record.topic, record.value, record.key, record.headers, delivered)
    positions = positions_after(consumed)
    if positions:
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), TIMEOUT_S)
    producer.flush(TIMEOUT_S)
    if failures:
        producer.abort_transaction(TIMEOUT_S)
        return failures[0]
    producer.commit_transaction(TIMEOUT_S)
    return None
