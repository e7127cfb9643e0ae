"""What every pipeline runtime (Faust agents or the direct confluent-kafka worker) does around the engine.

Start-up waits for broker and registry, then per micro-batch: run the stages (retrying infrastructure failures),
deliver every output and dead letter until the broker acknowledged it (an output the broker refuses for good
becomes a dead letter, a dead letter too large for its topic is truncated), and account the batch in the stats and
metrics. Only after `deliver` returned True may a runtime commit the batch's input offsets.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from headwater import envelope, oversized
from headwater.dependencies import DependencyDown
from headwater.kafka import clients, cluster
from headwater.kafka.errors import ProduceFailure
from headwater.settings import HeadwaterSettings
from schemas.client import registry_client, wait_for_registry
from streams.runtime import failures, metrics
from streams.runtime.config import PipelineConfig
from streams.runtime.engine import BatchResult, PipelineEngine, StageSwitches
from streams.runtime.failures import Health
from streams.runtime.latency import LatencyHistogram
from streams.runtime.records import InMessage, OutMessage

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """What one pipeline did, for the summary of `headwater up` and for tests; bounded whatever the record count."""

    records_in: int = 0
    records_out: int = 0
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    latency_ms: LatencyHistogram = field(default_factory=LatencyHistogram)
    first_batch_at: float | None = None
    last_batch_at: float | None = None
    stage_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

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


class RunningPipeline(Protocol):
    """One pipeline inside a runtime, as `headwater up` and the tests watch it."""

    config: PipelineConfig
    stats: WorkerStats
    health: Health

    @property
    def ready(self) -> bool: ...


@dataclass(frozen=True)
class Prepared:
    engine: PipelineEngine
    max_bytes: dict[str, int]


def prepare(
    config: PipelineConfig, settings: HeadwaterSettings, options: WorkerOptions, halt: threading.Event | None = None
) -> Prepared:
    """Blocking start-up: wait for broker and registry (backoff), create the output topics, build the stages.

    A dead-letter topic created here accepts the largest input record plus its error headers, so a record the
    input took is dead-lettered whole.
    """
    deadline = options.startup_deadline_s
    admin = cluster.wait_for_broker(settings.kafka, deadline, halt)
    registry = registry_client(settings.registry)
    wait_for_registry(registry, settings.registry.url, deadline, halt)
    existing = admin.list_topics(timeout=10).topics
    inputs = cluster.max_message_bytes(admin, [topic for topic in config.input.topics if topic in existing])
    dead_letter_limit = max(inputs.values(), default=clients.DEFAULT_MAX_MESSAGE_BYTES) + oversized.DEAD_LETTER_HEADROOM
    outputs = [config.output.topic, config.dlq_topic]
    cluster.ensure_topics(
        admin, outputs, cluster.partition_count(admin, config.input.topics[0]),
        configs={config.dlq_topic: {"max.message.bytes": str(dead_letter_limit)}},
    )
    limits = cluster.max_message_bytes(admin, outputs)
    if limits[config.dlq_topic] < dead_letter_limit:  # an existing topic is left as it is
        log.warning(
            "event=dead_letter_topic_small pipeline=%s topic=%s max_message_bytes=%d wanted=%d "
            "consequence=larger_dead_letters_truncated", config.label, config.dlq_topic, limits[config.dlq_topic],
            dead_letter_limit,
        )
    claim_check = config.dead_letters.claim_check
    engine = PipelineEngine(
        config, registry, options.switches,
        max_bytes=lambda topic: limits.get(topic, clients.DEFAULT_MAX_MESSAGE_BYTES),
        claim_check=oversized.ClaimCheck(claim_check) if claim_check is not None else None,
        enrich_settings=settings.enrich,
        kafka=settings.kafka,
    )
    log.info("event=pipeline_ready pipeline=%s schema_out=%d dead_letter_limit=%d",
             config.label, engine.schema_out, limits[config.dlq_topic])
    return Prepared(engine, limits)


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def process(
    engine: PipelineEngine, batch: Sequence[InMessage], stop: asyncio.Event, retry_max_s: float, health: Health
) -> BatchResult | None:
    """The stages over the batch; None once `stop` is set.

    An infrastructure failure (see `failures.is_infrastructure`) is retried with backoff up to `retry_max_s`: the
    batch waits, so nothing is dead-lettered or committed meanwhile, and `health` says what it waits for. Anything
    else is a bug: logged with its traceback and raised as `PipelineFailed`, so the runtime stops and exits non-zero.
    """
    label = engine.config.label
    if engine.quality is not None and not await engine.quality.resumed(stop):  # `on_fail: pause` holds it here
        return None
    delay = 0.2
    try:
        while True:
            try:
                result = await engine.process(batch)
            except Exception as exc:  # records fail one by one inside the stages: this is a dependency or a bug
                if not failures.is_infrastructure(exc):
                    raise failures.bug(label, exc, health, records=len(batch)) from None
                health.waiting_for = failures.describe(exc)
                metrics.RETRIES.labels(label, type(exc).__name__).inc()
                metrics.WAITING.labels(label).set(1)
                log.warning(
                    "event=batch_retry pipeline=%s records=%d error=%s delay_s=%.1f",
                    label, len(batch), health.waiting_for, delay,
                )
                if await stopped_within(stop, delay):
                    return None
                delay = min(delay * 2, retry_max_s)
                continue
            if health.waiting_for is not None:
                log.info("event=dependency_recovered pipeline=%s records=%d", label, len(batch))
            return result
    finally:
        health.waiting_for = None
        metrics.WAITING.labels(label).set(0)


Sender = Callable[[list[OutMessage]], Awaitable[list[tuple[OutMessage, ProduceFailure]]]]


class _Stopped(Exception):
    """`stop` was set while an upload was being retried."""


async def _claim_check(engine: PipelineEngine, dead: OutMessage, stop: asyncio.Event, retry_max_s: float) -> str:
    """Upload the whole original, retried with backoff while the bucket is unreachable; its `s3://` URI."""
    assert engine.claim_check is not None
    delay = 0.2
    while True:
        try:
            return await asyncio.to_thread(engine.claim_check.store, dead.origin.source, dead.origin.value or b"")
        except DependencyDown as exc:
            metrics.RETRIES.labels(engine.config.label, "claim_check").inc()
            log.warning("event=claim_check_retry pipeline=%s error=%s delay_s=%.1f", engine.config.label, exc, delay)
            if await stopped_within(stop, delay):
                raise _Stopped from exc
            delay = min(delay * 2, retry_max_s)


async def _fit(engine: PipelineEngine, dead: OutMessage, limit: int, stop: asyncio.Event, retry_max_s: float) -> None:
    """Cut a dead letter to `limit` bytes in place: the original's first bytes, its size and SHA-256, and (with a
    claim check configured) the whole original uploaded first, its URI in the headers."""
    original = dead.origin.value or b""
    claim = envelope.header_value(dead.headers, envelope.ERROR_CLAIM_CHECK)
    if claim is None and engine.claim_check is not None:
        claim = await _claim_check(engine, dead, stop, retry_max_s)
    dead.value, dead.headers = oversized.truncated(dead.key, original, dead.headers, limit, claim)
    log.warning(
        "event=dead_letter_truncated pipeline=%s topic=%s source=%s original_bytes=%d kept_bytes=%d claim_check=%s",
        engine.config.label, dead.topic, dead.origin.source, len(original), len(dead.value), claim is not None,
    )


async def _fitted(engine: PipelineEngine, dead: OutMessage, stop: asyncio.Event, retry_max_s: float) -> OutMessage:
    limit = engine.max_bytes(dead.topic)
    if not dead.fits(limit):
        await _fit(engine, dead, limit, stop, retry_max_s)
    return dead


async def deliver(
    result: BatchResult, engine: PipelineEngine, send: Sender, stop: asyncio.Event, retry_max_s: float
) -> bool:
    """Send until every message is acknowledged; False if `stop` was set while retrying (nothing may be committed).

    `send` produces the messages and returns the ones the broker did not acknowledge, each with its classified
    failure. Permanent on an output (too large, unknown topic, not authorised): the output is replaced by its dead
    letter (stage `produce`). Too large on a dead letter: it is cut to half the size refused and sent again, so it
    ends within any limit. Anything else (retriable, or a dead-letter topic refusing for another reason, which an
    operator must fix) is sent again after a bounded backoff, logged with the error and counted.
    """
    try:
        return await _deliver(result, engine, send, stop, retry_max_s)
    except _Stopped:
        return False


async def _deliver(
    result: BatchResult, engine: PipelineEngine, send: Sender, stop: asyncio.Event, retry_max_s: float
) -> bool:
    label = engine.config.label
    pending = [await _fitted(engine, message, stop, retry_max_s) if message.kind == "dead_letter" else message
               for message in result.messages]
    delay = 0.2
    while pending:
        failures = await send(pending)
        pending = []
        retried: Counter[tuple[str, bool]] = Counter()
        first_error: dict[tuple[str, bool], tuple[OutMessage, ProduceFailure]] = {}
        for message, failure in failures:
            if failure.permanent and message.kind == "output":
                dead = engine.dead_letter(message.origin, "produce", failure.error_class, failure.error)
                result.outputs.remove(message)
                result.dead_letters.append(dead)
                pending.append(await _fitted(engine, dead, stop, retry_max_s))
                log.info("event=output_dead_lettered pipeline=%s topic=%s source=%s error=%s",
                         label, message.topic, message.origin.source, failure.error)
            elif failure.permanent and failure.too_large:
                await _fit(engine, message, message.size() // 2, stop, retry_max_s)
                pending.append(message)
            else:
                pending.append(message)
                kind = (failure.error_class, failure.permanent)
                retried[kind] += 1
                first_error.setdefault(kind, (message, failure))
        for (error_class, permanent), count in retried.items():
            metrics.RETRIES.labels(label, f"produce:{error_class}").inc(count)
            message, failure = first_error[(error_class, permanent)]
            log.log(
                logging.ERROR if permanent else logging.WARNING,
                "event=produce_retry pipeline=%s records=%d topic=%s permanent=%s error=%s delay_s=%.1f",
                label, count, message.topic, permanent, failure.error, delay,
            )
        if retried:
            if await stopped_within(stop, delay):
                return False
            delay = min(delay * 2, retry_max_s)
    return True


def account(
    stats: WorkerStats, engine: PipelineEngine, batch: Sequence[InMessage], result: BatchResult, started: float
) -> None:
    """Stats and metrics of a delivered batch."""
    stats.first_batch_at = stats.first_batch_at or started
    stats.last_batch_at = time.monotonic()
    name = engine.config.label
    now_ms = time.time() * 1000
    stats.records_in += len(batch)
    stats.records_out += len(result.outputs)
    metrics.RECORDS.labels(name, "decode", "in").inc(len(batch))
    metrics.RECORDS.labels(name, "produce", "out").inc(len(result.outputs))
    latency = metrics.LATENCY_SECONDS.labels(name)
    for output in result.outputs:
        elapsed = now_ms - output.origin.timestamp_ms
        stats.latency_ms.record(elapsed)
        latency.observe(elapsed / 1000)
    for dead in result.dead_letters:
        stats.dead_letters[(dead.stage, dead.reason)] += 1
        metrics.RECORDS.labels(name, dead.stage, "dead_letter").inc()
        metrics.DEAD_LETTERS.labels(name, dead.stage, dead.reason).inc()
    metrics.BATCH_SECONDS.labels(name).observe(time.monotonic() - started)
    for stage, seconds in result.stage_seconds.items():
        add_stage_time(stats, name, stage, seconds)


def add_stage_time(stats: WorkerStats, pipeline: str, stage: str, seconds: float) -> None:
    """Where a worker's time goes, per step of its micro-batches: in the stats and `/metrics`."""
    stats.stage_seconds[stage] += seconds
    metrics.STAGE_SECONDS.labels(pipeline, stage).inc(seconds)


def log_stopped(config: PipelineConfig, stats: WorkerStats) -> None:
    log.info(
        "event=worker_stopped pipeline=%s in=%d out=%d dead_letters=%d",
        config.label, stats.records_in, stats.records_out, stats.dead_lettered,
    )
