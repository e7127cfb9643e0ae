"""Quality in a running pipeline, on both runtimes: an aggregate that fails reports its window and dead-letters
nothing; a duplicate contact id is caught across micro-batches and across a worker restart."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from headwater.settings import HeadwaterSettings, load_settings
from streams.runtime.batches import WorkerOptions
from streams.runtime.config import PipelineConfig, load_pipeline
from streams.runtime.runner import RUNTIMES, RuntimeName, build_runtime
from tests import pipeline_hooks  # noqa: F401  (registers the `flaky` provider)
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values, read_topic
from tests.test_pipeline_e2e import run_until

both_runtimes = pytest.mark.parametrize("runtime_name", RUNTIMES)
SUITE = {"name": "stream", "expectations": [
    {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "last_name", "min_value": 1},
     "meta": {"name": "last_name_present"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "contact_id"},
     "meta": {"name": "contact_id_unique"}},
    # Happy notes score about 0.6: every window fails this mean, and no record may be dead-lettered for it.
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "sentiment", "max_value": 0.1},
     "meta": {"name": "sentiment_mean_low"}},
]}


def _config(tmp_path: Path, raw: str, **quality: Any) -> PipelineConfig:
    suite = tmp_path / "stream.json"
    suite.write_text(json.dumps(SUITE))
    return load_pipeline(pipeline_file(
        tmp_path, raw, enrich=[{"provider": "sentiment", "options": {"text_field": "notes"}}],
        batch={"size": 7, "linger_ms": 20},
        quality={"suite": str(suite), "window": {"records": 10}, **quality},
    ))


async def _run(runtime_name: RuntimeName, config: PipelineConfig, settings: HeadwaterSettings, total: int) -> None:
    runtime = build_runtime(runtime_name, [config], settings, WorkerOptions(session_timeout_ms=6000))
    pipeline = runtime.pipelines[0]
    await run_until(runtime, lambda: pipeline.stats.records_in >= total)


@both_runtimes
async def test_windows_report_aggregates_and_duplicates_are_caught_across_batches_and_restarts(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime_name: RuntimeName
) -> None:
    raw = kafka.create_topic(f"crm.q{uuid.uuid4().hex[:8]}.raw")
    domain, entity = raw.split(".")[:2]
    serializer = encoder(registry.client(), raw)
    records = [contact(n) for n in range(25)]
    records[20] = contact(3)  # a duplicate three batches (of 7) after its first occurrence at offset 3
    produce_values(kafka.bootstrap, raw, [(r["contact_id"].encode(), serializer.encode(r)) for r in records])
    config = _config(tmp_path, raw)
    settings = load_settings(kafka={"bootstrap.servers": kafka.bootstrap}, registry={"url": registry.url})

    await _run(runtime_name, config, settings, 25)

    outputs = read_topic(kafka.bootstrap, f"{domain}.{entity}.enriched", 24)
    (duplicate,) = read_topic(kafka.bootstrap, f"{domain}.{entity}.dlq", 1)
    assert len(outputs) == 24, "a window whose mean fails dead-letters none of its records"
    assert duplicate.headers["hw-source"] == f"{raw}/0/20"
    assert duplicate.headers["hw-error-class"] == "contact_id_unique"
    assert f"duplicate of {raw}/0/3" in duplicate.headers["hw-error-message"]
    reports = [json.loads(read.value or b"") for read in read_topic(kafka.bootstrap, f"{domain}.{entity}.quality", 2)]
    assert [report["offsets"] for report in reports] == [
        {f"{raw}/0": {"first": 0, "last": 9}}, {f"{raw}/0": {"first": 10, "last": 19}},
    ]
    first = reports[0]
    assert first["pipeline"] == config.label and first["success"] is False and first["window"]["records"] == 10
    (mean,) = first["expectations"]
    assert mean["name"] == "sentiment_mean_low" and not mean["success"] and mean["observed_value"] > 0.1
    assert first["gx_result"]["results"][0]["expectation_config"]["type"] == "expect_column_mean_to_be_between"

    # A new worker (same group, fresh process state) still knows offset 5's contact id from the changelog.
    again = [contact(5), contact(99)]
    produce_values(kafka.bootstrap, raw, [(r["contact_id"].encode(), serializer.encode(r)) for r in again])
    await _run(runtime_name, config, settings, 2)
    dead = read_topic(kafka.bootstrap, f"{domain}.{entity}.dlq", 2)
    assert [read.headers["hw-source"] for read in dead] == [f"{raw}/0/20", f"{raw}/0/25"]
    assert f"duplicate of {raw}/0/5" in dead[1].headers["hw-error-message"]
    assert len(read_topic(kafka.bootstrap, f"{domain}.{entity}.enriched", 25)) == 25
