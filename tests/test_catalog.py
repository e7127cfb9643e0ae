"""`headwater catalog` on the session broker and registry, with a pipeline file and a connect-run file: a topic's
schemas and versions, the pipeline and connectors around it, its record count and retention, and the tables."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.cli import headwater
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.lineage_support import contacts, pipeline_of, write_raw
from tests.test_cli_conventions import assert_one_line_failure


def test_the_catalog_lists_topics_with_their_schemas_pipelines_connectors_counts_and_tables(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path
) -> None:
    family = f"cat{uuid.uuid4().hex[:8]}.contacts"
    raw = kafka.create_topic(f"{family}.raw", partitions=2, **{"retention.ms": "86400000"})
    run = write_raw(kafka, registry, raw, contacts())
    pipeline = pipeline_of(run, tmp_path)
    connect = tmp_path / "connect.yaml"
    connect.write_text(yaml.safe_dump({"connectors": [
        {"name": "erp", "connector": "sql",
         "config": {"url": f"sqlite:///{tmp_path / 'erp.db'}", "tables": [{"table": "contacts", "topic": raw}]}},
        {"name": "warehouse", "connector": "duckdb",
         "config": {"database": str(tmp_path / "w.duckdb"), "topics": [run.enriched],
                    "tables": {run.enriched: "contacts"}}},
    ]}), encoding="utf-8")
    pipeline_path = next(tmp_path.glob("p_*.yaml"))
    args = ("--pipelines", str(pipeline_path), "--connectors", str(connect),
            "--bootstrap-servers", kafka.bootstrap, "--registry-url", registry.url)

    result = headwater("catalog", "--json", *args, timeout=120)
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    topics = {item["topic"]: item for item in found["topics"]}
    entry = topics[raw]
    assert entry["records"] == 3 and entry["partitions"] == 2 and not entry["internal"]
    assert entry["retention"]["retention.ms"] == "86400000" and entry["retention"]["cleanup.policy"] == "delete"
    assert entry["subjects"] == {f"{raw}-value": [1]}
    assert (entry["read_by"], entry["written_by"]) == ([pipeline.label], [])
    assert (entry["fed_by"], entry["drained_by"]) == (["erp"], [])
    storage = topics[registry.topic]  # the registry's own topic: internal, compacted
    assert storage["internal"] and storage["retention"]["cleanup.policy"] == "compact"
    pipelines = {item["pipeline"]: item for item in found["pipelines"]}
    assert pipelines["crm_contacts@1"]["reads"] == ["crm.contacts.raw"]  # the shipped pipelines are always read
    assert pipelines[pipeline.label]["writes"] == [run.enriched, run.dlq]
    assert {"connector": "erp", "kind": "source", "topics": [raw]} in found["connectors"]
    [table] = [table for table in found["tables"] if table["source_topic"] == run.enriched]
    assert table == {"connector": "warehouse", "namespace": f"duckdb://{tmp_path / 'w.duckdb'}",
                     "table": "main.contacts", "source_topic": run.enriched}

    text = headwater("catalog", *args, timeout=120)
    assert text.returncode == 0, text.stderr
    assert raw in text.stdout and "main.contacts" in text.stdout and pipeline.label in text.stdout

    missing = headwater("catalog", "--pipelines", str(tmp_path / "nope.yaml"), "--bootstrap-servers",
                        kafka.bootstrap, timeout=60)
    assert_one_line_failure(missing, "nope.yaml", "no such file")
