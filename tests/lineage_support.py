"""A small real run for the lineage tests: raw contacts written as a source connector writes them, one pipeline
run on the direct runtime, and the enriched topic loaded by DuckDB and S3 sinks from a connect-run file."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from connectors.base import Sink
from connectors.runner import load_plan
from connectors.sink_loop import SinkLoop
from headwater import envelope
from headwater.settings import HeadwaterSettings, load_settings
from streams.runtime.config import PipelineConfig, load_pipeline
from streams.runtime.runner import build_runtime
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.fixtures.s3 import S3Service
from tests.pipeline_support import contact, encoder, pipeline_file, producer

CONNECTOR = "salesforce-contacts"


@dataclass
class Run:
    raw: str
    enriched: str
    dlq: str
    settings: HeadwaterSettings
    traces: dict[str, str]  # contact id -> trace id
    schema_id: int


def write_raw(kafka: KafkaService, registry: RegistryService, raw: str, records: list[dict[str, Any]]) -> Run:
    serializer = encoder(registry.client(), raw)
    out = producer(kafka.bootstrap)
    traces: dict[str, str] = {}
    for index, record in enumerate(records):
        trace = f"trace-{raw}-{index}"
        traces[record["contact_id"]] = trace
        headers = [(envelope.SOURCE, f"{CONNECTOR}/2026-12-01T10:00:0{index}Z|{record['contact_id']}".encode()),
                   (envelope.TRACE_ID, trace.encode())]
        out.produce(raw, serializer.encode(record), record["contact_id"].encode(), headers=headers)
    assert out.flush(30) == 0
    domain, entity = raw.split(".")[:2]
    settings = load_settings(kafka={"bootstrap.servers": kafka.bootstrap}, registry={"url": registry.url})
    return Run(raw, f"{domain}.{entity}.enriched", f"{domain}.{entity}.dlq", settings, traces, serializer.schema_id)


def contacts() -> list[dict[str, Any]]:
    """Two good contacts and one whose empty last name fails a blocking expectation."""
    return [contact(1), contact(2, notes="Terrible support, I am angry."), contact(3, last_name="")]


def pipeline_of(run: Run, tmp_path: Path) -> PipelineConfig:
    return load_pipeline(pipeline_file(
        tmp_path, run.raw, enrich=[{"provider": "sentiment", "options": {"text_field": "notes"}}],
    ))


async def run_pipeline(config: PipelineConfig, expected: int, settings: HeadwaterSettings) -> None:
    """Run the pipeline on the direct runtime until it has read `expected` records, then stop it."""
    runtime = build_runtime("direct", [config], settings)
    pipeline = runtime.pipelines[0]
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    deadline = time.monotonic() + 120
    try:
        while pipeline.stats.records_in < expected:
            assert not task.done() or task.exception() is None, task.exception()
            assert time.monotonic() < deadline, "the pipeline did not read its input in time"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def sink_file(run: Run, tmp_path: Path, s3: S3Service, bucket: str) -> Path:
    data = {
        "kafka": {"bootstrap.servers": run.settings.kafka.bootstrap_servers},
        "registry": {"url": run.settings.registry.url},
        "connectors": [
            {"name": "warehouse", "connector": "duckdb",
             "config": {"database": str(tmp_path / "warehouse.duckdb"), "topics": [run.enriched]}},
            {"name": "archive", "connector": "s3",
             "config": {**s3.sink_config(bucket), "topics": [run.enriched], "flush_records": 1}},
        ],
    }
    path = tmp_path / "sinks.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def load_sinks(path: Path) -> None:
    """Every sink of the file, run until it has written and committed the whole of its topics."""
    plan = load_plan(path)
    for connector in plan.connectors:
        assert isinstance(connector, Sink)
        loop = SinkLoop(connector, kafka=plan.settings.kafka, registry=plan.settings.registry)
        try:
            loop.run_until_caught_up(timeout=60)
        finally:
            loop.close()
