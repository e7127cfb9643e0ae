"""Enrichment budgets shared by every worker of a pipeline, kept in Kafka.

Workers of one pipeline are separate processes (possibly on separate machines) in one consumer group, so the only
state they share is a Kafka topic: `_headwater.budgets`, one partition (one total order for every worker),
retained by time (two days: enough to rebuild the current day), with broker-assigned timestamps (LogAppendTime), so
the windows a record counts in come from one clock and grow with the offset.

Before a provider call a worker appends a RESERVE record (pipeline, step, worker, request id, estimated USD, the
limits) and reads the partition up to that record; every worker applies the same rule (`budget_book.BudgetBook`)
to the same records in offset order, so all of them agree on which reservations were granted (each judged by the
limits it carries, so they agree while a changed budget rolls out too), and only the last grant before a limit can
cross it. After the call the worker appends SETTLE (the actual USD). A worker that starts (or restarts) knows the
spend so far: it restores its step's latest checkpoint of today (`_headwater.budgets.checkpoints`) and reads the
records after it, or, with none, reads from the day's first record, found with `offsets_for_times`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from confluent_kafka.admin._config import ConfigResource

from headwater.kafka import clients, cluster
from headwater.kafka.config import KafkaSettings
from streams.enrich.base import ProviderUnavailable
from streams.enrich.budget_book import (
    BudgetBook,
    Decision,
    Grant,
    Refused,
    Window,
    to_micros,
    to_usd,
    window_start_ms,
)
from streams.enrich.budget_config import BudgetConfig

__all__ = ["BUDGET_TOPIC", "BudgetConfig", "BudgetLedger", "BudgetTopicError", "Grant", "LedgerUnavailable",
           "Refused", "Window"]

log = logging.getLogger(__name__)

BUDGET_TOPIC = "_headwater.budgets"
CHECKPOINT_TOPIC = "_headwater.budgets.checkpoints"
_TOPIC_CONFIG = {
    "cleanup.policy": "delete",
    "retention.ms": str(49 * 3_600_000),  # the current day from any moment of it, plus slack
    "message.timestamp.type": "LogAppendTime",
}
# Compacted to each step's latest checkpoint; hourly segments, so the part not yet compacted stays short to read.
_CHECKPOINT_CONFIG = {"cleanup.policy": "compact", "segment.ms": str(3_600_000), "min.cleanable.dirty.ratio": "0.1"}
CHECKPOINT_EVERY = 10_000
DECISION_TIMEOUT_SECONDS = 30.0
CLOCK_MARGIN_MS = 60_000
_FETCH_WAIT_MS = 20  # the broker answers a fetch as soon as a record arrives; this only bounds an idle poll


class BudgetTopicError(RuntimeError):
    """The budget topic exists but cannot give every worker the same order and clock."""


class LedgerUnavailable(ProviderUnavailable):
    """The budget topic did not answer in time: no call is made unbudgeted, so the step pauses like an outage."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _today_start_ms() -> int:
    """The UTC day's first millisecond, less a margin for a worker whose clock runs ahead of the broker's (the
    records before the day's start that this reads count in no window of today)."""
    return window_start_ms("day", _now_ms()) - CLOCK_MARGIN_MS


def ensure_budget_topic(kafka: KafkaSettings) -> None:
    """Create the budget topic if missing and check its layout (blocking: run it in a thread)."""
    admin = cluster.wait_for_broker(kafka, deadline=30)
    cluster.ensure_topics(
        admin, [BUDGET_TOPIC, CHECKPOINT_TOPIC], 1, {BUDGET_TOPIC: _TOPIC_CONFIG, CHECKPOINT_TOPIC: _CHECKPOINT_CONFIG}
    )
    partitions = cluster.partition_count(admin, BUDGET_TOPIC)
    if partitions != 1:
        raise BudgetTopicError(f"topic {BUDGET_TOPIC} has {partitions} partitions; budgets need exactly 1")
    resource = ConfigResource("topic", BUDGET_TOPIC)
    entry = admin.describe_configs([resource])[resource].result(timeout=30).get("message.timestamp.type")
    if entry is None or entry.value != "LogAppendTime":
        raise BudgetTopicError(
            f"topic {BUDGET_TOPIC} has message.timestamp.type={entry.value if entry else None}; budgets need "
            "LogAppendTime so every worker counts each record in the same window"
        )


class BudgetLedger:
    """One worker's view of a pipeline step's budget: reserve before a call, settle after it.

    Every `checkpoint_every` records of its step a worker writes the book's state, with the offset it holds up to,
    to the compacted `_headwater.budgets.checkpoints`: a worker that starts restores the latest checkpoint of today
    and reads only the records after it, instead of the whole day (read at 46,000 of its step's records a second
    here, while a one-call-per-record step at 1,280 calls a second writes 220 million a day).
    """

    def __init__(
        self, kafka: KafkaSettings, pipeline: str, step: str, config: BudgetConfig, worker_id: str, *,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> None:
        self.kafka = kafka
        self.pipeline = pipeline
        self.step = step
        self.config = config
        self.worker_id = worker_id
        self.checkpoint_every = checkpoint_every
        self.replayed_from = 0
        """The offset of `_headwater.budgets` this worker started reading at: the day's first, or after a checkpoint."""
        self._since_checkpoint = 0
        self._key = json.dumps([pipeline, step]).encode()
        self._book = BudgetBook(timedelta(seconds=config.reservation_timeout_seconds))
        self._partition = TopicPartition(BUDGET_TOPIC, 0)
        self._awaiting: dict[str, asyncio.Future[Decision]] = {}
        self._applied_offset = -1
        self._advanced = asyncio.Condition()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._follower: asyncio.Task[None] | None = None
        self._following = False

    async def start(self) -> None:
        """Create the topic if needed and read today's records, so `spent` and decisions know the day so far."""
        await asyncio.to_thread(ensure_budget_topic, self.kafka)
        self._producer = clients.aiokafka_producer(self.kafka, linger_ms=0)
        self._consumer = clients.aiokafka_consumer(
            self.kafka, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=_FETCH_WAIT_MS,
            auto_offset_reset="earliest",
        )
        try:
            await self._producer.start()
            await self._consumer.start()
            self._consumer.assign([self._partition])
            # The end first: with no record of today found after it, nothing before it was today's either.
            end = await self._end_offset()
            found = await self._consumer.offsets_for_times({self._partition: _today_start_ms()})
            first = found[self._partition].offset if found.get(self._partition) is not None else end
            checkpoint = await self._latest_checkpoint()
            # Only a checkpoint of today (not older than the day's first record) within the topic as it is now.
            if checkpoint is not None and first <= checkpoint[0] + 1 <= end:
                self._book.restore(checkpoint[1])
                first = checkpoint[0] + 1
            self.replayed_from = first
            self._consumer.seek(self._partition, first)
            self._applied_offset = first - 1
            self._following = True
            self._follower = asyncio.create_task(self._follow(), name=f"budget-{self.pipeline}-{self.step}")
            self._follower.add_done_callback(self._follower_ended)
            # As long as the records since the checkpoint or the day's start take to read, however many there are.
            await self._wait_applied(end - 1, limit_seconds=None)
        except BaseException:
            await self.close()
            raise
        log.info(
            "event=budget_loaded pipeline=%s step=%s worker=%s records=%d spent_hour=%.6f spent_day=%.6f",
            self.pipeline, self.step, self.worker_id, end - first, self.spent("hour"), self.spent("day"),
        )

    async def close(self) -> None:
        """Stop following the topic (a reservation still waiting for its decision fails at once) and flush the
        settlements not yet delivered."""
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()
        if self._consumer is not None:
            await self._consumer.stop()
        self._follower = self._producer = self._consumer = None

    async def reserve(self, estimate_usd: float) -> Grant | Refused:
        """Ask for `estimate_usd` before a call: one produce, then read the partition up to that record."""
        if estimate_usd < 0:
            raise ValueError(f"a budget reservation needs an estimate of at least 0 USD, not {estimate_usd}")
        producer = self._started()
        request_id = uuid.uuid4().hex
        decided: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._awaiting[request_id] = decided
        record = {"type": "reserve", "pipeline": self.pipeline, "step": self.step, "worker": self.worker_id,
                  "request": request_id, "usd": estimate_usd, "limits": self.config.limits(),
                  "sent_at": datetime.now(UTC).isoformat()}
        try:
            async with asyncio.timeout(DECISION_TIMEOUT_SECONDS):
                await producer.send_and_wait(BUDGET_TOPIC, json.dumps(record).encode(), key=self._key, partition=0)
                decision = await decided
        except (KafkaError, TimeoutError) as exc:
            # Whether the record landed is unknown; if it did and was granted, it expires and is charged.
            log.warning("event=budget_unreachable pipeline=%s step=%s error=%s", self.pipeline, self.step,
                        type(exc).__name__)
            raise LedgerUnavailable(self.step, f"budget topic {BUDGET_TOPIC} did not answer: {exc!r}") from exc
        finally:
            self._awaiting.pop(request_id, None)
        if isinstance(decision, Refused):
            log.info("event=budget_refused pipeline=%s step=%s window=%s resets_at=%s", self.pipeline, self.step,
                     decision.window, decision.resets_at.isoformat())
        return decision

    async def settle(self, grant: Grant, actual_usd: float) -> None:
        """Charge what the call granted by `grant` actually cost, releasing the rest of its reservation.

        Delivery is not awaited: a settlement that never lands lets the reservation expire, charged at its estimate,
        which errs on the side of the budget."""
        producer = self._started()
        record = {"type": "settle", "pipeline": self.pipeline, "step": self.step, "worker": self.worker_id,
                  "request": grant.request_id, "usd": actual_usd}
        delivery = await producer.send(BUDGET_TOPIC, json.dumps(record).encode(), key=self._key, partition=0)
        delivery.add_done_callback(functools.partial(self._delivered, "settle"))

    def spent(self, window: Window) -> float:
        """USD spent in the current UTC hour or day, as far as this worker has read."""
        return to_usd(self._book.spent(window, _now_ms()))

    def reserved(self, window: Window) -> float:
        """USD reserved by calls still running in the current UTC hour or day."""
        return to_usd(self._book.reserved(window, _now_ms()))

    async def catch_up(self) -> None:
        """Read every record written to the budget topic so far (by any worker)."""
        self._started()
        await self._wait_applied(await self._end_offset() - 1)

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None or self._follower is None:
            raise RuntimeError("budget ledger is not started")
        if self._follower.done():
            raise LedgerUnavailable(self.step, f"budget topic {BUDGET_TOPIC} follower stopped")
        return self._producer

    async def _end_offset(self) -> int:
        assert self._consumer is not None
        offsets = await self._consumer.end_offsets([self._partition])
        end: int = offsets[self._partition]
        return end

    async def _wait_applied(self, offset: int, limit_seconds: float | None = DECISION_TIMEOUT_SECONDS) -> None:
        async with asyncio.timeout(limit_seconds), self._advanced:
            await self._advanced.wait_for(lambda: self._applied_offset >= offset or not self._following)
        if self._applied_offset < offset:
            raise LedgerUnavailable(self.step, f"budget topic {BUDGET_TOPIC} follower stopped")

    async def _latest_checkpoint(self) -> tuple[int, dict[str, Any]] | None:
        """This step's latest checkpoint: the offset of `_headwater.budgets` it holds up to, and the book's state."""
        reader = clients.aiokafka_consumer(self.kafka, group_id=None, enable_auto_commit=False,
                                           fetch_max_wait_ms=_FETCH_WAIT_MS, auto_offset_reset="earliest")
        partition = TopicPartition(CHECKPOINT_TOPIC, 0)
        latest: bytes | None = None
        try:
            await reader.start()
            reader.assign([partition])
            end = (await reader.end_offsets([partition]))[partition]
            # An explicit offset: `seek_to_beginning` right after `assign` can resolve to the end instead.
            reader.seek(partition, (await reader.beginning_offsets([partition]))[partition])
            while await reader.position(partition) < end:
                batches = await reader.getmany(partition, timeout_ms=1000)
                for record in batches.get(partition, []):
                    if record.key == self._key:
                        latest = record.value
        finally:
            await reader.stop()
        if latest is None:
            return None
        checkpoint = json.loads(latest)
        return int(checkpoint["offset"]), checkpoint["book"]

    async def _checkpoint(self, producer: AIOKafkaProducer) -> None:
        """The book's state as of the last record applied; not awaited, since a lost checkpoint only means a longer
        read at the next start."""
        value = json.dumps({"offset": self._applied_offset, "worker": self.worker_id, "book": self._book.snapshot()})
        delivery = await producer.send(CHECKPOINT_TOPIC, value.encode(), key=self._key, partition=0)
        delivery.add_done_callback(functools.partial(self._delivered, "checkpoint"))
        self._since_checkpoint = 0

    async def _follow(self) -> None:
        assert self._consumer is not None and self._producer is not None
        try:
            while True:
                batches = await self._consumer.getmany(self._partition, timeout_ms=1000)
                for record in batches.get(self._partition, []):
                    if record.key == self._key:
                        self._apply(record)
                        self._since_checkpoint += 1
                    self._applied_offset = record.offset
                if self._since_checkpoint >= self.checkpoint_every:
                    await self._checkpoint(self._producer)
                async with self._advanced:
                    self._advanced.notify_all()
        finally:
            # Waiters see the follower gone instead of waiting for records it will never apply.
            self._following = False
            async with self._advanced:
                self._advanced.notify_all()

    def _apply(self, record: ConsumerRecord[Any, Any]) -> None:
        entry = json.loads(record.value)
        micros = to_micros(float(entry["usd"]))
        if entry["type"] == "reserve":
            limits = {window: to_micros(float(usd)) for window, usd in entry["limits"].items()}
            decision = self._book.reserve(entry["request"], micros, record.timestamp, limits)
            waiting = self._awaiting.get(entry["request"])
            if waiting is not None and not waiting.done():
                waiting.set_result(decision)
        elif entry["type"] == "settle":
            self._book.settle(entry["request"], micros, record.timestamp)

    def _follower_ended(self, follower: asyncio.Task[None]) -> None:
        reason = "ledger closed" if follower.cancelled() else f"follower failed: {follower.exception()!r}"
        if not follower.cancelled():
            log.error("event=budget_follower_failed pipeline=%s step=%s error=%s", self.pipeline, self.step,
                      type(follower.exception()).__name__)
        for waiting in self._awaiting.values():
            if not waiting.done():
                waiting.set_exception(LedgerUnavailable(self.step, f"budget topic {BUDGET_TOPIC}: {reason}"))

    def _delivered(self, what: str, delivery: asyncio.Future[Any]) -> None:
        if not delivery.cancelled() and delivery.exception() is not None:
            log.warning("event=budget_%s_lost pipeline=%s step=%s error=%s", what, self.pipeline, self.step,
                        type(delivery.exception()).__name__)
