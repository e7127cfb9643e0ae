"""S3 sink against moto's S3 server, the real broker and registry: Parquet objects per topic, date/hour and
first and last offset; flush by size and by time; a replay overwrites the same objects."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pyarrow.parquet as pq
from confluent_kafka import Producer

from connectors.sink_loop import SinkLoop
from connectors.sinks.s3 import S3Config, S3Sink
from headwater.settings import KafkaSettings, RegistrySettings
from schemas.serde import AvroSerializer
from tests.connect_support import committed_offset, running, wait_for

SCHEMA = {
    "type": "record",
    "name": "Event",
    "namespace": "test",
    "fields": [{"name": "event_id", "type": "string"}, {"name": "amount", "type": "double"}],
}
HOUR_10 = 1_704_103_200_000  # 2024-01-01T10:00:00Z


def produce_at(bootstrap: str, registry: Any, topic: str, events: list[tuple[str, float | None, int]]) -> None:
    serializer = AvroSerializer(registry.client(), f"{topic}-value", SCHEMA)
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, amount, timestamp in events:
        value = None if amount is None else serializer.encode({"event_id": key, "amount": amount})
        producer.produce(topic, key=key.encode(), value=value, timestamp=timestamp)
    assert producer.flush(30) == 0


def objects(s3: Any, bucket: str) -> dict[str, Any]:
    client = s3.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        item["Key"]: pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()))
        for item in listed
    }


def run_sink(kafka: Any, registry: Any, config: dict[str, Any], group: str, until: Any) -> None:
    sink = S3Sink("s3-test", S3Config.model_validate(config))
    loop = SinkLoop(
        sink,
        kafka=KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap}),
        registry=RegistrySettings(url=registry.url),
        group_id=group,
    )
    with running(loop):
        wait_for(until, timeout=60, what="the sink to commit")


def test_parquet_objects_by_hour_and_offset_range_and_replay_overwrites(kafka: Any, registry: Any, s3: Any) -> None:
    topic = kafka.create_topic()
    bucket = s3.create_bucket()
    produce_at(
        kafka.bootstrap,
        registry,
        topic,
        [
            ("e1", 1.0, HOUR_10),
            ("e2", 2.0, HOUR_10 + 60_000),
            ("e3", 3.0, HOUR_10 + 120_000),
            ("e1", None, HOUR_10 + 180_000),
            ("e4", 4.0, HOUR_10 + 3_600_000),
        ],
    )
    config = {
        **s3.sink_config(bucket),
        "topics": [topic],
        "flush_records": 3,
        "flush_seconds": 1.0,
        "prefix": "archive/",
    }
    group = f"g-{uuid.uuid4().hex}"
    run_sink(kafka, registry, config, group, lambda: committed_offset(kafka.bootstrap, group, topic) == 5)

    found = objects(s3, bucket)
    base = f"archive/{topic}/date=2024-01-01"
    first_key = f"{base}/hour=10/{topic}+0+{0:020d}+{3:020d}.parquet"
    assert sorted(found) == [first_key, f"{base}/hour=11/{topic}+0+{4:020d}+{4:020d}.parquet"]
    first = found[first_key].to_pylist()
    assert [(r["_key"], r["amount"], r["_offset"], r["_deleted"]) for r in first] == [
        ("e1", 1.0, 0, False),
        ("e2", 2.0, 1, False),
        ("e3", 3.0, 2, False),
        ("e1", None, 3, True),
    ]

    replay = f"g-{uuid.uuid4().hex}"
    run_sink(kafka, registry, config, replay, lambda: committed_offset(kafka.bootstrap, replay, topic) == 5)
    assert sorted(objects(s3, bucket)) == sorted(found)


def test_unreachable_s3_commits_nothing(kafka: Any, registry: Any, s3: Any) -> None:
    topic = kafka.create_topic()
    produce_at(kafka.bootstrap, registry, topic, [("e1", 1.0, HOUR_10)])
    config = {**s3.sink_config("no-such-bucket-here"), "topics": [topic], "flush_records": 1}
    sink = S3Sink("s3-down", S3Config.model_validate(config))
    group = f"g-{uuid.uuid4().hex}"
    loop = SinkLoop(
        sink,
        kafka=KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap}),
        registry=RegistrySettings(url=registry.url),
        group_id=group,
    )
    with running(loop):
        wait_for(lambda: loop._consumer.assignment(), what="assignment")
        wait_for(lambda: sink._appended, what="the record buffered")
        assert committed_offset(kafka.bootstrap, group, topic) < 0
        s3.client().create_bucket(Bucket="no-such-bucket-here")
        wait_for(lambda: committed_offset(kafka.bootstrap, group, topic) == 1, what="commit once the bucket exists")
