"""`headwater replay promote RUN`: the side topic's records copied into the live enriched topic, so the sinks load
them; keys, values and headers (with `hw-replay-run`) as they are.

Idempotent like the replay itself: each batch is one transaction under `transactional.id` `headwater-promote-<run>`
with the side topic's offsets committed to the group of the same name, so promoting twice copies nothing more.
"""

from __future__ import annotations

from typing import cast

from confluent_kafka import KafkaError, TopicPartition

from headwater.envelope import HeaderList
from headwater.kafka import clients
from headwater.kafka.errors import ProduceFailure
from headwater.settings import HeadwaterSettings


class PromoteFailed(RuntimeError):
    """The broker refused a record while promoting; what was committed stays, the rest can be promoted again."""


def promote_group(run_id: str) -> str:
    return f"headwater-promote-{run_id}"


def promote(settings: HeadwaterSettings, run_id: str, side_topic: str, live_topic: str) -> int:
    """Copy what the side topic holds now into `live_topic`; returns how many records this call copied."""
    group = promote_group(run_id)
    consumer = clients.consumer(settings.kafka, group, **{"isolation.level": "read_committed"})
    producer = clients.transactional_producer(settings.kafka, group)
    copied = 0
    try:
        producer.init_transactions(60)
        metadata = consumer.list_topics(side_topic, timeout=30).topics.get(side_topic)
        if metadata is None or metadata.error is not None:
            raise PromoteFailed(f"side topic {side_topic} does not exist")
        partitions = sorted(metadata.partitions)
        committed = consumer.committed([TopicPartition(side_topic, p) for p in partitions], timeout=30)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(side_topic, p), timeout=30)[1] for p in partitions}
        starts = {tp.partition: max(tp.offset, 0) for tp in committed}
        remaining = {p for p in partitions if starts[p] < ends[p]}
        consumer.assign([TopicPartition(side_topic, p, starts[p]) for p in sorted(remaining)])
        failures: list[ProduceFailure] = []
        while remaining:
            messages = consumer.consume(2000, 1.0)
            good = [m for m in messages if m.error() is None]
            errors = [e for m in messages if (e := m.error()) is not None and e.code() != KafkaError._PARTITION_EOF]
            if errors:
                raise PromoteFailed(f"reading {side_topic}: {errors[0].str()}")
            if good:
                producer.begin_transaction()
                next_offsets: dict[int, int] = {}
                for message in good:
                    headers = cast(HeaderList, message.headers() or [])
                    clients.send(producer, live_topic, message.value(), message.key(), headers,
                                 lambda failure, _message: failures.append(failure) if failure else None)
                    partition = message.partition() or 0
                    next_offsets[partition] = (message.offset() or 0) + 1
                producer.send_offsets_to_transaction(
                    [TopicPartition(side_topic, p, o) for p, o in next_offsets.items()],
                    consumer.consumer_group_metadata(), 30,
                )
                producer.flush(60)
                if failures:
                    producer.abort_transaction(30)
                    raise PromoteFailed(f"promoting {run_id}: the broker refused a record: {failures[0].error}")
                producer.commit_transaction(60)
                copied += len(good)
            for tp in consumer.position([TopicPartition(side_topic, p) for p in sorted(remaining)]):
                if tp.offset >= ends[tp.partition]:
                    remaining.discard(tp.partition)
        return copied
    finally:
        consumer.close()
        producer.close()
