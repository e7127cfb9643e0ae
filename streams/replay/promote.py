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
from headwater.kafka.transactions import Outgoing, commit_batch
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
        while remaining:
            messages = consumer.consume(2000, 1.0)
            good = [m for m in messages if m.error() is None]
            errors = [e for m in messages if (e := m.error()) is not None and e.code() != KafkaError._PARTITION_EOF]
            if errors:
                raise PromoteFailed(f"reading {side_topic}: {errors[0].str()}")
            if good:
                records = [Outgoing(live_topic, m.value(), m.key(), cast(HeaderList, m.headers() or [])) for m in good]
                failure = commit_batch(producer, consumer, records, good)
                if failure is not None:
                    raise PromoteFailed(f"promoting {run_id}: the broker refused a record: {failure.error}")
                copied += len(good)
            for tp in consumer.position([TopicPartition(side_topic, p) for p in sorted(remaining)]):
                if tp.offset >= ends[tp.partition]:
                    remaining.discard(tp.partition)
        return copied
    finally:
        consumer.close()
        producer.close()
