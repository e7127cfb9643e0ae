"""The direct runtime (`headwater run --runtime direct`): one confluent-kafka consume loop per pipeline.

Consume a micro-batch, run the stages, produce, wait for the broker's acks, commit. It skips Faust's per-event
path (one awaited callback per message), which is why it is the higher-throughput runtime.

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
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from headwater.dependencies import DependencyDown
from headwater.kafka import clients
from headwater.kafka.errors import ProduceFailure
from headwater.settings import HeadwaterSettings
from streams.runtime import batches, lag, metrics
from streams.runtime.batches import WorkerOptions, WorkerStats
from streams.runtime.config import PipelineConfig
from streams.runtime.engine import PipelineEngine
from streams.runtime.failures import Health, PipelineFailed, bug
from streams.runtime.records import InMessage, OutMessage

log = logging.getLogger(__name__)


class PipelineWorker:
    def __init__(
        self, config: PipelineConfig, settings: HeadwaterSettings, options: WorkerOptions | None = None
    ) -> None:
        self.config = config
        self.settings = settings
        self.options = options or WorkerOptions()
        self.stats = WorkerStats()
        self.health = Health()
        self.assigned = 0
        self.running = False
        self._consumer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hw-consume-{config.name}")
        self._producer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hw-produce-{config.name}")
        self._engine: PipelineEngine | None = None
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._label = config.label
        self._halt = threading.Event()
        self._lag = lag.LagGauge(self._label)

    @property
    def ready(self) -> bool:
        return self.running and self.assigned > 0 and self.health.reason is None

    async def _on_thread(self, executor: ThreadPoolExecutor, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

    def _start_dependencies(self) -> None:
        """Blocking start-up: broker, registry and stages (see `batches.prepare`), then the Kafka clients."""
        prepared = batches.prepare(self.config, self.settings, self.options, self._halt)
        self._engine, limits = prepared.engine, prepared.max_bytes
        self._producer = clients.producer(
            self.settings.kafka,
            max_message_bytes=max(limits.values()),
            **{"batch.size": max(1024, min(limits.values()) - 512)},
        )
        consumer = clients.consumer(self.settings.kafka, self.config.group, **{
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
        self._lag.forget((tp.topic, tp.partition) for tp in partitions)
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
            assert self._engine is not None
            await self._engine.start()
        except Exception as exc:
            await self._close()
            if isinstance(exc, DependencyDown) and stop.is_set():
                return self.stats
            raise
        finally:
            halt_on_stop.cancel()
        assert self._engine is not None
        engine, retry_max_s = self._engine, self.options.retry_max_s
        self.running = True
        lag_reports = asyncio.create_task(self._report_lag(stop))
        try:
            while not stop.is_set():
                consuming = time.monotonic()
                batch = await self._on_thread(self._consumer_thread, self._consume)
                if not batch:
                    continue
                started = time.monotonic()
                result = await batches.process(engine, batch, stop, retry_max_s, self.health)
                delivering = time.monotonic()
                if result is None or not await batches.deliver(result, engine, self._send, stop, retry_max_s):
                    log.info("event=batch_abandoned pipeline=%s records=%d reason=stopping", self._label, len(batch))
                    break
                committing = time.monotonic()
                await self._on_thread(self._consumer_thread, self._commit, batch)
                result.stage_seconds.update(consume=started - consuming, deliver=committing - delivering,
                                            commit=time.monotonic() - committing)
                batches.account(self.stats, engine, batch, result, started)
        except PipelineFailed:
            raise
        except Exception as exc:  # a bug outside the stages: stop with its traceback instead of a restart loop
            raise bug(self._label, exc, self.health) from None
        finally:
            self.running = False
            lag_reports.cancel()
            await self._close()
        return self.stats

    async def _report_lag(self, stop: asyncio.Event) -> None:
        """Every second, also while a batch waits for a dependency (consumer calls stay on the consumer thread)."""
        while not stop.is_set():
            self._lag.set(await self._on_thread(self._consumer_thread, lag.of_confluent_consumer, self._consumer))
            await asyncio.sleep(lag.REFRESH_S)

    async def _halt_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._halt.set()

    async def _send(self, messages: list[OutMessage]) -> list[tuple[OutMessage, ProduceFailure]]:
        """Produce and flush on the producer thread; the messages the broker or librdkafka refused, classified.

        Every failure, whether `produce()` refused the record or the broker's delivery report did, reaches the
        closure of its own message, so no lookup by header is needed to match it.
        """
        producer = self._producer
        assert producer is not None
        failures: list[tuple[OutMessage, ProduceFailure]] = []

        def on_delivery_of(message: OutMessage) -> clients.DeliveryCallback:
            def delivered(failure: ProduceFailure | None, _reported: Message | None) -> None:
                if failure is not None:
                    failures.append((message, failure))
            return delivered

        def produce_all() -> None:
            for message in messages:
                clients.send(
                    producer, message.topic, message.value, message.key, message.headers,
                    on_delivery_of(message), self._halt,
                )
            while producer.flush(1.0):
                continue

        await self._on_thread(self._producer_thread, produce_all)
        return failures

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

    async def _close(self) -> None:
        if self._consumer is not None:
            consumer = self._consumer
            await self._on_thread(self._consumer_thread, consumer.close)
        if self._producer is not None:
            await self._on_thread(self._producer_thread, self._producer.flush, 10.0)
            self._producer = None
        self._consumer = None
        if self._engine is not None:
            await self._engine.stop()
            self._engine.close()
        self._consumer_thread.shutdown(wait=False)
        self._producer_thread.shutdown(wait=False)
        batches.log_stopped(self.config, self.stats)
