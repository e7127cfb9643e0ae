"""Connector throughput: PostgreSQL and DuckDB sinks end to end from a topic (consume, Avro-decode, write, commit)
against a naive row-by-row `executemany` insert of the same rows, and the SQL source from PostgreSQL to a topic.

Starts its own embedded Kafka broker, registry process and embedded PostgreSQL under a temp dir:

    .venv/bin/python bench/connectors.py [--records 200000]
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# This script shares its name with the package it measures: drop its own folder from the import path so that
# `connectors` below is the package, not this file.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import shutil
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from connectors.embedded_postgres import EmbeddedPostgres
from connectors.offsets import OffsetStore
from connectors.sink_loop import SinkLoop
from connectors.sinks.duckdb import DuckDBConfig, DuckDBSink
from connectors.sinks.postgres import PostgresConfig, PostgresSink
from connectors.source_loop import SourceLoop
from connectors.sources.sql import SqlConfig, SqlSource
from headwater.ports import free_port
from headwater.settings import KafkaSettings, RegistrySettings
from schemas.client import registry_client
from schemas.registry.process import RegistryProcess
from schemas.serde import AvroDeserializer, AvroSerializer
from streams.broker import EmbeddedBroker

COLUMNS = 20
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "BenchRow",
    "namespace": "bench",
    "fields": [
        {"name": "id", "type": "string"},
        *({"name": f"i{n}", "type": "long"} for n in range(6)),
        *({"name": f"d{n}", "type": ["null", "double"], "default": None} for n in range(6)),
        *({"name": f"s{n}", "type": ["null", "string"], "default": None} for n in range(6)),
        {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def row(n: int) -> dict[str, Any]:
    value: dict[str, Any] = {"id": f"id-{n:08d}"}
    value.update({f"i{k}": n * (k + 1) for k in range(6)})
    value.update({f"d{k}": n / (k + 1) for k in range(6)})
    value.update({f"s{k}": f"text-{k}-{n % 1000}" for k in range(6)})
    value["updated_at"] = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    return value


def produce(bootstrap: str, registry: RegistrySettings, topic: str, records: int) -> None:
    serializer = AvroSerializer(registry_client(registry), f"{topic}-value", SCHEMA)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000})
    for n in range(records):
        value = row(n)
        while True:
            try:
                producer.produce(topic, key=value["id"].encode(), value=serializer.encode(value))
                break
            except BufferError:
                producer.poll(0.1)
        if n % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)


def sink_rate(sink: Any, kafka: KafkaSettings, registry: RegistrySettings, records: int) -> float:
    loop = SinkLoop(sink, kafka=kafka, registry=registry, group_id=f"bench-{uuid.uuid4().hex}")
    try:
        start = time.perf_counter()
        loop.run_until_caught_up(timeout=600)
        return records / (time.perf_counter() - start)
    finally:
        loop.close()


def consume_decoded(bootstrap: str, registry: RegistrySettings, topic: str, records: int) -> list[tuple[Any, ...]]:
    """Consume and decode like a sink, returning flat rows (the baseline's input, timed as part of it)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"naive-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    deserializer = AvroDeserializer(registry_client(registry))
    names = [f["name"] for f in SCHEMA["fields"]]
    rows: list[tuple[Any, ...]] = []
    while len(rows) < records:
        for message in consumer.consume(10_000, timeout=1.0):
            if message.error() is None and message.value() is not None:
                value = deserializer.decode(message.value() or b"")
                rows.append((value["id"], *(value[name] for name in names), message.topic()))
    consumer.close()
    return rows[:records]


def naive_rate(bootstrap: str, registry: RegistrySettings, topic: str, records: int, insert: Any) -> float:
    start = time.perf_counter()
    rows = consume_decoded(bootstrap, registry, topic, records)
    insert(rows)
    return records / (time.perf_counter() - start)


def naive_columns() -> tuple[str, str]:
    names = ["_key", *(f["name"] for f in SCHEMA["fields"]), "_hw_source"]
    return ", ".join(f'"{n}"' for n in names), ", ".join(["%s"] * len(names))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--naive-duckdb-records", type=int, default=10_000)
    args = parser.parse_args()
    records: int = args.records
    work = Path(tempfile.mkdtemp(prefix="headwater-bench-"))
    work.chmod(0o755)
    broker = EmbeddedBroker(work / "kafka", port=free_port(), heap="1g")
    postgres = EmbeddedPostgres(work / "pg")
    registry_process: RegistryProcess | None = None
    try:
        bootstrap = broker.start().bootstrap or ""
        registry_process = RegistryProcess(bootstrap, work / "registry.log").start()
        url = registry_process.url
        dsn = postgres.start()
        kafka = KafkaSettings.model_validate({"bootstrap.servers": bootstrap})
        registry = RegistrySettings(url=url)
        topic = "bench.rows.enriched"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        started = time.perf_counter()
        produce(bootstrap, registry, topic, records)
        print(f"produced {records} records of {COLUMNS} columns in {time.perf_counter() - started:.1f}s")

        pg_rate = sink_rate(
            PostgresSink(
                "bench-pg", PostgresConfig.model_validate({"dsn": dsn, "topics": [topic], "batch_size": 20_000})
            ),
            kafka,
            registry,
            records,
        )
        with psycopg.connect(dsn) as conn:
            columns, params = naive_columns()
            conn.execute("CREATE TABLE naive (LIKE bench_rows_enriched INCLUDING ALL)")

            def pg_insert(rows: list[tuple[Any, ...]]) -> None:
                with conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO naive ({columns}) VALUES ({params}) ON CONFLICT (_key) DO UPDATE SET "
                        '"i0" = EXCLUDED."i0"',
                        rows,
                    )
                conn.commit()

            pg_naive = naive_rate(bootstrap, registry, topic, records, pg_insert)

        database = work / "bench.duckdb"
        duck_rate = sink_rate(
            DuckDBSink(
                "bench-duck",
                DuckDBConfig.model_validate({"database": database, "topics": [topic], "batch_size": 50_000}),
            ),
            kafka,
            registry,
            records,
        )
        with duckdb.connect(str(database)) as conn:
            conn.execute("CREATE TABLE naive AS SELECT * FROM bench_rows_enriched LIMIT 0")
            columns, _ = naive_columns()
            marks = ", ".join(["?"] * (COLUMNS + 2))

            def duck_insert(rows: list[tuple[Any, ...]]) -> None:
                conn.executemany(f"INSERT INTO naive ({columns}) VALUES ({marks})", rows)

            duck_naive = naive_rate(bootstrap, registry, topic, args.naive_duckdb_records, duck_insert)

        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE TABLE erp_rows AS SELECT * FROM bench_rows_enriched")
            conn.execute("ALTER TABLE erp_rows ADD PRIMARY KEY (_key)")
        source_topic = "bench.rows.raw"
        admin.create_topics([NewTopic(source_topic, 1, 1)])[source_topic].result(30)
        source = SqlSource(
            "bench-sql",
            SqlConfig.model_validate(
                {
                    "url": dsn.replace("postgresql://", "postgresql+psycopg://"),
                    "tables": [{"table": "erp_rows", "topic": source_topic}],
                    "batch_size": 20_000,
                    "poll_interval": 0.5,
                }
            ),
        )
        loop = SourceLoop(source, kafka=kafka, registry=registry, offsets=OffsetStore(kafka))
        stop = threading.Event()
        started = time.perf_counter()
        worker = threading.Thread(target=loop.run, args=(stop,))
        worker.start()
        while loop.produced < records:
            time.sleep(0.05)
        source_rate = records / (time.perf_counter() - started)
        stop.set()
        worker.join()
        loop.close()
        with psycopg.connect(dsn) as conn:
            started = time.perf_counter()
            conn.execute("SELECT * FROM erp_rows").fetchall()
            fetch_rate = records / (time.perf_counter() - started)

        print(f"PostgreSQL sink (COPY + upsert)  : {pg_rate:>10,.0f} rows/s   target 50,000")
        print(
            f"PostgreSQL naive executemany     : {pg_naive:>10,.0f} rows/s   ratio sink/naive {pg_rate / pg_naive:.1f}x"
        )
        print(f"DuckDB sink (Arrow + upsert)     : {duck_rate:>10,.0f} rows/s   target 100,000")
        print(
            f"DuckDB naive executemany         : {duck_naive:>10,.0f} rows/s   "
            f"ratio sink/naive {duck_rate / duck_naive:.1f}x"
            f" ({args.naive_duckdb_records} rows)"
        )
        print(
            f"SQL source (PostgreSQL -> topic) : {source_rate:>10,.0f} rows/s   target 20,000; "
            f"plain SELECT fetch {fetch_rate:,.0f} rows/s, ratio {source_rate / fetch_rate:.2f}"
        )
    finally:
        if registry_process is not None:
            registry_process.terminate(30)
        postgres.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
