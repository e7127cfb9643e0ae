"""Errors tell the truth, proven on `headwater run` processes on both runtimes: an outage of an enrichment provider
or of the registry pauses the pipeline (retried, shown in /readyz and /metrics, nothing dead-lettered or committed)
until it ends; a bug in a stage is logged with its traceback and ends the worker with a non-zero exit, having
committed only input whose outputs were delivered."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from headwater.ports import free_port
from schemas import catalog
from schemas.serde import AvroSerializer
from streams.runtime.runner import RUNTIMES
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryProcess, RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values, read_topic
from tests.worker_support import (
    Collector,
    committed,
    consumer_group,
    end_offsets,
    start_worker,
    status_url,
    stop_all,
    wait_until,
)

RECORDS = 40


def _inputs(kafka: KafkaService, client: SchemaRegistryClient, notes: dict[int, str] | None = None) -> str:
    raw = kafka.create_topic(partitions=1)
    serializer = encoder(client, raw)
    produce_values(kafka.bootstrap, raw, [
        (f"C{n:06d}".encode(), serializer.encode(contact(n, notes=(notes or {}).get(n, f"note {n}"))))
        for n in range(RECORDS)
    ])
    return raw


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_provider_outage_pauses_without_dead_letters_then_resumes(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime: str
) -> None:
    raw = _inputs(kafka, registry.client())
    domain, entity = raw.split(".")[:2]
    outage = tmp_path / "provider-down"
    outage.touch()
    pipeline = pipeline_file(
        tmp_path, raw, quality=None, enrich=[{"provider": "switchable", "options": {"down_while": str(outage)}}],
        batch={"size": 20, "linger_ms": 20},
    )
    group, log = consumer_group(pipeline), tmp_path / "worker.log"
    worker = start_worker(pipeline, kafka.bootstrap, registry.url, log, runtime)
    try:
        wait_until(lambda: log.read_text().count("event=batch_retry") >= 3, 60, "three retries", worker, log)
        retry = next(line for line in log.read_text().splitlines() if "event=batch_retry" in line)
        assert "error=ProviderUnavailable: provider switchable unavailable: connection refused" in retry
        url = status_url(log)
        assert url is not None
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert any("waiting for a dependency: ProviderUnavailable" in reason for reason in ready.json()["reasons"])
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert f'headwater_pipeline_waiting_for_dependency{{pipeline="{pipeline.stem}@3"}} 1.0' in metrics
        assert 'reason="ProviderUnavailable"' in metrics
        assert end_offsets(kafka.bootstrap, f"{domain}.{entity}.dlq", 1) == {0: 0}, "an outage is no record's fault"
        assert committed(kafka.bootstrap, group, raw, 1)[0] < 0, "nothing is committed while the batch waits"

        outage.unlink()
        outputs = read_topic(kafka.bootstrap, f"{domain}.{entity}.enriched", RECORDS)
        assert sorted(read.key for read in outputs) == [f"C{n:06d}".encode() for n in range(RECORDS)]
        assert all(json.loads(read.headers["hw-enrich"])[0]["m"] == "switchable-1" for read in outputs)
        wait_until(lambda: committed(kafka.bootstrap, group, raw, 1) == {0: RECORDS}, 60, "offsets committed",
                   worker, log)
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 200, 30, "ready again", worker, log)
        assert "event=dependency_recovered" in log.read_text()
        assert end_offsets(kafka.bootstrap, f"{domain}.{entity}.dlq", 1) == {0: 0}
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, log.read_text()[-3000:]
    finally:
        stop_all(worker)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_bug_in_a_stage_logs_its_traceback_and_exits_non_zero(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime: str
) -> None:
    bug_at = 25
    raw = _inputs(kafka, registry.client(), notes={bug_at: "BUG"})
    domain, entity = raw.split(".")[:2]
    pipeline = pipeline_file(
        tmp_path, raw, quality=None, enrich=[{"provider": "switchable", "options": {"bug_on": "BUG"}}],
        batch={"size": 10, "linger_ms": 20},
    )
    group, log = consumer_group(pipeline), tmp_path / "worker.log"
    worker = start_worker(pipeline, kafka.bootstrap, registry.url, log, runtime)
    try:
        assert worker.wait(90) == 1, log.read_text()[-3000:]
    finally:
        stop_all(worker)
    text = log.read_text()
    assert "event=pipeline_bug" in text and "Traceback (most recent call last)" in text, text[-3000:]
    assert "TypeError" in text
    assert "stopped on a bug: TypeError" in text, "the command ends with one line naming the bug"
    assert "event=batch_retry" not in text, "a bug is not retried"

    offset = committed(kafka.bootstrap, group, raw, 1)[0]
    assert offset <= bug_at, "the batch holding the bug is never committed"
    collector = Collector(kafka.bootstrap, [f"{domain}.{entity}.enriched", f"{domain}.{entity}.dlq"])
    try:
        collector.poll_until(lambda: all(f"{raw}/0/{n}" in collector.seen for n in range(max(offset, 0))), 30)
    finally:
        collector.close()
    assert not any(source.endswith(f"/{bug_at}") for source in collector.seen)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_registry_outage_pauses_without_dead_letters_then_resumes(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime: str
) -> None:
    """The worker's registry (this test's own process and storage topic) is killed; records written with a schema id
    the worker has not seen yet wait for it to come back instead of becoming dead letters."""
    port, storage = free_port(), f"_schemas_{uuid.uuid4().hex[:8]}"
    own = RegistryProcess(kafka.bootstrap, storage, tmp_path, port).start()
    raw = _inputs(kafka, own.client())
    domain, entity = raw.split(".")[:2]
    newer = catalog.load_schema("crm/contact")
    newer["fields"].append({"name": "loyalty_tier", "type": ["null", "string"], "default": None})
    serializer = AvroSerializer(own.client(), f"{raw}-value", newer)
    second_part = [
        (f"N{n:06d}".encode(), serializer.encode({**contact(n), "loyalty_tier": "gold"})) for n in range(RECORDS)
    ]
    pipeline = pipeline_file(tmp_path, raw, quality=None, enrich=[], batch={"size": 20, "linger_ms": 20})
    group, log = consumer_group(pipeline), tmp_path / "worker.log"
    worker = start_worker(pipeline, kafka.bootstrap, own.url, log, runtime)
    restarted: RegistryProcess | None = None
    try:
        wait_until(lambda: committed(kafka.bootstrap, group, raw, 1) == {0: RECORDS}, 90, "first part committed",
                   worker, log)
        own.kill()
        produce_values(kafka.bootstrap, raw, second_part)
        wait_until(lambda: "event=batch_retry" in log.read_text(), 60, "a retry", worker, log)
        retry = next(line for line in log.read_text().splitlines() if "event=batch_retry" in line)
        assert "error=ConnectError:" in retry, retry
        url = status_url(log)
        assert url is not None
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert "waiting for a dependency: ConnectError" in " ".join(ready.json()["reasons"])
        assert end_offsets(kafka.bootstrap, f"{domain}.{entity}.dlq", 1) == {0: 0}
        assert committed(kafka.bootstrap, group, raw, 1) == {0: RECORDS}

        restarted = RegistryProcess(kafka.bootstrap, storage, tmp_path, port).start()
        wait_until(lambda: committed(kafka.bootstrap, group, raw, 1) == {0: 2 * RECORDS}, 90, "second part committed",
                   worker, log)
        outputs = read_topic(kafka.bootstrap, f"{domain}.{entity}.enriched", 2 * RECORDS)
        assert len({read.key for read in outputs}) == 2 * RECORDS
        assert end_offsets(kafka.bootstrap, f"{domain}.{entity}.dlq", 1) == {0: 0}, "an outage is no record's fault"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, log.read_text()[-3000:]
    finally:
        stop_all(worker)
        for process in (own, restarted):
            if process is not None:
                process.terminate()
