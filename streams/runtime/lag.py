"""Consumer lag per assigned input partition (`headwater_pipeline_consumer_lag_records`), for both runtimes.

Lag is the partition's high watermark (it arrives with every fetch, so the consumer knows it without asking the broker)
minus the worker's place in it: the direct runtime's consumer position (what the loop has taken), the Faust runtime's
last commit (aiokafka's position runs ahead of the agent by its whole prefetch). Read about once a second, it costs
nothing per record.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping

from aiokafka.errors import IllegalStateError
from confluent_kafka import Consumer, KafkaException
from faust.exceptions import ConsumerNotStarted
from faust.types import AppT

from streams.runtime import metrics

log = logging.getLogger(__name__)

REFRESH_S = 1.0
Partition = tuple[str, int]


def lag(high_watermark: int | None, position: int | None) -> int | None:
    """Records between the position and the end of the partition; None while either is unknown (before the first
    fetch librdkafka reports negative sentinels, aiokafka None)."""
    if high_watermark is None or position is None or high_watermark < 0 or position < 0:
        return None
    return max(0, high_watermark - position)


class LagGauge:
    """The lag gauges of one pipeline: `set` publishes what was read from the consumer (every REFRESH_S) and
    `forget` drops the series of partitions this worker no longer owns (another worker now reports them)."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self._shown: set[Partition] = set()

    def set(self, lags: Mapping[Partition, int | None]) -> None:
        for (topic, partition), records in lags.items():
            if records is not None:
                metrics.CONSUMER_LAG.labels(self.pipeline, topic, str(partition)).set(records)
                self._shown.add((topic, partition))

    def forget(self, partitions: Iterable[Partition]) -> None:
        for topic, partition in partitions:
            if (topic, partition) in self._shown:
                self._shown.discard((topic, partition))
                metrics.CONSUMER_LAG.remove(self.pipeline, topic, str(partition))


def of_confluent_consumer(consumer: Consumer) -> dict[Partition, int | None]:
    """The direct runtime's lags, on its consumer thread: librdkafka's cached high watermarks minus the positions; a
    partition nothing was read from yet is measured from its committed offset (one broker round trip, idle
    partitions only). Empty while a rebalance takes the assignment away; the next refresh reads the new one."""
    lags: dict[Partition, int | None] = {}
    try:
        positions = consumer.position(consumer.assignment())
        unread = [tp for tp in positions if tp.offset < 0]
        if unread:
            positions = [tp for tp in positions if tp.offset >= 0] + consumer.committed(unread, timeout=1.0)
        for tp in positions:
            watermarks = consumer.get_watermark_offsets(tp, cached=True)
            lags[(tp.topic, tp.partition)] = lag(watermarks[1] if watermarks else None, tp.offset)
    except KafkaException as exc:
        log.debug("event=lag_unavailable error=%s", exc)
        return {}
    return lags


async def of_faust_app(app: AppT, topics: Collection[str]) -> dict[Partition, int | None]:
    """The Faust runtime's lags, of the assigned partitions of `topics`: aiokafka's last fetched high watermarks
    minus the offsets Faust committed (its monitor's `tp_committed_offsets`, the acked ones); a partition with no
    commit yet is measured from the fetch position. Not the position alone: aiokafka fetches far ahead of what
    the agent has processed. Empty before the consumer started or while a rebalance moves a partition (aiokafka
    refuses, and in `highwater` asserts, an unassigned one)."""
    consumer, committed = app.consumer, app.monitor.tp_committed_offsets
    lags: dict[Partition, int | None] = {}
    try:
        for tp in consumer.assignment():
            if tp.topic in topics:
                done = committed.get(tp)
                if done is None:
                    done = await consumer.position(tp)
                lags[(tp.topic, tp.partition)] = lag(consumer.highwater(tp), done)
    except (ConsumerNotStarted, IllegalStateError, AssertionError) as exc:
        log.debug("event=lag_unavailable error=%r", exc)
        return {}
    return lags
