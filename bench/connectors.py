"""Connector throughput: PostgreSQL and DuckDB sinks end to end from a topic (consume, Avro-decode, write, commit)
against a naive row-by-row `executemany` insert of the same rows, and the SQL source from PostgreSQL to a topic.

Starts its own embedded Kafka broker, registry process and embedded PostgreSQL under a temp dir, or runs against
existing ones (a fresh database is created on the given server and dropped afterwards):

    .venv/bin/python bench/connectors.py [--records 200000] [--profile]
    .venv/bin/python bench/connectors.py --smoke --bootstrap-servers B --registry-url R --dsn postgresql://...

`--profile` prints where each measured run spends its time (cProfile, the functions with the most own time).
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# This script shares its name with the package it measures: drop its own folder from the import path so that
# `connectors` below is the package, not this file.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import cProfile
import io
import os
import pstats
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

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

T = TypeVar("T")
COLUMNS = 20
SMOKE_RECORDS = 2_000
PROFILE_LINES = 14
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


@dataclass
class Services:
    bootstrap: str
    registry_url: str
    dsn: str

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings.model_validate({"bootstrap.servers": self.bootstrap})

    @property
    def registry(self) -> RegistrySettings:
        return RegistrySettings(url=self.registry_url)


class Profiler:
    """Runs measured calls under cProfile when asked, and keeps each one's top functions by own time."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.reports: list[tuple[str, str]] = []

    def run(self, label: str, call: Callable[[], T]) -> T:
        if not self.enabled:
            return call()
        profile = cProfile.Profile()
        result = profile.runcall(call)
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(PROFILE_LINES)
        self.reports.append((label, out.getvalue()))
        return result

    def print(self) -> None:
        for label, text in self.reports:
            print(f"\n=== profile: {label} (own time, top {PROFILE_LINES}) ===")
            lines = text.splitlines()
            start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
            print("\n".join(lines[start:]))


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


def sink_rate(sink: Any, services: Services, records: int) -> float:
    loop = SinkLoop(sink, kafka=services.kafka, registry=services.registry, group_id=f"bench-{uuid.uuid4().hex}")
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


def naive_rate(services: Services, topic: str, records: int, insert: Callable[[list[tuple[Any, ...]]], None]) -> float:
    start = time.perf_counter()
    rows = consume_decoded(services.bootstrap, services.registry, topic, records)
    insert(rows)
    return records / (time.perf_counter() - start)


def naive_columns() -> tuple[str, str]:
    names = ["_key", *(f["name"] for f in SCHEMA["fields"]), "_hw_source"]
    return ", ".join(f'"{n}"' for n in names), ", ".join(["%s"] * len(names))


def pg_naive_rate(services: Services, topic: str, table: str, records: int) -> float:
    with psycopg.connect(services.dsn) as conn:
        columns, params = naive_columns()
        conn.execute(f"CREATE TABLE naive (LIKE {table} INCLUDING ALL)")

        def insert(rows: list[tuple[Any, ...]]) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO naive ({columns}) VALUES ({params}) ON CONFLICT (_key) DO UPDATE SET "
                    '"i0" = EXCLUDED."i0"',
                    rows,
                )
            conn.commit()

        return naive_rate(services, topic, records, insert)


def duck_naive_rate(services: Services, topic: str, database: Path, table: str, records: int) -> float:
    with duckdb.connect(str(database)) as conn:
        conn.execute(f"CREATE TABLE naive AS SELECT * FROM {table} LIMIT 0")
        columns, _ = naive_columns()
        marks = ", ".join(["?"] * (COLUMNS + 2))

        def insert(rows: list[tuple[Any, ...]]) -> None:
            conn.executemany(f"INSERT INTO naive ({columns}) VALUES ({marks})", rows)

        return naive_rate(services, topic, records, insert)


def source_rate(services: Services, table: str, topic: str, records: int, profiler: Profiler) -> float:
    with psycopg.connect(services.dsn) as conn:
        conn.execute(f"CREATE TABLE erp_rows AS SELECT * FROM {table}")
        conn.execute("ALTER TABLE erp_rows ADD PRIMARY KEY (_key)")
    source = SqlSource(
        "bench-sql",
        SqlConfig.model_validate(
            {
                "url": services.dsn.replace("postgresql://", "postgresql+psycopg://"),
                "tables": [{"table": "erp_rows", "topic": topic}],
                "batch_size": 20_000,
                "poll_interval": 0.5,
            }
        ),
    )
    loop = SourceLoop(source, kafka=services.kafka, registry=services.registry, offsets=OffsetStore(services.kafka))
    stop = threading.Event()
    started = time.perf_counter()
    # The source runs on its own thread: that is the thread to profile.
    worker = threading.Thread(target=profiler.run, args=("SQL source", lambda: loop.run(stop)))
    worker.start()
    deadline = started + 600
    try:
        while loop.produced < records:
            if time.perf_counter() > deadline or not worker.is_alive():
                raise SystemExit(f"SQL source produced {loop.produced} of {records} rows")
            time.sleep(0.02)
        return records / (time.perf_counter() - started)
    finally:
        stop.set()
        worker.join()
        loop.close()


def fetch_rate(dsn: str, records: int) -> float:
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        conn.execute("SELECT * FROM erp_rows").fetchall()
        return records / (time.perf_counter() - started)


@contextmanager
def bench_database(dsn: str) -> Iterator[str]:
    """A fresh database on the server of `dsn` (a postgresql:// URL: the SQL source needs one), dropped on the way
    out."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(dsn)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def services_for(args: argparse.Namespace, work: Path) -> Iterator[Services]:
    """The services given on the command line, or embedded ones stopped on the way out."""
    if args.bootstrap_servers:
        if not (args.registry_url and args.dsn):
            raise SystemExit("--bootstrap-servers needs --registry-url and --dsn too")
        with bench_database(args.dsn) as dsn:
            yield Services(args.bootstrap_servers, args.registry_url, dsn)
        return
    broker = EmbeddedBroker(work / "kafka", port=free_port(), heap="1g")
    postgres = EmbeddedPostgres(work / "pg")
    registry_process: RegistryProcess | None = None
    try:
        bootstrap = broker.start().bootstrap or ""
        registry_process = RegistryProcess(bootstrap, work / "registry.log").start()
        yield Services(bootstrap, registry_process.url, postgres.start())
    finally:
        if registry_process is not None:
            registry_process.terminate(30)
        postgres.stop()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--naive-duckdb-records", type=int, default=10_000)
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_RECORDS:,} records: checks the benchmark runs")
    parser.add_argument("--profile", action="store_true", help="print where each measured run spends its time")
    parser.add_argument("--bootstrap-servers", help="an existing broker (with --registry-url and --dsn)")
    parser.add_argument("--registry-url")
    parser.add_argument("--dsn", help="an existing PostgreSQL server (postgresql:// URL); a fresh database is used")
    args = parser.parse_args()
    records: int = SMOKE_RECORDS if args.smoke else args.records
    naive_duck_records = min(records, args.naive_duckdb_records)
    profiler = Profiler(args.profile)
    run = uuid.uuid4().hex[:8]
    topic, source_topic = f"bench.rows{run}.enriched", f"bench.rows{run}.raw"
    table = f"bench_rows{run}_enriched"
    work = Path(tempfile.mkdtemp(prefix="headwater-bench-"))
    work.chmod(0o755)
    try:
        with services_for(args, work) as services:
            admin = AdminClient({"bootstrap.servers": services.bootstrap})
            for name in (topic, source_topic):
                admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
            started = time.perf_counter()
            produce(services.bootstrap, services.registry, topic, records)
            print(f"produced {records} records of {COLUMNS} columns in {time.perf_counter() - started:.1f}s")

            pg_config = PostgresConfig.model_validate({"dsn": services.dsn, "topics": [topic], "batch_size": 20_000})
            pg_rate = profiler.run(
                "PostgreSQL sink", lambda: sink_rate(PostgresSink("bench-pg", pg_config), services, records)
            )
            pg_naive = pg_naive_rate(services, topic, table, records)

            database = work / "bench.duckdb"
            duck_config = DuckDBConfig.model_validate({"database": database, "topics": [topic], "batch_size": 50_000})
            duck_rate = profiler.run(
                "DuckDB sink", lambda: sink_rate(DuckDBSink("bench-duck", duck_config), services, records)
            )
            duck_naive = duck_naive_rate(services, topic, database, table, naive_duck_records)

            sql_rate = source_rate(services, table, source_topic, records, profiler)
            plain_fetch = fetch_rate(services.dsn, records)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{records:,} records, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"PostgreSQL sink (COPY + upsert)  : {pg_rate:>10,.0f} rows/s   target 50,000")
    print(
        f"PostgreSQL naive executemany     : {pg_naive:>10,.0f} rows/s   ratio sink/naive {pg_rate / pg_naive:.2f}x"
        "   target 1.5x"
    )
    print(f"DuckDB sink (Arrow + upsert)     : {duck_rate:>10,.0f} rows/s   target 100,000")
    print(
        f"DuckDB naive executemany         : {duck_naive:>10,.0f} rows/s   "
        f"ratio sink/naive {duck_rate / duck_naive:.2f}x ({naive_duck_records:,} rows)"
    )
    print(
        f"SQL source (PostgreSQL -> topic) : {sql_rate:>10,.0f} rows/s   target 20,000; "
        f"plain SELECT fetch {plain_fetch:,.0f} rows/s, ratio {sql_rate / plain_fetch:.2f}"
    )
    profiler.print()


if __name__ == "__main__":
    main()
