"""One pipeline worker: consume a micro-batch, run the stages, produce, wait for the broker's acks, commit.

At-least-once: offsets are committed (synchronously, by this worker) only after every output and dead letter
derived from the batch was acknowledged. A crash before the commit replays the batch, so duplicates carry the same
`hw-source`. Consumer calls all run on one thread, so a rebalance (served inside `consume`) never finds a batch in
flight: the previous batch is committed before the next `consume`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from schemas.client import registry_client
from streams import envelope
from streams.pipeline import kafka_io, metrics
from streams.pipeline.config import PipelineConfig
from streams.pipeline.engine import BatchResult, PipelineEngine, StageSwitches
from streams.pipeline.records import InMessage, OutMessage
from streams.settings import HeadwaterSettings

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """What one worker did, for the summary of `headwater up` and for tests."""

    records_in: int = 0
    records_out: int = 0
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    first_batch_at: float | None = None
    last_batch_at: float | None = None

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_letters.values())


@dataclass(frozen=True)
class WorkerOptions:
    switches: StageSwitches = field(default_factory=StageSwitches)
    session_timeout_ms: int = 10_000
    startup_deadline_s: float = 300.0
    retry_max_s: float = 10.0
    consumer_overrides: dict[str, Any] = field(default_factory=dict)


class PipelineWorker:
    def __init__(
        self, config: PipelineConfig, settings: HeadwaterSettings, options: WorkerOptions | None = None
    ) -> None:
        self.config = config
        self.settings = settings
        self.options = options or WorkerOptions()
        self.stats = WorkerStats()
        self.assigned = 0
        self.running = False
        self._consumer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hw-consume-{config.name}")
        self._producer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hw-produce-{config.name}")
        self._engine: PipelineEngine | None = None
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._label = config.label
        self._halt = threading.Event()

    @property
    def ready(self) -> bool:
        return self.running and self.assigned > 0

    async def _on_thread(self, executor: ThreadPoolExecutor, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

    def _start_dependencies(self) -> None:
        """Blocking start-up: wait for broker and registry, create topics, build the stages and the clients."""
        deadline, halt = self.options.startup_deadline_s, self._halt
        admin = kafka_io.wait_for_broker(self.settings.kafka, deadline, halt)
        registry = registry_client(self.settings.registry)
        kafka_io.wait_for_registry(registry, self.settings.registry.url, deadline, halt)
        outputs = [self.config.output.topic, self.config.dlq_topic]
        kafka_io.ensure_topics(admin, outputs, kafka_io.partition_count(admin, self.config.input.topics[0]))
        limits = kafka_io.max_message_bytes(admin, outputs)
        engine = PipelineEngine(
            self.config, registry, self.options.switches,
            max_bytes=lambda topic: limits.get(topic, kafka_io.DEFAULT_MAX_BYTES),
        )
        log.info("event=pipeline_ready pipeline=%s schema_out=%d", self._label, engine.schema_out)
        self._engine = engine
        common = self.settings.kafka.confluent()
        self._producer = Producer({
            **common,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.size": max(1024, min(limits.values()) - 512),
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.timeout.ms": 60_000,
        })
        consumer = Consumer({
            **common,
            "group.id": self.config.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.options.session_timeout_ms,
            "heartbeat.interval.ms": max(500, self.options.session_timeout_ms // 5),
            "queued.max.messages.kbytes": 65536,
            **self.options.consumer_overrides,
        })
        consumer.subscribe(self.config.input.topics, on_assign=self._assigned, on_revoke=self._revoked)
        self._consumer = consumer

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = len(partitions)
        metrics.ASSIGNED_PARTITIONS.labels(self._label).set(self.assigned)
        log.info("event=partitions_assigned pipeline=%s count=%d", self._label, self.assigned)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = 0
        metrics.ASSIGNED_PARTITIONS.labels(self._label).set(0)
        log.info("event=partitions_revoked pipeline=%s count=%d", self._label, len(partitions))

    def _consume(self) -> list[InMessage]:
        assert self._consumer is not None
        batch = self.config.batch
        messages: list[Message] = self._consumer.consume(batch.size, batch.linger_ms / 1000)
        found: list[InMessage] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("event=consume_error pipeline=%s error=%s", self._label, error)
                continue
            found.append(InMessage(
                message.topic() or "", message.partition() or 0, message.offset() or 0, message.key(),
                message.value(), cast(list[tuple[str, bytes]], list(message.headers() or ())), message.timestamp()[1],
            ))
        return found

    async def run(self, stop: asyncio.Event) -> WorkerStats:
        """Process until `stop` is set; the batch in flight is finished and committed before returning."""
        halt_on_stop = asyncio.create_task(self._halt_on(stop))
        try:
            await self._on_thread(self._consumer_thread, self._start_dependencies)
        except Exception as exc:
            await self._close()
            if isinstance(exc, kafka_io.DependencyDown) and stop.is_set():
                return self.stats
            raise
        finally:
            halt_on_stop.cancel()
        self.running = True
        try:
            while not stop.is_set():
                batch = await self._on_thread(self._consumer_thread, self._consume)
                if not batch:
                    continue
                started = time.monotonic()
                result = await self._process(batch, stop)
                if result is None or not await self._deliver(result, stop):
                    log.info("event=batch_abandoned pipeline=%s records=%d reason=stopping", self._label, len(batch))
                    break
                await self._on_thread(self._consumer_thread, self._commit, batch)
                self._account(batch, result, started)
        finally:
            self.running = False
            await self._close()
        return self.stats

    async def _halt_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._halt.set()

    async def _process(self, batch: list[InMessage], stop: asyncio.Event) -> BatchResult | None:
        assert self._engine is not None
        delay = 0.2
        while True:
            try:
                return await self._engine.process(batch)
            except Exception as exc:  # only infrastructure failures reach here (records fail one by one inside)
                metrics.RETRIES.labels(self._label, type(exc).__name__).inc()
                log.warning(
                    "event=batch_retry pipeline=%s stage=process error=%s delay_s=%.1f",
                    self._label, type(exc).__name__, delay,
                )
                if await _stopped_within(stop, delay):
                    return None
                delay = min(delay * 2, self.options.retry_max_s)

    async def _deliver(self, result: BatchResult, stop: asyncio.Event) -> bool:
        """Produce until every message is acknowledged; an output the broker refuses as too large is dead-lettered."""
        assert self._producer is not None and self._engine is not None
        pending = result.messages
        delay = 0.2
        while pending:
            failed: list[tuple[KafkaError, Message]] = []

            def delivered(error: KafkaError | None, message: Message, failed: list[Any] = failed) -> None:
                if error is not None:
                    failed.append((error, message))

            by_source = self._produce(pending, delivered)
            while await self._on_thread(self._producer_thread, self._producer.flush, 1.0):
                continue
            pending = []
            transient = False
            for error, message in failed:
                headers = cast(list[tuple[str, bytes]], message.headers() or [])
                original = by_source[(message.topic() or "", envelope.header_value(headers, envelope.SOURCE))]
                if error.code() == KafkaError.MSG_SIZE_TOO_LARGE and original.kind == "output":
                    dead = self._engine.dead_letter(original.origin, "produce", "RecordTooLarge", str(error))
                    result.outputs.remove(original)
                    result.dead_letters.append(dead)
                    pending.append(dead)
                else:
                    transient = True
                    pending.append(original)
                    log.warning(
                        "event=produce_failed pipeline=%s topic=%s error=%s", self._label, original.topic, error
                    )
            if transient:
                metrics.RETRIES.labels(self._label, "produce").inc()
                if await _stopped_within(stop, delay):
                    return False
                delay = min(delay * 2, self.options.retry_max_s)
        return True

    def _produce(self, messages: list[OutMessage], callback: Any) -> dict[tuple[str, str | None], OutMessage]:
        assert self._producer is not None
        produce = self._producer.produce
        by_source: dict[tuple[str, str | None], OutMessage] = {}
        for message in messages:
            by_source[(message.topic, message.origin.source)] = message
            while True:
                try:
                    produce(
                        message.topic, message.value, message.key, headers=cast(Any, message.headers),
                        on_delivery=callback,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
        return by_source

    def _commit(self, batch: list[InMessage]) -> None:
        assert self._consumer is not None
        highest: dict[tuple[str, int], int] = {}
        for message in batch:
            key = (message.topic, message.partition)
            if message.offset >= highest.get(key, -1):
                highest[key] = message.offset
        offsets = [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in highest.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:  # a rebalance took the partitions: the next owner replays from the last commit
            log.warning("event=commit_failed pipeline=%s error=%s", self._label, exc)

    def _account(self, batch: list[InMessage], result: BatchResult, started: float) -> None:
        stats = self.stats
        stats.first_batch_at = stats.first_batch_at or started
        stats.last_batch_at = time.monotonic()
        name = self._label
        now_ms = time.time() * 1000
        stats.records_in += len(batch)
        stats.records_out += len(result.outputs)
        metrics.RECORDS.labels(name, "decode", "in").inc(len(batch))
        metrics.RECORDS.labels(name, "produce", "out").inc(len(result.outputs))
        latency = metrics.LATENCY_SECONDS.labels(name)
        for output in result.outputs:
            elapsed = now_ms - output.origin.timestamp_ms
            stats.latencies_ms.append(elapsed)
            latency.observe(elapsed / 1000)
        for dead in result.dead_letters:
            stats.dead_letters[(dead.stage, dead.reason)] += 1
            metrics.RECORDS.labels(name, dead.stage, "dead_letter").inc()
        metrics.BATCH_SECONDS.labels(name).observe(time.monotonic() - started)
        assert self._engine is not None
        for provider, cost in self._engine.enrich.cost_usd.items():
            metrics.ENRICH_COST.labels(provider).inc(cost)
            self._engine.enrich.cost_usd[provider] = 0.0

    async def _close(self) -> None:
        if self._consumer is not None:
            consumer = self._consumer
            await self._on_thread(self._consumer_thread, consumer.close)
        if self._producer is not None:
            await self._on_thread(self._producer_thread, self._producer.flush, 10.0)
            self._producer = None
        self._consumer = None
        if self._engine is not None:
            self._engine.close()
        self._consumer_thread.shutdown(wait=False)
        self._producer_thread.shutdown(wait=False)
        log.info(
            "event=worker_stopped pipeline=%s in=%d out=%d dead_letters=%d",
            self._label, self.stats.records_in, self.stats.records_out, self.stats.dead_lettered,
        )


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
