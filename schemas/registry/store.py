"""The `_schemas` topic as the registry's only storage: create it, read it to the end, follow it, write to it.

A write returns only after the record is acknowledged by the broker (acks=all) AND has been read back by this
process's follower and applied to the state, so the HTTP client that caused it reads its own write.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from headwater.kafka import clients
from headwater.settings import KafkaSettings
from schemas.registry import errors
from schemas.registry.state import RegistryState

log = logging.getLogger(__name__)

READ_BACK_TIMEOUT_SECONDS = 30.0


class TopicLayoutError(RuntimeError):
    """The storage topic exists but cannot be used (more than one partition)."""


def ensure_topic(kafka: KafkaSettings, topic: str) -> None:
    """Create the single-partition compacted topic if missing (blocking: call from an executor)."""
    admin = clients.admin(kafka)
    metadata = admin.list_topics(timeout=5)
    existing = metadata.topics.get(topic)
    if existing is not None and existing.error is None:
        if len(existing.partitions) != 1:
            raise TopicLayoutError(f"topic {topic} has {len(existing.partitions)} partitions; the registry needs 1")
        return
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=-1, config={"cleanup.policy": "compact"})],
        operation_timeout=30,
    )
    try:
        futures[topic].result(timeout=30)
        log.info("event=schemas_topic_created topic=%s", topic)
    except Exception as exc:  # confluent-kafka wraps every admin failure in KafkaException
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


class SchemaLog:
    def __init__(self, kafka: KafkaSettings, topic: str, state: RegistryState) -> None:
        self.kafka = kafka
        self.topic = topic
        self.state = state
        self.partition = TopicPartition(topic, 0)
        self.applied_offset = -1
        self.synced = False
        self._advanced = asyncio.Condition()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, then read the topic to its end so the state is complete before anything is answered."""
        await asyncio.get_running_loop().run_in_executor(None, ensure_topic, self.kafka, self.topic)
        producer = clients.aiokafka_producer(self.kafka, linger_ms=0)
        consumer = clients.aiokafka_consumer(
            self.kafka, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=20, isolation_level="read_committed"
        )
        try:
            await producer.start()
            await consumer.start()
        except BaseException:
            await producer.stop()
            await consumer.stop()
            raise
        self._producer, self._consumer = producer, consumer
        try:
            consumer.assign([self.partition])
            await consumer.seek_to_beginning(self.partition)
            self._follower = asyncio.create_task(self._follow(), name="schemas-follower")
            end = await self.end_offset()
            await self.wait_applied(end - 1, limit_seconds=None)
        except BaseException:
            await self.stop()
            raise
        log.info("event=schemas_loaded topic=%s records=%d subjects=%d", self.topic, end, len(self.state.subjects))

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        for client in (self._producer, self._consumer):
            if client is not None:
                await client.stop()
        self._follower = self._producer = self._consumer = None

    async def end_offset(self) -> int:
        assert self._consumer is not None
        offsets = await self._consumer.end_offsets([self.partition])
        end: int = offsets[self.partition]
        return end

    async def catch_up(self) -> None:
        """Wait until everything written to the topic so far (by any instance) is in the state."""
        await self.wait_applied(await self.end_offset() - 1)
        self.synced = True

    def mark_stale(self) -> None:
        """Others may have written (e.g. a previous primary): catch up again before the next write."""
        self.synced = False

    async def ensure_synced(self) -> None:
        """Catch up only when needed: a primary reads its own writes back, so it stays current between them."""
        if not self.synced:
            await self.catch_up()

    async def write(self, key: bytes, value: bytes | None) -> int:
        assert self._producer is not None
        try:
            metadata = await self._producer.send_and_wait(self.topic, value=value, key=key, partition=0)
        except Exception as exc:  # aiokafka raises KafkaError subclasses and timeouts
            log.error("event=schemas_write_failed topic=%s error=%s", self.topic, type(exc).__name__)
            raise errors.RegistryError(500, errors.STORE_ERROR, f"Error while writing to {self.topic}: {exc}") from exc
        offset: int = metadata.offset
        await self.wait_applied(offset)
        return offset

    async def wait_applied(self, offset: int, limit_seconds: float | None = READ_BACK_TIMEOUT_SECONDS) -> None:
        try:
            async with asyncio.timeout(limit_seconds), self._advanced:
                await self._advanced.wait_for(lambda: self.applied_offset >= offset)
        except TimeoutError as exc:
            raise errors.RegistryError(
                500, errors.STORE_TIMEOUT, f"Timed out reading offset {offset} of {self.topic} back"
            ) from exc

    async def _follow(self) -> None:
        assert self._consumer is not None
        failures = 0
        while True:
            try:
                batches = await self._consumer.getmany(self.partition, timeout_ms=500)
            except Exception as exc:  # a broker hiccup must not end the follower; aiokafka reconnects
                failures += 1
                log.warning("event=schemas_follow_failed error=%s attempt=%d", type(exc).__name__, failures)
                await asyncio.sleep(min(10.0, 0.2 * 2**failures))
                continue
            failures = 0
            position = await self._consumer.position(self.partition)
            for message in batches.get(self.partition, []):
                self.state.apply(message.key, message.value)
            async with self._advanced:
                # position is the next offset to read; control records (transactions) leave gaps, hence not msg.offset
                self.applied_offset = max(self.applied_offset, position - 1)
                self._advanced.notify_all()
