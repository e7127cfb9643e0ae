"""`headwater produce` and `headwater consume` as a user runs them, and the Python API behind them
(`headwater.Producer`, `headwater.consume`), against the real broker and registry."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema

import headwater
from headwater import envelope
from headwater.settings import HeadwaterSettings
from tests.cli import headwater as run_cli
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService

SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Ping", "namespace": "test.produce",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "score", "type": ["null", "double"], "default": None},
        {"name": "active", "type": "boolean", "default": True},
    ],
}


def _settings(kafka: KafkaService, registry: RegistryService) -> HeadwaterSettings:
    return HeadwaterSettings.model_validate({"kafka": {"bootstrap.servers": kafka.bootstrap},
                                             "registry": {"url": registry.url}})


def _config(tmp_path: Path, kafka: KafkaService, registry: RegistryService) -> str:
    path = tmp_path / "headwater.yaml"
    path.write_text(f"kafka:\n  bootstrap.servers: {kafka.bootstrap}\nregistry:\n  url: {registry.url}\n")
    return str(path)


def _schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "ping.avsc"
    path.write_text(json.dumps(SCHEMA))
    return path


def _consumed(topic: str, settings: HeadwaterSettings) -> list[headwater.ConsumedRecord]:
    with headwater.consume(topic, settings=settings) as reading:
        return list(reading)


def test_produce_a_json_lines_file_then_consume_it_as_json_lines(
    tmp_path: Path, kafka: KafkaService, registry: RegistryService
) -> None:
    topic = kafka.create_topic(partitions=3)
    rows = tmp_path / "pings.jsonl"
    rows.write_text("".join(json.dumps({"id": f"p{i}", "count": i, "score": i / 2}) + "\n" for i in range(300)))
    config = _config(tmp_path, kafka, registry)
    produced = run_cli("produce", topic, str(rows), "--schema", str(_schema_file(tmp_path)), "--key-field", "id",
                       "--config", config)
    assert produced.returncode == 0, produced.stderr
    assert "produced 300 rows" in produced.stderr and "rejected 0" in produced.stderr

    consumed = run_cli("consume", topic, "--headers", "--config", config)
    assert consumed.returncode == 0, consumed.stderr
    lines = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert sorted(line["value"]["count"] for line in lines) == list(range(300))
    first = next(line for line in lines if line["key"] == "p7")
    assert first["value"] == {"id": "p7", "count": 7, "score": 3.5, "active": True}
    assert first["headers"][envelope.SOURCE] == "produce/pings.jsonl:8"
    assert len(first["headers"][envelope.TRACE_ID]) == 32
    partitions_of_key = {line["partition"] for line in lines if line["key"] == "p7"}
    assert len(partitions_of_key) == 1


def test_bad_csv_rows_are_reported_with_line_and_field_and_all_or_nothing_sends_none(
    tmp_path: Path, kafka: KafkaService, registry: RegistryService
) -> None:
    topic = kafka.create_topic()
    settings = _settings(kafka, registry)
    registry.client().register_schema(f"{topic}-value", Schema(json.dumps(SCHEMA), "AVRO"))
    rows = tmp_path / "pings.csv"
    rows.write_text("id,count,score,active\np1,1,0.5,true\np2,two,,false\np3,3,,maybe\np4,4,,\n")
    config = _config(tmp_path, kafka, registry)

    refused = run_cli("produce", topic, str(rows), "--all-or-nothing", "--config", config)
    assert refused.returncode == 1
    assert "line 3, field count: 'two' is not of type int" in refused.stderr
    assert "line 4, field active: 'maybe' is not of type boolean" in refused.stderr
    assert "line 5, field active" in refused.stderr
    assert "nothing sent" in refused.stderr
    assert _consumed(topic, settings) == []

    partial = run_cli("produce", topic, str(rows), "--config", config)
    assert partial.returncode == 1
    assert "produced 1 rows" in partial.stderr and "rejected 3" in partial.stderr
    assert [record.value for record in _consumed(topic, settings)] == [
        {"id": "p1", "count": 1, "score": 0.5, "active": True}
    ]


def test_json_rows_that_do_not_match_name_their_line_and_field(
    tmp_path: Path, kafka: KafkaService, registry: RegistryService
) -> None:
    topic = kafka.create_topic()
    rows = tmp_path / "pings.jsonl"
    rows.write_text('{"id": "a", "count": 1}\n{"id": "b", "count": "x"}\nnot json\n{"id": "c"}\n'
                    '{"id": "d", "count": 4, "colour": "red"}\n')
    result = run_cli("produce", topic, str(rows), "--schema", str(_schema_file(tmp_path)),
                     "--config", _config(tmp_path, kafka, registry))
    assert result.returncode == 1
    assert "line 2, field count: 'x' is not of type int" in result.stderr
    assert "line 3: not JSON" in result.stderr
    assert "line 4" in result.stderr and "count" in result.stderr
    assert "line 5" in result.stderr and "colour" in result.stderr
    assert "produced 1 rows" in result.stderr


def test_an_avro_container_file_is_produced_as_it_is(
    tmp_path: Path, kafka: KafkaService, registry: RegistryService
) -> None:
    topic = kafka.create_topic()
    path = tmp_path / "pings.avro"
    records = [{"id": f"a{i}", "count": i, "score": None, "active": i % 2 == 0} for i in range(50)]
    with path.open("wb") as out:
        fastavro.writer(out, fastavro.parse_schema(SCHEMA), records)
    result = run_cli("produce", topic, str(path), "--schema", str(_schema_file(tmp_path)),
                     "--config", _config(tmp_path, kafka, registry))
    assert result.returncode == 0, result.stderr
    assert [record.value for record in _consumed(topic, _settings(kafka, registry))] == records


def test_a_topic_without_a_subject_is_refused_in_one_line(
    tmp_path: Path, kafka: KafkaService, registry: RegistryService
) -> None:
    topic = kafka.create_topic()
    rows = tmp_path / "one.jsonl"
    rows.write_text('{"id": "a", "count": 1}\n')
    result = run_cli("produce", topic, str(rows), "--config", _config(tmp_path, kafka, registry))
    assert result.returncode == 2
    assert f"topic {topic} has no subject {topic}-value" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_python_producer_and_consume_with_positions_and_group_commits(
    kafka: KafkaService, registry: RegistryService
) -> None:
    topic = kafka.create_topic(partitions=2)
    settings = _settings(kafka, registry)
    with headwater.Producer(settings, schemas={topic: SCHEMA}) as producer:
        for i in range(10):
            producer.send(topic, {"id": f"k{i}", "count": i}, key=f"k{i}")
        with pytest.raises(headwater.RecordInvalid) as invalid:
            producer.send(topic, {"id": "bad", "count": "nine"})
        assert invalid.value.field == "count"

    later = datetime.now(UTC) + timedelta(hours=1)
    with headwater.consume(topic, settings=settings, start=later.isoformat()) as reading:
        assert reading.planned == 0
        assert list(reading) == []

    group = f"api-{uuid.uuid4().hex[:8]}"
    with headwater.consume(topic, settings=settings, group=group) as reading:
        first = list(reading)
        reading.commit()
    assert sorted(record.value["count"] for record in first if record.value) == list(range(10))
    assert all(record.lineage[envelope.SOURCE] == "python" for record in first)

    with headwater.Producer(settings) as producer:
        producer.send(topic, {"id": "k10", "count": 10}, key="k10")
    with headwater.consume(topic, settings=settings, group=group) as reading:
        assert [record.value["count"] for record in reading if record.value] == [10]

    by_partition = {record.partition: record.offset for record in first}
    position = ",".join(f"{partition}:{offset}" for partition, offset in by_partition.items())
    with headwater.consume(topic, settings=settings, start=position) as reading:
        tail = list(reading)
    assert len(tail) == len(by_partition) + 1


async def test_producer_send_and_wait_from_asyncio(kafka: KafkaService, registry: RegistryService) -> None:
    topic = kafka.create_topic()
    settings = _settings(kafka, registry)
    producer = headwater.Producer(settings, schemas={topic: SCHEMA})
    try:
        delivered = await asyncio.gather(*(producer.send_and_wait(topic, {"id": f"x{i}", "count": i})
                                           for i in range(5)))
    finally:
        producer.close()
    assert sorted(item.offset for item in delivered) == [0, 1, 2, 3, 4]


def test_consume_a_missing_topic_or_bad_position_says_so(
    tmp_path: Path, kafka: KafkaService, registry: RegistryService
) -> None:
    config = _config(tmp_path, kafka, registry)
    missing = run_cli("consume", f"no.such.{uuid.uuid4().hex[:6]}", "--config", config)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    topic = kafka.create_topic()
    bad = run_cli("consume", topic, "--from", "yesterday-ish", "--config", config)
    assert bad.returncode == 2 and "neither a time" in bad.stderr
