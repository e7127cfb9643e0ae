"""PostgreSQL sink against the real broker, registry and PostgreSQL: upserts, tombstones, replay, schema
evolution, type conflicts, an outage, and a SIGKILL mid-run."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import psycopg

from connectors.embedded_postgres import EmbeddedPostgres
from connectors.sink_loop import SinkLoop
from connectors.sinks.postgres import PostgresConfig, PostgresSink
from headwater.envelope import ERROR_CLASS, ERROR_STAGE, SOURCE
from headwater.settings import KafkaSettings, RegistrySettings
from tests.connect_support import (
    committed_offset,
    end_offset,
    header,
    produce,
    produce_raw,
    read_topic,
    running,
    start_connect,
    wait_for,
    write_config,
)

V1 = {
    "type": "record",
    "name": "Customer",
    "namespace": "test",
    "fields": [
        {"name": "customer_id", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "score", "type": "int"},
        {
            "name": "address",
            "type": ["null", {"type": "record", "name": "Addr", "fields": [{"name": "city", "type": "string"}]}],
            "default": None,
        },
    ],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "tier", "type": ["null", "string"], "default": None}]}
V3_CONFLICT = {**V1, "fields": [{"name": "customer_id", "type": "string"}, {"name": "score", "type": "string"}]}


def customer(key: str, name: str, score: int, **extra: Any) -> dict[str, Any]:
    return {"customer_id": key, "name": name, "score": score, "address": None, **extra}


def sink_loop(kafka: Any, registry: Any, dsn: str, topic: str, group: str | None = None, **config: Any) -> SinkLoop:
    sink = PostgresSink("pg-test", PostgresConfig.model_validate({"dsn": dsn, "topics": [topic], **config}))
    return SinkLoop(
        sink,
        kafka=KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap}),
        registry=RegistrySettings(url=registry.url),
        group_id=group or f"g-{uuid.uuid4().hex}",
    )


def load(kafka: Any, registry: Any, dsn: str, topic: str, group: str | None = None) -> SinkLoop:
    loop = sink_loop(kafka, registry, dsn, topic, group)
    try:
        loop.run_until_caught_up(timeout=60)
    finally:
        loop.close()
    return loop


def rows(dsn: str, table: str, columns: str = "_key, name, score") -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT {columns} FROM {table} ORDER BY _key").fetchall()


def test_last_record_per_key_wins_tombstones_delete_and_replay_changes_nothing(
    kafka: Any, registry: Any, postgres: Any
) -> None:
    dsn = postgres.create_database()
    topic = kafka.create_topic()
    table = topic.replace(".", "_")
    produce(
        kafka.bootstrap,
        registry,
        topic,
        V1,
        [
            ("a", customer("a", "Ann", 1)),
            ("a", customer("a", "Ann", 2, address={"city": "Oslo"})),
            ("b", customer("b", "Bob", 3)),
            ("c", customer("c", "Cy", 4)),
            ("c", None),
        ],
    )
    load(kafka, registry, dsn, topic)
    assert rows(dsn, table) == [("a", "Ann", 2), ("b", "Bob", 3)]
    assert rows(dsn, table, "_key, address, _hw_source")[0] == ("a", {"city": "Oslo"}, f"{topic}/0/1")
    before = rows(dsn, table, "_key, xmin::text, name, score, address, _hw_source")

    load(kafka, registry, dsn, topic)  # a new group: the whole topic again

    assert rows(dsn, table, "_key, xmin::text, name, score, address, _hw_source") == before


def test_new_fields_add_columns_and_type_conflicts_go_to_the_dead_letter_topic(
    kafka: Any, registry: Any, postgres: Any
) -> None:
    dsn = postgres.create_database()
    topic = kafka.create_topic()
    table = topic.replace(".", "_")
    group = f"g-{uuid.uuid4().hex}"
    produce(kafka.bootstrap, registry, topic, V1, [("a", customer("a", "Ann", 1))])
    load(kafka, registry, dsn, topic, group)
    produce(kafka.bootstrap, registry, topic, V2, [("b", customer("b", "Bob", 2, tier="gold"))])
    registry.client().set_compatibility(subject_name=f"{topic}-value", level="NONE")
    produce(kafka.bootstrap, registry, topic, V3_CONFLICT, [("c", {"customer_id": "c", "score": "high"})])
    produce(kafka.bootstrap, registry, topic, V2, [("d", customer("d", "Dee", 4, tier="silver"))])

    loop = load(kafka, registry, dsn, topic, group)

    assert rows(dsn, table, "_key, name, score, tier") == [
        ("a", "Ann", 1, None),
        ("b", "Bob", 2, "gold"),
        ("d", "Dee", 4, "silver"),
    ]
    assert loop.dead_lettered == 1
    dead = read_topic(kafka.bootstrap, topic.rsplit(".", 1)[0] + ".dlq", 1)[0]
    assert dead.key() == b"c"
    assert header(dead, ERROR_STAGE) == "sink"
    assert header(dead, ERROR_CLASS) == "ColumnTypeConflict"
    assert header(dead, SOURCE) == f"{topic}/0/2"
    assert committed_offset(kafka.bootstrap, group, topic) == 4


def test_undecodable_value_is_dead_lettered_and_the_batch_goes_on(kafka: Any, registry: Any, postgres: Any) -> None:
    dsn = postgres.create_database()
    topic = kafka.create_topic()
    produce_raw(kafka.bootstrap, topic, b"x", b"not avro at all")
    produce(kafka.bootstrap, registry, topic, V1, [("a", customer("a", "Ann", 1))])
    loop = load(kafka, registry, dsn, topic)
    assert rows(dsn, topic.replace(".", "_")) == [("a", "Ann", 1)]
    dead = read_topic(kafka.bootstrap, topic.rsplit(".", 1)[0] + ".dlq", 1)[0]
    assert dead.value() == b"not avro at all"
    assert header(dead, ERROR_CLASS) == "WireFormatError"
    assert loop.dead_lettered == 1


def test_warehouse_down_is_retried_without_committing_then_resumes(
    kafka: Any, registry: Any, postgres_server: EmbeddedPostgres
) -> None:
    server = postgres_server
    dsn = server.start()
    server.stop()
    topic = kafka.create_topic()
    group = f"g-{uuid.uuid4().hex}"
    produce(kafka.bootstrap, registry, topic, V1, [(k, customer(k, k.upper(), 1)) for k in "abc"])
    loop = sink_loop(kafka, registry, dsn, topic, group)
    with running(loop, join_timeout=60):
        wait_for(lambda: loop._consumer.assignment(), what="partition assignment")
        assert committed_offset(kafka.bootstrap, group, topic) < 0
        server.start()
        wait_for(lambda: committed_offset(kafka.bootstrap, group, topic) == 3, what="commit after recovery")
        assert rows(dsn, topic.replace(".", "_")) == [("a", "A", 1), ("b", "B", 1), ("c", "C", 1)]


def test_sink_killed_mid_run_ends_with_one_row_per_key_and_latest_values(
    kafka: Any, registry: Any, postgres: Any, tmp_path: Path
) -> None:
    dsn = postgres.create_database()
    topic = kafka.create_topic()
    keys, versions = 2_000, 5
    produce(
        kafka.bootstrap,
        registry,
        topic,
        V1,
        [(f"k{i}", customer(f"k{i}", f"v{version}", version)) for version in range(versions) for i in range(keys)],
    )
    config = write_config(
        tmp_path / "sink.yaml",
        kafka.bootstrap,
        registry.url,
        [{"name": "pg-kill", "connector": "postgres", "config": {"dsn": dsn, "topics": [topic], "batch_size": 500}}],
    )
    group = "headwater-connect-pg-kill"
    process = start_connect(config, tmp_path / "connect.log")
    try:
        wait_for(lambda: committed_offset(kafka.bootstrap, group, topic) > 0, timeout=90, what="a first commit")
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    end = end_offset(kafka.bootstrap, topic)
    assert committed_offset(kafka.bootstrap, group, topic) < end, "killed after the end: not mid-run"

    process = start_connect(config, tmp_path / "connect.log")
    try:
        wait_for(lambda: committed_offset(kafka.bootstrap, group, topic) == end, timeout=120, what="catch-up")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    table = topic.replace(".", "_")
    with psycopg.connect(dsn) as conn:
        total, distinct, latest = conn.execute(
            f"SELECT count(*), count(DISTINCT _key), count(*) FILTER (WHERE score = {versions - 1}) FROM {table}"
        ).fetchone() or (0, 0, 0)
    assert (total, distinct, latest) == (keys, keys, keys)


def test_table_with_other_column_types_is_copied_as_text_after_binary_copy_is_refused(
    kafka: Any, registry: Any, postgres: Any, caplog: Any
) -> None:
    dsn = postgres.create_database()
    topic = kafka.create_topic()
    table = topic.replace(".", "_")
    with psycopg.connect(dsn) as conn:  # made elsewhere: a uuid and a smallint, which binary COPY cannot cast to
        conn.execute(f"CREATE TABLE {table} (_key text PRIMARY KEY, _hw_source text, customer_id uuid, score smallint)")
    ids = [str(uuid.uuid4()) for _ in range(3)]
    produce(kafka.bootstrap, registry, topic, V1, [(key, customer(key, key[:4], n)) for n, key in enumerate(ids)])
    loop = sink_loop(kafka, registry, dsn, topic, batch_size=1)
    caplog.set_level("WARNING", logger="connectors.sinks.postgres")
    try:
        loop.run_until_caught_up(timeout=60)
    finally:
        loop.close()

    written = rows(dsn, table, "_key, customer_id::text, name, score")
    assert written == sorted((key, key, key[:4], n) for n, key in enumerate(ids))
    assert loop.dead_lettered == 0
    refusals = [r for r in caplog.records if "event=binary_copy_refused" in r.getMessage()]
    assert len(refusals) == 1  # the table is remembered: the next batches go straight to text
