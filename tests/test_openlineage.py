"""OpenLineage run events of a pipeline run and a sink connector run, received by a local HTTP server with
Marquez's endpoint (pytest-httpserver); and a receiver that is down never holds a run up."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer

from connectors.runner import Runner, load_plan
from headwater.openlineage import DatasetRef, LineageEmitter, LineageRun
from headwater.ports import free_port
from headwater.settings import OpenLineageSettings
from streams.runtime.runner import run_workers
from tests.connect_support import committed_offset, end_offset, wait_for
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.lineage_support import contacts, pipeline_of, write_raw

ENDPOINT = "/api/v1/lineage"


def received(server: HTTPServer, job: str) -> list[dict[str, Any]]:
    events = [json.loads(request.get_data()) for request, _ in server.log]
    return [event for event in events if event["job"]["name"] == job]


def assert_run_shape(events: list[dict[str, Any]], job: str) -> None:
    assert [events[0]["eventType"], events[-1]["eventType"]] == ["START", "COMPLETE"], events
    assert {event["eventType"] for event in events[1:-1]} <= {"RUNNING"}
    assert len({event["run"]["runId"] for event in events}) == 1
    uuid.UUID(events[0]["run"]["runId"])
    for event in events:
        assert (event["job"]["namespace"], event["job"]["name"]) == ("headwater", job)
        assert event["producer"].startswith("https://") and event["eventTime"]
        assert event["schemaURL"].startswith("https://openlineage.io/spec/") and "RunEvent" in event["schemaURL"]


def fields_of(dataset: dict[str, Any]) -> dict[str, str]:
    return {field["name"]: field["type"] for field in dataset["facets"]["schema"]["fields"]}


async def test_a_pipeline_run_and_a_sink_run_send_start_and_complete_with_their_datasets(
    kafka: KafkaService, registry: RegistryService, httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request(ENDPOINT, method="POST").respond_with_data("", status=201)
    raw = kafka.create_topic(f"ol{uuid.uuid4().hex[:8]}.contacts.raw")
    run = write_raw(kafka, registry, raw, contacts())
    kafka.create_topic(run.enriched)
    kafka.create_topic(run.dlq)
    lineage = {"transport": "http", "url": httpserver.url_for("/"), "running_interval_s": 1.0}
    settings = run.settings.model_copy(update={"openlineage": OpenLineageSettings.model_validate(lineage)})
    config = pipeline_of(run, tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(run_workers([config], settings, stop=stop, runtime="direct"))
    deadline = time.monotonic() + 120

    def written() -> int:
        return end_offset(kafka.bootstrap, run.enriched) + end_offset(kafka.bootstrap, run.dlq)

    while await asyncio.to_thread(written) < 3:  # off the loop the pipeline runs on
        assert not task.done(), task
        assert time.monotonic() < deadline, "the pipeline did not write its outputs in time"
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 60)

    events = received(httpserver, config.name)
    assert_run_shape(events, config.name)
    namespace = f"kafka://{kafka.bootstrap}"
    complete = events[-1]
    [source] = complete["inputs"]
    assert (source["namespace"], source["name"]) == (namespace, raw)
    assert {"contact_id": "string", "last_name": "string"}.items() <= fields_of(source).items()
    outputs = {output["name"]: output for output in complete["outputs"]}
    assert set(outputs) == {run.enriched, run.dlq}
    assert outputs[run.enriched]["namespace"] == namespace and "sentiment" in fields_of(outputs[run.enriched])

    database = tmp_path / "warehouse.duckdb"
    connect = tmp_path / "sinks.yaml"
    connect.write_text(yaml.safe_dump({
        "kafka": {"bootstrap.servers": kafka.bootstrap}, "registry": {"url": registry.url},
        "openlineage": lineage,
        "connectors": [{"name": f"wh-{raw[:10]}", "connector": "duckdb",
                        "config": {"database": str(database), "topics": [run.enriched]}}],
    }), encoding="utf-8")
    runner = Runner([load_plan(connect)])
    thread = threading.Thread(target=runner.run)
    thread.start()
    sink_job = f"wh-{raw[:10]}"
    try:
        wait_for(lambda: committed_offset(kafka.bootstrap, f"headwater-connect-{sink_job}", run.enriched) == 2,
                 120, "the sink to commit the enriched records")
    finally:
        runner.stop.set()
        thread.join(60)
    sink_events = received(httpserver, sink_job)
    assert_run_shape(sink_events, sink_job)
    [table] = sink_events[-1]["outputs"]
    assert table["namespace"] == f"duckdb://{database}"
    assert table["name"] == f"main.{run.enriched.replace('.', '_')}"
    assert {"_key", "_hw_source", "_hw_offset", "sentiment"} <= set(fields_of(table))
    [topic] = sink_events[-1]["inputs"]
    assert (topic["namespace"], topic["name"]) == (namespace, run.enriched)


def test_a_receiver_that_is_down_is_logged_and_holds_nothing_up(caplog: pytest.LogCaptureFixture) -> None:
    settings = OpenLineageSettings(transport="http", url=f"http://127.0.0.1:{free_port()}", timeout_s=1)
    emitter = LineageEmitter(settings)
    run = LineageRun("job", lambda: [DatasetRef("kafka://x", "a.b.raw")], lambda: [])
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="headwater.openlineage"):
        with emitter.reporting([run]):
            assert time.monotonic() - started < 0.5  # queued, not sent on the caller's time
        emitter.close()
    assert time.monotonic() - started < 10
    assert "event=openlineage_failed job=job state=START" in caplog.text


def test_a_file_transport_needs_a_path() -> None:
    with pytest.raises(ValueError, match="transport file needs `path`"):
        OpenLineageSettings(transport="file")


def test_the_file_transport_appends_one_event_per_line(tmp_path: Path) -> None:
    target = tmp_path / "lineage" / "events.jsonl"
    emitter = LineageEmitter(OpenLineageSettings(transport="file", path=target, running_interval_s=0))
    raw = DatasetRef("kafka://b:9092", "crm.contacts.raw", (("contact_id", "string"),))
    run = LineageRun("crm_contacts", lambda: [raw], lambda: [])
    with emitter.reporting([run]):
        pass
    emitter.close()
    events = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [event["eventType"] for event in events] == ["START", "COMPLETE"]
    assert fields_of(events[0]["inputs"][0]) == {"contact_id": "string"}
