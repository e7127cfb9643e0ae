"""Run a replay: the current pipeline over exactly the planned offsets, in the run's own consumer group.

Exactly once per run: the micro-batches go out in Kafka transactions (one about every `TRANSACTION_SECONDS`) under
`transactional.id` `headwater-replay-<run>`, each holding its batches' outputs and dead letters, the run's state
record and the input offsets (committed to the group `headwater-replay-<run>` through the transaction). A run killed
mid-way aborts (or never commits) its open transaction; `--resume` starts from the group's committed offsets, so the
target topic ends with each record once, and running a finished run id again writes nothing. The live pipeline's
group is never touched.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from headwater.envelope import HeaderList
from headwater.kafka import clients, cluster
from headwater.kafka.transactions import Outgoing, Transaction, commit_batch
from headwater.settings import HeadwaterSettings
from streams.replay.plan import ReplayPlan
from streams.replay.state import REPLAYS_TOPIC, ReplayState
from streams.runtime import batches
from streams.runtime.batches import WorkerOptions
from streams.runtime.config import PipelineConfig
from streams.runtime.engine import BatchResult, PipelineEngine
from streams.runtime.records import InMessage, OutMessage

log = logging.getLogger(__name__)
REPLAY_RUN = "hw-replay-run"
REPLAY_OF = "hw-replay-of"
TRANSACTION_SECONDS = 2.0
Progress = Callable[[ReplayState], None]


def replay_group(run_id: str) -> str:
    return f"headwater-replay-{run_id}"


def side_topics(config: PipelineConfig, run_id: str) -> tuple[str, str]:
    """`crm.contacts.backfill.<run>` and its dead letters `crm.contacts.backfill.<run>.dlq`."""
    domain, entity = config.output.topic.split(".")[:2]
    side = f"{domain}.{entity}.backfill.{run_id}"
    return side, f"{side}.dlq"


class ReplayFailed(RuntimeError):
    """The broker refused a transaction of the replay; the run stopped where its last commit left it."""


@dataclass
class _Target:
    output: str
    dead_letters: str


def in_message(message: Message) -> InMessage:
    return InMessage(
        message.topic() or "", message.partition() or 0, message.offset() or 0, message.key(), message.value(),
        cast(HeaderList, list(message.headers() or ())), message.timestamp()[1],
    )


# Which records of the read range a run takes, as what input, and which dead letter (if any) each one re-runs.
Admit = Callable[[Message], tuple[InMessage, str | None] | None]


def _as_read(message: Message) -> tuple[InMessage, str | None]:
    return in_message(message), None


class ReplayRun:
    """One replay run over `plan`, writing to `state.output_topic` and `state.dead_letter_topic`."""

    def __init__(self, config: PipelineConfig, settings: HeadwaterSettings, plan: ReplayPlan, state: ReplayState,
                 options: WorkerOptions | None = None, admit: Admit | None = None) -> None:
        self.config = config
        self.settings = settings
        self.plan = plan
        self.state = state
        self.options = options or WorkerOptions()
        self._admit = admit or _as_read
        self._target = _Target(state.output_topic, state.dead_letter_topic)
        self._run_header = state.run_id.encode()
        self._replay_of: dict[int, bytes] = {}

    def _positions(self, consumer: Consumer) -> dict[int, int]:
        """Where each planned partition continues: the group's committed offset, else the plan's start."""
        planned = {item.partition: item for item in self.plan.ranges}
        committed = consumer.committed([TopicPartition(self.plan.topic, p) for p in planned], timeout=30)
        positions = {p: item.start for p, item in planned.items()}
        for tp in committed:
            if tp.offset >= 0:
                positions[tp.partition] = min(max(tp.offset, planned[tp.partition].start), planned[tp.partition].end)
        return positions

    def _batches(self, consumer: Consumer, positions: dict[int, int], stop: threading.Event) -> Iterator[list[Message]]:
        ends = {item.partition: item.end for item in self.plan.ranges}
        open_partitions = {p for p, offset in positions.items() if offset < ends[p]}
        consumer.assign([TopicPartition(self.plan.topic, p, positions[p]) for p in sorted(open_partitions)])
        while open_partitions and not stop.is_set():
            messages = consumer.consume(self.config.batch.size, self.config.batch.linger_ms / 1000 or 0.05)
            batch: list[Message] = []
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("event=replay_consume_error run=%s error=%s", self.state.run_id, error.str())
                    continue
                partition = message.partition() or 0
                if partition in open_partitions and (message.offset() or 0) < ends[partition]:
                    batch.append(message)
            if batch:
                yield batch
            for tp in consumer.position([TopicPartition(self.plan.topic, p) for p in sorted(open_partitions)]):
                if tp.offset >= ends[tp.partition]:
                    open_partitions.discard(tp.partition)
                    consumer.pause([TopicPartition(self.plan.topic, tp.partition)])

    def _retarget(self, message: OutMessage) -> OutMessage:
        message.topic = self._target.output if message.kind == "output" else self._target.dead_letters
        message.headers = [(name, value) for name, value in message.headers if name not in (REPLAY_RUN, REPLAY_OF)]
        message.headers.append((REPLAY_RUN, self._run_header))
        replay_of = self._replay_of.get(id(message.origin))
        if replay_of is not None:
            message.headers.append((REPLAY_OF, replay_of))
        return message

    def _admitted(self, batch: list[Message]) -> list[InMessage]:
        """The batch's records to run through the stages, remembering which dead letter each one re-runs."""
        admitted: list[InMessage] = []
        self._replay_of.clear()
        for message in batch:
            found = self._admit(message)
            if found is None:
                continue
            record, replay_of = found
            if replay_of is not None:
                self._replay_of[id(record)] = replay_of.encode()
            admitted.append(record)
        return admitted

    def _send(self, transaction: Transaction, batch: list[Message], admitted: int, outputs: list[OutMessage],
              dead: int) -> None:
        """The batch's records and the run's new state into the open transaction, committed once it is
        `TRANSACTION_SECONDS` old: fewer, larger transactions, and the broker acknowledges one batch while the next
        one runs through the stages."""
        self.state.records_in += admitted
        self.state.records_out += len(outputs) - dead
        self.state.dead_lettered += dead
        records = [Outgoing(out.topic, out.value, out.key, out.headers) for out in outputs]
        transaction.send([*records, self._state_record()], batch)
        if transaction.age >= TRANSACTION_SECONDS:
            self._commit(transaction)

    def _commit(self, transaction: Transaction) -> None:
        failure = transaction.commit()
        if failure is not None:
            raise ReplayFailed(f"replay {self.state.run_id}: the broker refused a record: {failure.error}")

    def _state_record(self) -> Outgoing:
        return Outgoing(REPLAYS_TOPIC, self.state.encode(), self.state.run_id.encode())

    def _finish(self, producer: Producer, consumer: Consumer) -> None:
        self.state.status = "done"
        failure = commit_batch(producer, consumer, [self._state_record()], [])
        if failure is not None:
            raise ReplayFailed(f"replay {self.state.run_id}: the broker refused its state: {failure.error}")

    async def run(self, stop: threading.Event, progress: Progress | None = None) -> ReplayState:
        """Replay until the plan's ends (or `stop`); returns the run's state with its counts."""
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(None, batches.prepare, self.config, self.settings, self.options, stop)
        engine: PipelineEngine = prepared.engine
        admin = clients.admin(self.settings.kafka)
        partitions = cluster.partition_count(admin, self.config.output.topic)
        cluster.ensure_topics(admin, [self._target.output, self._target.dead_letters], partitions)
        consumer = clients.consumer(self.settings.kafka, replay_group(self.state.run_id),
                                    **{"isolation.level": "read_committed"})
        producer = clients.transactional_producer(
            self.settings.kafka, replay_group(self.state.run_id), max_message_bytes=max(prepared.max_bytes.values()),
        )
        try:
            await loop.run_in_executor(None, producer.init_transactions, 60)
            positions = await loop.run_in_executor(None, self._positions, consumer)
            batches_in = self._batches(consumer, positions, stop)
            transaction = Transaction(producer, consumer)
            while True:
                batch = await loop.run_in_executor(None, next, batches_in, None)
                if batch is None:
                    break
                admitted = self._admitted(batch)
                result = await engine.process(admitted) if admitted else BatchResult([], [])
                outputs = [self._retarget(message) for message in result.messages]
                await loop.run_in_executor(
                    None, self._send, transaction, batch, len(admitted), outputs, len(result.dead_letters)
                )
                if progress is not None:
                    progress(self.state)
            await loop.run_in_executor(None, self._commit, transaction)
            if not stop.is_set():
                await loop.run_in_executor(None, self._finish, producer, consumer)
        finally:
            consumer.close()
            producer.flush(10)
            producer.close()
            await engine.stop()
            engine.close()
        return self.state


def run_replay(config: PipelineConfig, settings: HeadwaterSettings, plan: ReplayPlan, state: ReplayState,
               stop: threading.Event, progress: Progress | None = None, admit: Admit | None = None) -> ReplayState:
    started = time.monotonic()
    finished = asyncio.run(ReplayRun(config, settings, plan, state, admit=admit).run(stop, progress))
    log.info("event=replay_finished run=%s in=%d out=%d dead_letters=%d seconds=%.1f", state.run_id,
             finished.records_in, finished.records_out, finished.dead_lettered, time.monotonic() - started)
    return finished
