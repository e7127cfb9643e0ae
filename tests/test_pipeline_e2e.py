"""End to end on the real broker and registry, on both runtimes (Faust agents, direct confluent-kafka loop): a
seeded mixed input with every kind of bad record, and the exact contents of the enriched and dead-letter topics."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from headwater.ports import free_port
from headwater.settings import load_settings
from headwater.status import StatusPortBusy, StatusServer
from schemas.serde import header
from streams.runtime.batches import RunningPipeline, WorkerOptions
from streams.runtime.config import load_pipeline
from streams.runtime.runner import RUNTIMES, Runtime, RuntimeName, build_runtime
from tests import pipeline_hooks  # noqa: F401  (registers the `flaky` provider)
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values, read_topic

GOOD = 40
both_runtimes = pytest.mark.parametrize("runtime_name", RUNTIMES)


async def run_until(runtime: Runtime, done: Any, limit_s: float = 90.0, while_running: Any = None) -> Any:
    """Run until `done()`, then call `while_running()` (if given) before stopping; returns what it returned."""
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    deadline = time.monotonic() + limit_s
    try:
        while not done():
            assert not task.done() or task.exception() is None, task.exception()
            assert time.monotonic() < deadline, "pipeline did not finish in time"
            await asyncio.sleep(0.05)
        return await while_running() if while_running is not None else None
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


@both_runtimes
async def test_mixed_input_ends_in_outputs_and_one_dead_letter_per_bad_record(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime_name: RuntimeName
) -> None:
    raw = kafka.create_topic()
    domain, entity = raw.split(".")[:2]
    enriched, dlq = f"{domain}.{entity}.enriched", f"{domain}.{entity}.dlq"
    kafka.create_topic(enriched, **{"max.message.bytes": "6000"})
    serializer = encoder(registry.client(), raw)
    good = [contact(n, notes=None if n % 5 == 0 else "Very happy with the service!",
                    email=None if n % 7 == 0 else f"z{n}@example.com") for n in range(GOOD)]
    bad: dict[str, tuple[bytes, bytes | None]] = {
        "undecodable": (b"bad-1", b"definitely not avro"),
        "unknown_id": (b"bad-2", header(987654) + b"\x02\x04"),
        "cast": (b"bad-3", serializer.encode(contact(901, account_id="not-a-number"))),
        "hook": (b"bad-4", serializer.encode(contact(902, first_name="EXPLODE"))),
        "provider_raises": (b"bad-5", serializer.encode(contact(903, notes="RAISE"))),
        "provider_times_out": (b"bad-6", serializer.encode(contact(904, notes="SLOW"))),
        "quality": (b"bad-7", serializer.encode(contact(905, last_name=""))),
        "too_large": (b"bad-8", serializer.encode(contact(906, notes="x" * 7000))),
        "tombstone": (b"bad-9", None),
    }
    items: list[tuple[bytes, bytes | None]] = [
        (record["contact_id"].encode(), serializer.encode(record)) for record in good
    ]
    for position, item in enumerate(bad.values()):
        items.insert(1 + position * 4, item)
    total = len(items)
    produce_values(kafka.bootstrap, raw, items)

    config = load_pipeline(pipeline_file(tmp_path, raw))
    settings = load_settings(kafka={"bootstrap.servers": kafka.bootstrap}, registry={"url": registry.url})
    port = free_port()
    runtime = build_runtime(runtime_name, [config], settings, WorkerOptions(session_timeout_ms=6000), port)
    pipeline: RunningPipeline = runtime.pipelines[0]

    async def status() -> tuple[int, int, str, dict[str, Any], str]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            return ((await http.get("/healthz")).status_code, (await http.get("/readyz")).status_code,
                    (await http.get("/metrics")).text, (await http.get("/status.json")).json(),
                    (await http.get("/")).text + (await http.get("/status")).text)

    healthz, readyz, metrics, page, html = await run_until(
        runtime, lambda: pipeline.stats.records_in >= total, while_running=status
    )

    outputs = read_topic(kafka.bootstrap, enriched, total - len(bad))
    dead = read_topic(kafka.bootstrap, dlq, len(bad))
    assert pipeline.stats.records_in == total == pipeline.stats.records_out + pipeline.stats.dead_lettered
    sources = [read.headers["hw-source"] for read in outputs + dead]
    assert len(sources) == len(set(sources)) == total
    assert sorted(sources) == sorted(f"{raw}/0/{offset}" for offset in range(total))

    by_key = {read.key: read for read in dead}
    expected = {
        b"bad-1": ("decode", "WireFormatError"), b"bad-2": ("decode", "UnknownSchemaError"),
        b"bad-3": ("transform", "TransformError"), b"bad-4": ("transform", "RuntimeError"),
        b"bad-5": ("enrich", "ConnectionError"), b"bad-6": ("enrich", "TimeoutError"),
        b"bad-7": ("quality", "last_name_present"), b"bad-8": ("produce", "RecordTooLarge"),
        b"bad-9": ("decode", "WireFormatError"),
    }
    assert {key: (read.headers["hw-error-stage"], read.headers["hw-error-class"]) for key, read in by_key.items()} \
        == expected
    assert "account_check" in by_key[b"bad-3"].headers["hw-error-message"]
    assert "987654" in by_key[b"bad-2"].headers["hw-error-message"]
    assert "6000" in by_key[b"bad-8"].headers["hw-error-message"]
    originals = dict(items)
    for read in dead:
        assert read.value == originals[read.key], "dead letters keep the original bytes"
        assert read.headers["origin"] == "test" and read.headers["hw-error-at"].endswith("Z")

    assert len(outputs) == GOOD
    deserializer = registry.client()
    from schemas.serde import AvroDeserializer

    decoded = {read.key: AvroDeserializer(deserializer).decode(read.value or b"") for read in outputs}
    first = decoded[b"C000001"]
    assert first["email_normalized"] == "z1@example.com" and first["phone_e164"] == "+493012345678"
    assert first["country_code"] == "DE" and first["job_title"] == "CFO" and first["sentiment"] > 0.3
    assert first["summary"] == "len=28" and first["pipeline"] == config.label and first["quality"] == "PASS"
    assert decoded[b"C000000"]["sentiment"] is None
    assert decoded[b"C000007"]["quality"] == "WARN" and decoded[b"C000007"]["quality_warnings"] == ["email_usable"]
    lineage = {read.key: read.headers for read in outputs}
    assert lineage[b"C000007"]["hw-quality"] == "email_usable" and lineage[b"C000001"]["hw-quality"] == "pass"
    assert lineage[b"C000001"]["hw-pipeline"] == config.label
    assert int(lineage[b"C000001"]["hw-schema-out"]) == registry.client().get_latest_version(
        f"{enriched}-value").schema_id
    assert lineage[b"C000001"]["hw-schema-in"] == str(serializer.schema_id)
    used = json.loads(lineage[b"C000001"]["hw-enrich"])
    assert used[-1] == {"p": "flaky", "m": "flaky-1", "usd": 0.001}
    traces = {read.headers["hw-trace-id"] for read in outputs}
    assert len(traces) == GOOD and all(trace.startswith("trace-") for trace in traces)

    assert (healthz, readyz) == (200, 200)
    label = f'pipeline="{config.label}"'
    assert f'headwater_pipeline_records_total{{outcome="in",{label},stage="decode"}} {float(total)}' in metrics
    assert f'headwater_pipeline_records_total{{outcome="dead_letter",{label},stage="quality"}} 1.0' in metrics
    assert 'headwater_enrich_cost_usd_total{model="flaky-1",pipeline="' in metrics
    assert f'headwater_pipeline_assigned_partitions{{{label}}} 1.0' in metrics
    # the status page is served beside them, on either runtime
    [shown] = [row for row in page["pipelines"] if row["name"] == config.label]
    assert (shown["records_in"], shown["state"]) == (total, "running") and html.count("status.json") == 2


async def test_status_server_answers_and_a_second_one_on_its_port_is_refused_naming_it() -> None:
    server = StatusServer(lambda: False)
    port = await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 503
            assert "headwater_pipeline_records_total" in (await http.get("/metrics")).text
        with pytest.raises(StatusPortBusy, match=f"status port {port} on 127.0.0.1 is not available"):
            await StatusServer(lambda: True, port=port).start()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/readyz")).status_code == 503  # still the first server answering
    finally:
        await server.stop()


@both_runtimes
async def test_registry_down_at_start_is_retried_and_nothing_is_consumed_until_it_is_back(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    runtime_name: RuntimeName,
) -> None:
    from headwater.ports import free_port
    from tests.fixtures.registry import RegistryProcess

    raw = kafka.create_topic()
    port = free_port()
    config = load_pipeline(pipeline_file(tmp_path, raw, quality=None, enrich=[]))
    settings = load_settings(kafka={"bootstrap.servers": kafka.bootstrap}, registry={"url": f"http://127.0.0.1:{port}"})
    runtime = build_runtime(runtime_name, [config], settings, WorkerOptions(session_timeout_ms=6000))
    worker = runtime.pipelines[0]
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    late = RegistryProcess(kafka.bootstrap, f"_schemas_late_{port}", tmp_path, port)
    try:
        deadline = time.monotonic() + 30
        while caplog.text.count("event=registry_unreachable") < 2:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.1)
        assert not worker.ready and worker.stats.records_in == 0
        await asyncio.to_thread(late.start)
        serializer = encoder(late.client(), raw)
        produce_values(kafka.bootstrap, raw, [(b"k", serializer.encode(contact(1)))])
        deadline = time.monotonic() + 60
        while worker.stats.records_in < 1:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)
        assert worker.stats.records_out == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        late.terminate()


@both_runtimes
async def test_broker_down_at_start_is_retried_with_backoff_then_gives_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, runtime_name: RuntimeName
) -> None:
    from headwater.ports import free_port

    config = load_pipeline(pipeline_file(tmp_path, "crm.contacts.raw", quality=None, enrich=[]))
    settings = load_settings(kafka={"bootstrap.servers": f"127.0.0.1:{free_port()}"})
    runtime = build_runtime(runtime_name, [config], settings, WorkerOptions(startup_deadline_s=8))
    worker = runtime.pipelines[0]
    from headwater.dependencies import DependencyDown

    with pytest.raises(DependencyDown, match="unreachable"):
        await runtime.run(asyncio.Event())
    assert caplog.text.count("event=broker_unreachable") >= 2
    assert worker.stats.records_in == 0


def test_invalid_pipeline_is_rejected_before_connecting(tmp_path: Path) -> None:
    from streams.runtime.config import PipelineConfigError

    path = pipeline_file(tmp_path, "crm.contacts.raw", transform=[{"op": "cast", "field": "a", "to": "decimal"}])
    with pytest.raises(PipelineConfigError, match=r"field transform\.0\.cast\.to"):
        load_pipeline(path)
    _ = AdminClient
