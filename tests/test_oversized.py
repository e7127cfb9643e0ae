"""Oversized records and produce failures on the real broker and registry, on both runtimes: a record too large
for the enriched topic is dead-lettered whole while its neighbours flow, a dead letter too large for its topic is
truncated (with the original's size and SHA-256, and with a claim check the whole original in S3), every refusal
the clients raise is classified, and the Faust runtime's producer is idempotent."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import errors as aiokafka_errors
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from headwater.kafka import clients
from headwater.kafka.errors import ProduceFailure, from_exception
from headwater.kafka.producer import AckedProducer
from headwater.oversized import DEAD_LETTER_HEADROOM, record_size
from headwater.ports import free_port
from headwater.settings import KafkaSettings, load_settings
from streams.runtime.batches import RunningPipeline, WorkerOptions
from streams.runtime.config import PipelineConfig, load_pipeline
from streams.runtime.faust_app import FaustRuntime
from streams.runtime.runner import RUNTIMES, Runtime, RuntimeName, build_runtime
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.fixtures.s3 import CREDENTIALS, S3Service
from tests.pipeline_support import Read, contact, encoder, pipeline_file, read_topic

both_runtimes = pytest.mark.parametrize("runtime_name", RUNTIMES)
TWO_MB = 2_097_152


def produce_large(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    """Records up to a few MB, in order, acknowledged before returning."""
    out = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.max.bytes": 4_000_000})
    for key, value in items:
        out.produce(topic, value, key)
    assert out.flush(30) == 0


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        [position] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return position.offset
    finally:
        consumer.close()


def topic_limit(kafka: KafkaService, topic: str) -> int:
    admin = kafka.admin()  # kept referenced: a collected AdminClient fails its pending futures
    [future] = admin.describe_configs([ConfigResource("topic", topic)]).values()
    return int(future.result(timeout=30)["max.message.bytes"].value)


def lower_limit(kafka: KafkaService, topic: str, limit: int) -> None:
    """Change a topic's `max.message.bytes` under a running pipeline, as an operator would."""
    entry = ConfigEntry("max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET)
    admin = kafka.admin()
    [future] = admin.incremental_alter_configs([ConfigResource("topic", topic, incremental_configs=[entry])]).values()
    future.result(timeout=30)
    deadline = time.monotonic() + 30
    while topic_limit(kafka, topic) != limit:
        assert time.monotonic() < deadline, f"{topic} never showed max.message.bytes={limit}"
        time.sleep(0.1)


def pipeline(tmp_path: Path, raw: str, **overrides: Any) -> PipelineConfig:
    """A contacts pipeline without enrichment and quality: these tests are about sizes, not stages."""
    return load_pipeline(pipeline_file(tmp_path, raw, quality=None, enrich=[], **overrides))


@asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def wait_until(condition: Callable[[], bool], what: str, limit_s: float = 90.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def start(runtime_name: RuntimeName, config: PipelineConfig, kafka: KafkaService,
          registry: RegistryService) -> tuple[Runtime, RunningPipeline]:
    settings = load_settings(kafka={"bootstrap.servers": kafka.bootstrap}, registry={"url": registry.url})
    runtime = build_runtime(runtime_name, [config], settings, WorkerOptions(session_timeout_ms=6000))
    return runtime, runtime.pipelines[0]


def by_key(reads: list[Read]) -> dict[bytes | None, Read]:
    return {read.key: read for read in reads}


@both_runtimes
async def test_a_1_5_mb_record_is_dead_lettered_whole_while_its_neighbours_flow_and_offsets_reach_the_end(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime_name: RuntimeName
) -> None:
    raw = kafka.create_topic(**{"max.message.bytes": str(TWO_MB)})
    domain, entity = raw.split(".")[:2]
    enriched, dlq = f"{domain}.{entity}.enriched", f"{domain}.{entity}.dlq"
    serializer = encoder(registry.client(), raw)
    items = [(f"C{n}".encode(), serializer.encode(contact(n))) for n in range(20)]
    big = serializer.encode(contact(500, notes="x" * 1_500_000))
    assert 1_500_000 < len(big) < TWO_MB
    items.insert(10, (b"big", big))
    produce_large(kafka.bootstrap, raw, items)

    config = pipeline(tmp_path, raw)
    runtime, worker = start(runtime_name, config, kafka, registry)
    async with running(runtime):
        await wait_until(lambda: worker.stats.records_in >= len(items), "every input processed")

    assert topic_limit(kafka, dlq) >= TWO_MB + DEAD_LETTER_HEADROOM, "the DLQ takes whatever the input took"
    outputs = read_topic(kafka.bootstrap, enriched, 20)
    assert sorted(read.key or b"" for read in outputs) == sorted(key for key, _ in items if key != b"big")
    [dead] = read_topic(kafka.bootstrap, dlq, 1)
    assert dead.key == b"big" and dead.value == big, "the dead letter carries the whole original"
    assert (dead.headers["hw-error-stage"], dead.headers["hw-error-class"]) == ("produce", "RecordTooLarge")
    assert dead.headers["hw-source"] == f"{raw}/0/10" and "hw-error-truncated" not in dead.headers
    assert committed(kafka.bootstrap, config.group, raw) == len(items)


@both_runtimes
async def test_limits_lowered_under_a_running_pipeline_dead_letter_the_output_and_truncate_the_dead_letter(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime_name: RuntimeName
) -> None:
    """The broker refuses what the pipeline measured as fitting: an output refused for good becomes a dead letter
    (stage `produce`), a dead letter refused as too large is truncated and sent again, and nothing retries
    forever."""
    raw = kafka.create_topic()
    domain, entity = raw.split(".")[:2]
    enriched, dlq = f"{domain}.{entity}.enriched", f"{domain}.{entity}.dlq"
    serializer = encoder(registry.client(), raw)
    first = [(f"C{n}".encode(), serializer.encode(contact(n))) for n in range(10)]
    produce_large(kafka.bootstrap, raw, first)
    config = pipeline(tmp_path, raw)
    runtime, worker = start(runtime_name, config, kafka, registry)
    wide = serializer.encode(contact(100, notes="n" * 6000))
    garbage = bytes(range(256)) * 240  # 61,440 bytes that do not decode
    async with running(runtime):
        await wait_until(lambda: worker.stats.records_in >= len(first), "the first records processed")
        lower_limit(kafka, enriched, 3000)
        lower_limit(kafka, dlq, 50_000)
        produce_large(kafka.bootstrap, raw, [(b"wide", wide), (b"garbage", garbage)])
        await wait_until(lambda: worker.stats.records_in >= len(first) + 2, "the records over the new limits")

    assert len(read_topic(kafka.bootstrap, enriched, len(first))) == len(first)
    dead = by_key(read_topic(kafka.bootstrap, dlq, 2))
    assert set(dead) == {b"wide", b"garbage"}
    refused = dead[b"wide"]
    assert (refused.headers["hw-error-stage"], refused.headers["hw-error-class"]) == ("produce", "RecordTooLarge")
    assert refused.value == wide and "hw-error-truncated" not in refused.headers
    cut = dead[b"garbage"]
    assert cut.headers["hw-error-stage"] == "decode"
    assert cut.headers["hw-error-truncated"] == "true"
    assert cut.headers["hw-error-original-size"] == str(len(garbage))
    assert cut.headers["hw-error-original-sha256"] == hashlib.sha256(garbage).hexdigest()
    assert cut.value and len(cut.value) < len(garbage) and garbage.startswith(cut.value)
    headers = [(name, value.encode()) for name, value in cut.headers.items()]
    assert record_size(cut.key, cut.value, headers) <= 50_000
    assert committed(kafka.bootstrap, config.group, raw) == len(first) + 2


async def test_dead_letter_too_large_for_its_topic_keeps_its_first_bytes_and_the_whole_original_goes_to_s3(
    kafka: KafkaService, registry: RegistryService, s3: S3Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["secret_access_key"])
    raw = kafka.create_topic()
    domain, entity = raw.split(".")[:2]
    dlq = kafka.create_topic(f"{domain}.{entity}.dlq", **{"max.message.bytes": "100000"})
    serializer = encoder(registry.client(), raw)
    original = b"not avro " + uuid.uuid4().bytes * 20_000  # 320 KB
    items = [(b"C1", serializer.encode(contact(1))), (b"huge", original), (b"C2", serializer.encode(contact(2)))]
    produce_large(kafka.bootstrap, raw, items)
    bucket = s3.create_bucket()
    claim_check = {"bucket": bucket, "prefix": "dl/", "endpoint_url": s3.endpoint, "region": CREDENTIALS["region"]}
    config = pipeline(tmp_path, raw, dead_letters={"claim_check": claim_check})
    runtime, worker = start("direct", config, kafka, registry)
    async with running(runtime):
        await wait_until(lambda: worker.stats.records_in >= len(items), "every input processed")

    [dead] = read_topic(kafka.bootstrap, dlq, 1)
    assert dead.key == b"huge" and dead.headers["hw-error-stage"] == "decode"
    assert dead.headers["hw-error-truncated"] == "true"
    assert dead.headers["hw-error-original-size"] == str(len(original))
    assert dead.headers["hw-error-original-sha256"] == hashlib.sha256(original).hexdigest()
    assert dead.value and len(dead.value) > 90_000 and original.startswith(dead.value)
    assert dead.headers["hw-error-claim-check"] == f"s3://{bucket}/dl/{raw}/0/1"
    stored = s3.client().get_object(Bucket=bucket, Key=f"dl/{raw}/0/1")["Body"].read()
    assert stored == original
    assert committed(kafka.bootstrap, config.group, raw) == len(items)


def _failures_of_confluent(client: Producer, topic: str, value: bytes) -> list[tuple[ProduceFailure, bool]]:
    """Each failure reported for one record, and whether it came with a delivery report (else from produce())."""
    found: list[tuple[ProduceFailure, bool]] = []

    def delivered(failure: ProduceFailure | None, message: Message | None) -> None:
        if failure is not None:
            found.append((failure, message is not None))

    clients.send(client, topic, value, b"k", None, delivered)
    client.flush(30)
    return found


def test_refusals_librdkafka_raises_are_classified(kafka: KafkaService) -> None:
    settings = KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap})
    small = kafka.create_topic(**{"max.message.bytes": "5000"})

    # Over the client's own message.max.bytes: produce() raises KafkaException(MSG_SIZE_TOO_LARGE).
    sized = clients.producer(settings, max_message_bytes=10_000)
    [(failure, reported)] = _failures_of_confluent(sized, small, b"x" * 200_000)
    assert not reported and (failure.permanent, failure.too_large, failure.error_class) == \
        (True, True, "RecordTooLarge")

    # Within the client's limit, over the topic's: the broker refuses it in the delivery report.
    [(failure, reported)] = _failures_of_confluent(clients.producer(settings), small, b"x" * 20_000)
    assert reported and (failure.permanent, failure.too_large, failure.error_class) == \
        (True, True, "RecordTooLarge")
    assert "MSG_SIZE_TOO_LARGE" in failure.error

    # No broker answering: the message times out, which another attempt may cure.
    nowhere = KafkaSettings.model_validate({"bootstrap.servers": f"127.0.0.1:{free_port()}"})
    lost = clients.producer(nowhere, **{"message.timeout.ms": 500, "log_level": 0})
    [(failure, reported)] = _failures_of_confluent(lost, small, b"x")
    assert reported and not failure.permanent and failure.error_class == "_MSG_TIMED_OUT"


async def test_refusals_aiokafka_raises_are_classified(kafka: KafkaService) -> None:
    settings = KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap})
    small = kafka.create_topic(**{"max.message.bytes": "5000"})
    producer = clients.aiokafka_producer(settings, max_message_bytes=100_000)
    await producer.start()
    try:
        with pytest.raises(aiokafka_errors.MessageSizeTooLargeError) as local:
            await producer.send(small, b"x" * 500_000)
        with pytest.raises(aiokafka_errors.MessageSizeTooLargeError) as remote:
            await (await producer.send(small, b"x" * 20_000))
    finally:
        await producer.stop()
    for raised in (local.value, remote.value):
        failure = from_exception(raised)
        assert (failure.permanent, failure.too_large, failure.error_class) == (True, True, "RecordTooLarge")


async def test_faust_runtime_producer_is_idempotent_with_acks_all(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path
) -> None:
    raw = kafka.create_topic()
    runtime, worker = start("faust", pipeline(tmp_path, raw), kafka, registry)
    assert isinstance(runtime, FaustRuntime)
    async with running(runtime):
        await wait_until(lambda: worker.ready, "the pipeline assigned")
        app = runtime.pipelines[0].app
        assert app is not None
        faust_producer: Any = app.producer
        underlying = faust_producer._producer
        assert underlying is not None and underlying._txn_manager is not None, "idempotence needs a txn manager"
        assert underlying._sender._acks == -1
        assert underlying._txn_manager.transactional_id is None, "idempotent, not transactional"


def test_connector_dead_letter_refused_as_too_large_is_truncated_and_acknowledged(kafka: KafkaService) -> None:
    """`AckedProducer.send_dead_letter`, which the sinks' dead-letter path uses: the broker's refusal of an
    oversized dead letter ends in a truncated one, not in a ProduceError retried forever."""
    dlq = kafka.create_topic(**{"max.message.bytes": "50000"})
    producer = AckedProducer(KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap}))
    original = uuid.uuid4().bytes * 12_500  # 200 KB
    try:
        producer.send_dead_letter(dlq, original, b"k", [("hw-error-stage", b"sink")])
        producer.flush_acked()
    finally:
        producer.close()
    [dead] = read_topic(kafka.bootstrap, dlq, 1)
    assert dead.headers["hw-error-stage"] == "sink" and dead.headers["hw-error-truncated"] == "true"
    assert dead.headers["hw-error-original-size"] == str(len(original))
    assert dead.headers["hw-error-original-sha256"] == hashlib.sha256(original).hexdigest()
    assert dead.value and original.startswith(dead.value)
