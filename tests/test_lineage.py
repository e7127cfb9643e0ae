"""`headwater lineage` on a real run: raw contacts written as a source connector writes them, one pipeline run
(an enriched record and a dead letter), and DuckDB and S3 sinks loaded from a connect-run file."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.cli import headwater
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.fixtures.s3 import S3Service
from tests.lineage_support import CONNECTOR, contacts, load_sinks, pipeline_of, run_pipeline, sink_file, write_raw
from tests.test_cli_conventions import assert_one_line_failure


def lineage(*args: str) -> dict[str, Any]:
    result = headwater("lineage", *args, "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


async def test_a_record_is_followed_from_its_connector_to_its_warehouse_row_and_s3_object(
    kafka: KafkaService, registry: RegistryService, s3: S3Service, tmp_path: Path
) -> None:
    raw = kafka.create_topic(f"lin{uuid.uuid4().hex[:8]}.contacts.raw")
    run = write_raw(kafka, registry, raw, contacts())
    config = pipeline_of(run, tmp_path)
    await run_pipeline(config, 3, run.settings)
    sinks = sink_file(run, tmp_path, s3, s3.create_bucket())
    load_sinks(sinks)
    bootstrap = ("--bootstrap-servers", kafka.bootstrap)

    by_trace = lineage(run.traces["C000002"], "--topic", run.enriched, "--connectors", str(sinks), *bootstrap)
    assert by_trace["matched_by"] == "trace-id" and by_trace["trace_id"] == run.traces["C000002"]
    assert by_trace["source"] == {"connector": CONNECTOR, "cursor": "2026-12-01T10:00:01Z|C000002"}
    assert by_trace["raw"] | {"timestamp_ms": 0} == {"topic": raw, "partition": 0, "offset": 1, "key": "C000002",
                                                     "schema_id": run.schema_id, "timestamp_ms": 0}
    [outcome] = by_trace["outcomes"]
    assert outcome["kind"] == "enriched" and outcome["topic"] == run.enriched
    assert outcome["pipeline"] == config.label and outcome["schema_in"] == run.schema_id
    assert outcome["quality"] == "pass" and outcome["enrich"]["steps"][0]["p"] == "sentiment"
    assert outcome["enrich"]["usd"] == 0
    warehouse, archive = by_trace["sinks"]
    enriched_at = f"{run.enriched}/0/{outcome['offset']}"
    assert warehouse["connector"] == "warehouse" and warehouse["state"] == "row written from this record"
    assert warehouse["row"] == {"source": enriched_at, "partition": 0, "offset": outcome["offset"]}
    assert warehouse["table"] == f"main.{run.enriched.replace('.', '_')}"
    assert archive["connector"] == "archive" and archive["state"] == "written"
    [archived] = archive["objects"]
    assert archived.startswith(f"{run.enriched}/date=")
    first, last = (int(part) for part in archived.removesuffix(".parquet").rsplit("+", 2)[1:])
    assert first <= outcome["offset"] <= last

    # By key, without --topic (every raw topic is searched): the contact whose quality check failed.
    by_key = lineage("C000003", "--connectors", str(sinks), *bootstrap)
    assert by_key["matched_by"] == "key" and by_key["raw"]["offset"] == 2
    [dead] = by_key["outcomes"]
    assert dead["kind"] == "dead_letter" and dead["topic"] == run.dlq and dead["stage"] == "quality"
    assert dead["error_class"] == "last_name_present" and "last_name_present" in dead["reason"]
    assert by_key["sinks"] == []

    text = headwater("lineage", run.traces["C000001"], "--topic", raw, "--connectors", str(sinks), *bootstrap)
    assert text.returncode == 0, text.stderr
    assert f"connector {CONNECTOR}" in text.stdout and f"{raw} partition 0 offset 0" in text.stdout
    assert "row written from this record" in text.stdout and config.label in text.stdout

    missing = headwater("lineage", "no-such-key", "--topic", raw, "--scan", "50", *bootstrap, timeout=120)
    assert_one_line_failure(missing, "no-such-key", f"last 50 records of each partition of {raw}", "--scan")
