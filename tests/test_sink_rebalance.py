"""Sinks across rebalances and crashes, against the real broker, registry, PostgreSQL and moto's S3: the warehouse
upsert guard and a zombie's S3 upload on their own; two `headwater connect run` processes sharing the partitions of
a topic (chaos e); a sink SIGKILLed mid-batch then restarted (chaos b); partitions handed over while a batch is
retried; a sink stalled out of its group. Each ends with the warehouse holding exactly one row per key with its
latest values (and position), every record in the S3 objects, and the committed offsets at the end."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow.parquet as pq
import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.base import SinkRecord
from connectors.embedded_postgres import EmbeddedPostgres
from connectors.sink_loop import SinkLoop
from connectors.sinks.duckdb import DuckDBConfig, DuckDBSink
from connectors.sinks.postgres import PostgresConfig, PostgresSink
from connectors.sinks.s3 import S3Config, S3Sink
from connectors.sinks.warehouse import WarehouseSink
from headwater.settings import KafkaSettings, RegistrySettings
from schemas.serde import AvroDeserializer, AvroSerializer
from tests.connect_support import read_topic, running, start_connect, wait_for

SCHEMA = {
    "type": "record",
    "name": "Account",
    "namespace": "test",
    "fields": [{"name": "account_id", "type": "string"}, {"name": "version", "type": "int"}],
}
SCHEMA_TEXT = json.dumps(SCHEMA)
PARTITIONS = 4
# Short group timeouts so a SIGKILLed member's partitions move within seconds (the broker's minimum session).
FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
OBJECT_NAME = re.compile(r"\+(?P<partition>\d+)\+(?P<first>\d{20})\+(?P<last>\d{20})\.parquet$")


def account(key: str, version: int) -> dict[str, Any]:
    return {"account_id": key, "version": version}


# --- the upsert guard, written straight through the sink ---------------------------------------------------------


def record(key: str, version: int | None, offset: int, partition: int = 0) -> SinkRecord:
    return SinkRecord(
        topic="test.accounts.enriched",
        partition=partition,
        offset=offset,
        key=key,
        value=None if version is None else account(key, version),
        schema_id=None if version is None else 1,
        raw_key=key.encode(),
        raw_value=None,
        headers=[],
        timestamp_ms=0,
    )


@contextmanager
def warehouse(kind: str, tmp_path: Path, postgres: Any) -> Iterator[tuple[WarehouseSink[Any], Callable[[str], Any]]]:
    """A sink of `kind` on a fresh database, and a function running one SQL statement against that database."""
    table = "test_accounts_enriched"
    if kind == "postgres":
        dsn = postgres.create_database()

        def query(statement: str) -> Any:
            with psycopg.connect(dsn, autocommit=True) as conn:
                cursor = conn.execute(statement)
                return cursor.fetchall() if cursor.description else None

        sink: WarehouseSink[Any] = PostgresSink(
            "pg-guard", PostgresConfig.model_validate({"dsn": dsn, "topics": ["x"]})
        )
    else:
        database = tmp_path / "guard.duckdb"

        def query(statement: str) -> Any:
            with duckdb.connect(str(database)) as conn:
                result = conn.execute(statement)
                return result.fetchall() if result.description else None

        sink = DuckDBSink("duckdb-guard", DuckDBConfig.model_validate({"database": database, "topics": ["x"]}))
    # A table as sinks created it before rows carried their position: it must gain the columns.
    query(f"CREATE TABLE {table} (_key text PRIMARY KEY, _hw_source text, account_id text, version integer)")
    query(f"INSERT INTO {table} VALUES ('legacy', 'test.accounts.enriched/0/0', 'legacy', 0)")
    try:
        yield sink, query
    finally:
        sink.close()


@pytest.mark.parametrize("kind", ["postgres", "duckdb"])
def test_an_older_offset_never_replaces_a_newer_row(kind: str, tmp_path: Path, postgres: Any) -> None:
    with warehouse(kind, tmp_path, postgres) as (sink, query):

        def write(*records: SinkRecord) -> None:
            assert sink.write(records, lambda _id: SCHEMA_TEXT) == []

        def rows() -> list[tuple[Any, ...]]:
            found: list[tuple[Any, ...]] = query(
                "SELECT _key, version, _hw_partition, _hw_offset FROM test_accounts_enriched ORDER BY _key"
            )
            return found

        # The row from before the position columns (NULL position) is replaced by any record.
        write(record("a", 5, offset=50), record("b", 5, offset=51), record("legacy", 1, offset=1))
        newer = [("a", 5, 0, 50), ("b", 5, 0, 51), ("legacy", 1, 0, 1)]
        assert rows() == newer
        # A zombie's batch from before a rebalance: older offsets of the same partition change nothing.
        write(record("a", 3, offset=30), record("b", None, offset=31))
        assert rows() == newer
        # The same record again, a newer tombstone, and a key arriving from another partition (only a
        # repartition moves a key) replacing the row whatever its offset.
        write(record("a", 5, offset=50), record("c", 1, offset=60), record("d", 9, offset=500, partition=1))
        write(record("c", None, offset=61), record("d", 2, offset=2, partition=0))
        assert rows() == [("a", 5, 0, 50), ("b", 5, 0, 51), ("d", 2, 0, 2), ("legacy", 1, 0, 1)]


def test_a_zombie_s3_upload_never_replaces_the_new_owners_object(s3: Any) -> None:
    """An owner that has not yet seen its partition revoked (stalled past its session) uploads what it buffered
    after the new owner re-read the partition from the same commit and uploaded a longer range: both objects
    stay, with the same contents where they overlap, and no record is lost."""
    bucket = s3.create_bucket()

    def owner(name: str, flush_records: int) -> S3Sink:
        config = {**s3.sink_config(bucket), "topics": ["test.accounts.enriched"], "flush_records": flush_records}
        return S3Sink(name, S3Config.model_validate(config))

    new_owner, zombie = owner("s3-new-owner", 120), owner("s3-zombie", 50)
    records = [record(f"k{offset}", 1, offset) for offset in range(120)]
    try:
        assert new_owner.write(records, lambda _id: SCHEMA_TEXT) == []
        assert zombie.write(records[:50], lambda _id: SCHEMA_TEXT) == []
    finally:
        new_owner.close()
        zombie.close()

    archived: dict[int, set[str]] = {}
    client = s3.client()
    for item in client.list_objects_v2(Bucket=bucket)["Contents"]:
        body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for row in pq.read_table(io.BytesIO(body)).to_pylist():
            archived.setdefault(row["_offset"], set()).add(row["_key"])
    assert archived == {offset: {f"k{offset}"} for offset in range(120)}


# --- live sink processes ------------------------------------------------------------------------------------------


def produce_accounts(kafka: Any, registry: Any, topic: str, keys: int, versions: range) -> None:
    """Each version of keys k0.. in turn; key k<i> always goes to partition i mod PARTITIONS, so every
    partition gets the same number of records."""
    serializer = AvroSerializer(registry.client(), f"{topic}-value", SCHEMA)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for version in versions:
        for i in range(keys):
            value = serializer.encode(account(f"k{i}", version))
            producer.produce(topic, key=f"k{i}".encode(), value=value, partition=i % PARTITIONS)
            producer.poll(0)
    assert producer.flush(30) == 0


def write_run_config(path: Path, kafka: Any, registry: Any, connectors: list[dict[str, Any]]) -> Path:
    data = {
        "kafka": {"bootstrap.servers": kafka.bootstrap, **FAST_GROUP},
        "registry": {"url": registry.url},
        "connectors": connectors,
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def committed(bootstrap: str, group: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
        return [tp.offset for tp in sorted(found, key=lambda tp: tp.partition)]
    finally:
        consumer.close()


def ends(bootstrap: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)]
    finally:
        consumer.close()


def members(kafka: Any, group: str) -> list[Any]:
    admin = kafka.admin()  # kept referenced until the result is in
    members: list[Any] = admin.describe_consumer_groups([group])[group].result(timeout=30).members
    return members


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(30)


class Run:
    """One topic, a PostgreSQL and an S3 sink on it in one `connect run` config, and the processes started."""

    def __init__(self, kafka: Any, registry: Any, postgres: Any, s3: Any, tmp_path: Path, **s3_config: Any) -> None:
        self.kafka, self.registry, self.s3, self.tmp_path = kafka, registry, s3, tmp_path
        self.topic = kafka.create_topic(partitions=PARTITIONS)
        self.table = self.topic.replace(".", "_")
        self.dsn = postgres.create_database()
        self.bucket = s3.create_bucket()
        suffix = uuid.uuid4().hex[:8]
        self.pg_name, self.s3_name = f"pg-{suffix}", f"s3-{suffix}"
        self.config = write_run_config(
            tmp_path / "connect.yaml",
            kafka,
            registry,
            [
                {
                    "name": self.pg_name,
                    "connector": "postgres",
                    "config": {"dsn": self.dsn, "topics": [self.topic], "batch_size": 500},
                },
                {
                    "name": self.s3_name,
                    "connector": "s3",
                    "config": {**s3.sink_config(self.bucket), "topics": [self.topic], **s3_config},
                },
            ],
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        process = start_connect(self.config, log, "--status-port", "0")
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            stop(process)

    def produce(self, keys: int, versions: range) -> None:
        produce_accounts(self.kafka, self.registry, self.topic, keys, versions)

    def committed(self, sink: str) -> list[int]:
        return committed(self.kafka.bootstrap, f"headwater-connect-{sink}", self.topic)

    def shared(self, sink: str) -> bool:
        """Whether two members of the sink's group each own some partitions."""
        owners = members(self.kafka, f"headwater-connect-{sink}")
        return sum(1 for member in owners if member.assignment.topic_partitions) == 2

    def caught_up(self) -> bool:
        end = ends(self.kafka.bootstrap, self.topic)
        return self.committed(self.pg_name) == end and self.committed(self.s3_name) == end

    def expected(self) -> tuple[dict[tuple[int, int], tuple[str, int]], dict[str, tuple[int, int, int]]]:
        """Every record as {(partition, offset): (key, version)}, and per key its latest (version, partition,
        offset), read back from the topic."""
        total = sum(ends(self.kafka.bootstrap, self.topic))
        deserializer = AvroDeserializer(self.registry.client())
        records: dict[tuple[int, int], tuple[str, int]] = {}
        latest: dict[str, tuple[int, int, int]] = {}
        for message in read_topic(self.kafka.bootstrap, self.topic, total):
            key, partition, offset = (message.key() or b"").decode(), message.partition(), message.offset()
            assert partition is not None and offset is not None
            version = int(deserializer.decode(message.value())["version"])
            records[(partition, offset)] = (key, version)
            if key not in latest or offset > latest[key][2]:
                latest[key] = (version, partition, offset)
        return records, latest

    def assert_warehouse_exact(self, latest: dict[str, tuple[int, int, int]]) -> None:
        with psycopg.connect(self.dsn) as conn:
            found = conn.execute(f"SELECT _key, version, _hw_partition, _hw_offset FROM {self.table}").fetchall()
        assert len(found) == len(latest), "one row per key"
        assert {key: (version, partition, offset) for key, version, partition, offset in found} == latest

    def objects(self) -> dict[str, list[dict[str, Any]]]:
        client = self.s3.client()
        listed = client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {
            item["Key"]: pq.read_table(
                io.BytesIO(client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read())
            ).to_pylist()
            for item in listed
        }

    def archived(self) -> dict[tuple[int, int], list[tuple[str, int]]]:
        """Every (partition, offset) in the bucket with the (key, version) of each copy, checking that each object
        holds exactly the offset range its name says."""
        copies: dict[tuple[int, int], list[tuple[str, int]]] = {}
        for name, rows in self.objects().items():
            match = OBJECT_NAME.search(name)
            assert match is not None, f"object name {name} names no offset range"
            partition = int(match["partition"])
            offsets = [row["_offset"] for row in rows]
            assert offsets == sorted(offsets) and (offsets[0], offsets[-1]) == (int(match["first"]), int(match["last"]))
            for row in rows:
                assert row["_partition"] == partition
                copies.setdefault((partition, row["_offset"]), []).append((row["_key"], row["version"]))
        return copies


def test_two_sink_processes_and_a_rebalance_mid_run_end_exact(
    kafka: Any, registry: Any, postgres: Any, s3: Any, tmp_path: Path
) -> None:
    """Chaos (e). Process A buffers 50 records of every partition for S3, then B joins and takes half of them:
    A must drop what it buffered for those (never upload it, never commit it) and B re-reads them from the last
    commit. B cuts a first object of 120+ records by size at once, and the last ~70 by time 30 s later, after A's
    stale buffers (opened before the rebalance) would have been flushed: the objects of the two owners never
    overlap, and the warehouse ends with each key's latest row."""
    run = Run(kafka, registry, postgres, s3, tmp_path, flush_records=120, flush_seconds=30.0, batch_size=25)
    try:
        first = tmp_path / "a.log"
        run.start(first)
        run.produce(keys=200, versions=range(1))
        phase_one = ends(kafka.bootstrap, run.topic)
        wait_for(lambda: run.committed(run.pg_name) == phase_one, timeout=90, what="A writes the first records")
        # The S3 sink commits each partition's first buffered offset: every partition has a buffer in A.
        wait_for(lambda: run.committed(run.s3_name) == [0] * PARTITIONS, timeout=60, what="A buffers them for S3")

        run.start(tmp_path / "b.log")
        for sink in (run.pg_name, run.s3_name):
            wait_for(lambda sink=sink: run.shared(sink), timeout=90, what=f"A and B sharing the partitions of {sink}")
        run.produce(keys=200, versions=range(1, 4))
        wait_for(run.caught_up, timeout=180, what="both sinks committed to the end")
    finally:
        run.stop_all()

    records, latest = run.expected()
    run.assert_warehouse_exact(latest)
    copies = run.archived()
    assert sorted(copies) == sorted(records), "every record archived"
    doubled = {position: found for position, found in copies.items() if len(found) > 1}
    assert not doubled, f"{len(doubled)} records archived by both owners, e.g. {next(iter(doubled.items()))}"
    assert {position: found[0] for position, found in copies.items()} == records
    # The case under test did happen: A still held open buffers when its partitions were revoked.
    assert f"event=buffer_dropped sink={run.s3_name}" in first.read_text(encoding="utf-8", errors="replace")


def test_sink_killed_mid_batch_and_restarted_ends_exact(
    kafka: Any, registry: Any, postgres: Any, s3: Any, tmp_path: Path
) -> None:
    """Chaos (b). SIGKILL while batches are being written, restart: the warehouse holds each key's latest values
    and position, S3 holds every record (an object re-cut after the crash may repeat records, never contradict
    them), and both sinks' committed offsets reach the end."""
    run = Run(kafka, registry, postgres, s3, tmp_path, flush_records=1_000, flush_seconds=2.0, batch_size=500)
    try:
        run.produce(keys=2_000, versions=range(5))
        end = ends(kafka.bootstrap, run.topic)
        process = run.start(tmp_path / "a.log")
        wait_for(lambda: sum(max(o, 0) for o in run.committed(run.pg_name)) > 0, timeout=90, what="a first commit")
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        assert run.committed(run.pg_name) != end, "killed after the end: not mid-run"

        run.start(tmp_path / "b.log")
        wait_for(run.caught_up, timeout=180, what="both sinks committed to the end after the restart")
    finally:
        run.stop_all()

    records, latest = run.expected()
    run.assert_warehouse_exact(latest)
    copies = run.archived()
    assert sorted(copies) == sorted(records), "every record archived"
    assert all(found == [records[position]] * len(found) for position, found in copies.items())


def test_partitions_assigned_while_a_batch_is_retried_are_not_skipped(
    kafka: Any, registry: Any, postgres_server: EmbeddedPostgres, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """With the warehouse down, sink A retries its batch while polling its consumer, sharing the topic with a
    `connect run` process B. B stops: the rebalance hands A partitions it never paused, so A's polls fetch their
    records during the wait. They must be consumed after the outage, not dropped: every partition's committed
    offset reaches the end and every key has its latest row."""
    caplog.set_level(logging.INFO, logger="connectors.sink_loop")
    dsn = postgres_server.start()
    postgres_server.stop()
    topic = kafka.create_topic(partitions=PARTITIONS)
    name = f"pg-{uuid.uuid4().hex[:8]}"
    group = f"headwater-connect-{name}"
    sink_config = {"dsn": dsn, "topics": [topic], "connect_timeout": 2}
    config = write_run_config(
        tmp_path / "connect.yaml", kafka, registry, [{"name": name, "connector": "postgres", "config": sink_config}]
    )
    first = SinkLoop(
        PostgresSink(name, PostgresConfig.model_validate(sink_config)),
        kafka=KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap, **FAST_GROUP}),
        registry=RegistrySettings(url=registry.url),
        group_id=group,
    )

    def owned() -> int:
        return len(first._consumer.assignment())

    def long_wait_after(moment: float) -> bool:
        """A retry wait of 8 s or more begun after `moment`: the next rebalance lands inside it."""
        pattern = re.compile(rf"event=sink_retry sink={name} attempt=\d+ wait_s=(\S+)")
        return any(
            (match := pattern.match(r.getMessage())) and float(match[1]) >= 8 and r.created > moment
            for r in caplog.records
        )

    produce_accounts(kafka, registry, topic, keys=40, versions=range(1))
    with running(first, join_timeout=90):
        wait_for(lambda: owned() == PARTITIONS, what="A assigned every partition")
        second = start_connect(config, tmp_path / "b.log", "--status-port", "0")
        try:
            wait_for(lambda: owned() == PARTITIONS // 2, timeout=90, what="B taking half of the partitions")
            split = time.time()
            wait_for(lambda: long_wait_after(split), timeout=60, what="A waiting long between attempts")
            # Not in A's batch: A fetches these only once B's partitions come to it during the wait.
            produce_accounts(kafka, registry, topic, keys=40, versions=range(1, 3))
        finally:
            stop(second)
        wait_for(lambda: owned() == PARTITIONS, timeout=60, what="A assigned B's partitions")
        postgres_server.start()
        end = ends(kafka.bootstrap, topic)
        wait_for(lambda: committed(kafka.bootstrap, group, topic) == end, timeout=120, what="commits at the end")
    with psycopg.connect(dsn) as conn:
        found = conn.execute(f"SELECT _key, version FROM {topic.replace('.', '_')}").fetchall()
    assert sorted(found) == sorted((f"k{i}", 2) for i in range(40))


def test_a_sink_stalled_out_of_its_group_goes_on_without_committing_what_it_lost(
    kafka: Any, registry: Any, postgres: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A write blocked past max.poll.interval.ms makes the consumer leave its group. When the write finally
    returns, its commit is refused: the loop must go on (rejoin, re-read from the last commit) instead of dying
    on the refusal, and end with every offset committed and every key's latest row."""
    caplog.set_level(logging.INFO, logger="connectors.sink_loop")
    dsn = postgres.create_database()
    topic = kafka.create_topic(partitions=PARTITIONS)
    table = topic.replace(".", "_")
    group = f"g-{uuid.uuid4().hex}"
    stalled = {**FAST_GROUP, "max.poll.interval.ms": 7000}
    loop = SinkLoop(
        PostgresSink("pg-stalled", PostgresConfig.model_validate({"dsn": dsn, "topics": [topic]})),
        kafka=KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap, **stalled}),
        registry=RegistrySettings(url=registry.url),
        group_id=group,
    )
    produce_accounts(kafka, registry, topic, keys=40, versions=range(1))
    with running(loop, join_timeout=90):
        first = ends(kafka.bootstrap, topic)
        wait_for(lambda: committed(kafka.bootstrap, group, topic) == first, timeout=60, what="the first records")
        with psycopg.connect(dsn) as blocker:
            blocker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            produce_accounts(kafka, registry, topic, keys=40, versions=range(1, 3))
            wait_for(lambda: not members(kafka, group), timeout=60, what="A out of its group while blocked")
        end = ends(kafka.bootstrap, topic)
        wait_for(lambda: committed(kafka.bootstrap, group, topic) == end, timeout=120, what="commits at the end")
    assert "event=commit_refused sink=pg-stalled" in caplog.text, "the stalled write's commit was not refused"
    with psycopg.connect(dsn) as conn:
        found = conn.execute(f"SELECT _key, version FROM {table}").fetchall()
    assert sorted(found) == sorted((f"k{i}", 2) for i in range(40))
