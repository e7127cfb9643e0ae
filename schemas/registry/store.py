"""The `_schemas` topic as the registry's only storage: create it, read it to the end, follow it, write to it.

Only the primary writes, each write in its own transaction under one fixed `transactional.id` per topic. Every
time the election makes a process primary it initialises a fresh transactional producer, which fences every older
producer with that id (a deposed primary's next write fails with ProducerFenced and is never reported done), and
then reads the topic to its end, so ids are minted knowing the old primary's last one. Readers use
`read_committed`: a write aborted by fencing is never applied anywhere.

A write returns only after its transaction committed AND the record has been read back by this process's follower
and applied to the state, so the HTTP client that caused it reads its own write.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from headwater.kafka import clients, cluster
from headwater.settings import KafkaSettings
from schemas.registry import errors
from schemas.registry.state import RegistryState

log = logging.getLogger(__name__)

READ_BACK_TIMEOUT_SECONDS = 30.0
WRITE_TIMEOUT_SECONDS = 30.0
TAKE_OVER_TIMEOUT_SECONDS = 30.0


def transactional_id(topic: str) -> str:
    """The one `transactional.id` every registry process writing `topic` uses: the newest primary fences the rest."""
    return f"headwater-registry-{topic}"


def not_primary(reason: str) -> errors.RegistryError:
    return errors.RegistryError(503, errors.UNKNOWN_PRIMARY, f"This registry {reason}; retry shortly")


class TopicLayoutError(RuntimeError):
    """The storage topic exists but cannot be used (more than one partition)."""


def ensure_topic(kafka: KafkaSettings, topic: str) -> None:
    """Create the single-partition compacted topic if missing (blocking: call from an executor); a refused login
    or TLS handshake raises at once instead of being retried."""
    admin = cluster.wait_for_broker(kafka, deadline=5)
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
        self._advanced = asyncio.Condition()
        # The election bumps `_term` each time it assigns this process the topic; the writer belongs to one term.
        self._primary = False
        self._term = 0
        self._writer_term = 0
        self._writer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, then read the topic to its end so the state is complete before anything is answered."""
        await asyncio.get_running_loop().run_in_executor(None, ensure_topic, self.kafka, self.topic)
        consumer = clients.aiokafka_consumer(
            self.kafka, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=20, isolation_level="read_committed"
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
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
        await self._retire_writer()
        if self._consumer is not None:
            await self._consumer.stop()
        self._follower = self._consumer = None

    async def end_offset(self) -> int:
        assert self._consumer is not None
        offsets = await self._consumer.end_offsets([self.partition])
        end: int = offsets[self.partition]
        return end

    async def catch_up(self) -> None:
        """Wait until everything committed to the topic so far (by any instance) is in the state."""
        await self.wait_applied(await self.end_offset() - 1)

    def follow_role(self, primary: bool) -> None:
        """The election's verdict, given on every rebalance; `take_over` acts on it under the caller's write lock."""
        if primary:
            self._term += 1
        self._primary = primary

    async def take_over(self) -> None:
        """Be ready to write as this term's primary, or refuse: call under the write lock before deciding a write.

        A new term fences the previous writer (any process's) by initialising a producer with the shared
        `transactional.id`, which also ends that writer's open transaction; only then is the topic read to its end,
        so the state holds every record the previous primary committed. A writer fenced during this term stays
        gone: this process answers 503 until the election assigns it the topic again.
        """
        if not self._primary:
            await self._retire_writer()
            raise not_primary("is not the primary")
        if self._writer_term != self._term:
            await self._retire_writer()
            writer = clients.aiokafka_producer(self.kafka, linger_ms=0, transactional_id=transactional_id(self.topic))
            try:
                async with asyncio.timeout(TAKE_OVER_TIMEOUT_SECONDS):  # aiokafka retries InitProducerId forever
                    await writer.start()
                await self.catch_up()
            except (KafkaError, TimeoutError) as exc:
                await writer.stop()
                log.warning("event=schemas_take_over_failed topic=%s error=%s", self.topic, type(exc).__name__)
                raise errors.RegistryError(
                    500, errors.STORE_ERROR, f"Could not take {self.topic} over as primary: {type(exc).__name__}"
                ) from exc
            except BaseException:
                await writer.stop()
                raise
            self._writer, self._writer_term = writer, self._term
            log.info(
                "event=schemas_writer_ready topic=%s term=%d offset=%d", self.topic, self._term, self.applied_offset
            )
        if self._writer is None:
            raise not_primary("was deposed as primary by a newer one")

    async def write(self, key: bytes, value: bytes | None) -> int:
        """Append one record in its own transaction and return its offset once it is committed and applied."""
        writer = self._writer
        if writer is None:
            raise not_primary("is not the primary")
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
                await writer.begin_transaction()
                metadata = await writer.send_and_wait(self.topic, value=value, key=key, partition=0)
                await writer.commit_transaction()
        except ProducerFenced as exc:
            log.warning("event=registry_fenced topic=%s term=%d", self.topic, self._writer_term)
            await self._retire_writer()
            raise not_primary("was deposed as primary by a newer one") from exc
        except Exception as exc:  # aiokafka raises KafkaError subclasses and timeouts
            log.error("event=schemas_write_failed topic=%s error=%s", self.topic, type(exc).__name__)
            # The outcome is unknown and the transaction may be open: take over afresh before the next write, which
            # ends that transaction and reads back whatever committed.
            self._writer_term = 0
            await self._retire_writer()
            raise errors.RegistryError(500, errors.STORE_ERROR, f"Error while writing to {self.topic}: {exc}") from exc
        offset: int = metadata.offset
        await self.wait_applied(offset)
        return offset

    async def _retire_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.stop()

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
