"""DuckDB sink against the real broker and registry: same upsert semantics as PostgreSQL, and the one-shot
`load_until_caught_up` entry point used by `headwater up`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from connectors.sinks.duckdb import load_until_caught_up
from headwater.settings import KafkaSettings, RegistrySettings
from tests.connect_support import produce

V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "test",
    "fields": [
        {"name": "order_number", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "lines", "type": {"type": "array", "items": "string"}},
        {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "channel", "type": ["null", "string"], "default": None}]}


def order(number: str, amount: float, **extra: Any) -> dict[str, Any]:
    return {"order_number": number, "amount": amount, "lines": ["x"], "placed_at": 1_700_000_000_000, **extra}


def test_load_until_caught_up_upserts_deletes_evolves_and_replays_idempotently(
    kafka: Any, registry: Any, tmp_path: Path
) -> None:
    topic = kafka.create_topic(partitions=2)
    database = tmp_path / "warehouse.duckdb"
    settings = {
        "kafka": KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap}),
        "registry": RegistrySettings(url=registry.url),
    }
    produce(
        kafka.bootstrap,
        registry,
        topic,
        V1,
        [
            ("o1", order("o1", 10.0)),
            ("o1", order("o1", 11.0)),
            ("o2", order("o2", 20.0)),
            ("o3", order("o3", 1.0)),
            ("o3", None),
        ],
    )
    assert load_until_caught_up(database, [topic], group_id="g1", **settings) == {topic: 2}
    produce(kafka.bootstrap, registry, topic, V2, [("o4", order("o4", 40.0, channel="web"))])
    assert load_until_caught_up(database, [topic], group_id="g1", **settings) == {topic: 3}
    table = topic.replace(".", "_")
    with duckdb.connect(str(database)) as conn:
        before = conn.execute(f"SELECT _key, amount, lines, channel, placed_at FROM {table} ORDER BY _key").fetchall()
    assert [(k, a, c) for k, a, _, c, _ in before] == [("o1", 11.0, None), ("o2", 20.0, None), ("o4", 40.0, "web")]
    assert before[0][2] == '["x"]'

    assert load_until_caught_up(database, [topic], group_id="g2", **settings) == {topic: 3}  # full replay

    with duckdb.connect(str(database)) as conn:
        after = conn.execute(f"SELECT _key, amount, lines, channel, placed_at FROM {table} ORDER BY _key").fetchall()
    assert after == before


def test_empty_topic_is_caught_up_at_once(kafka: Any, registry: Any, tmp_path: Path) -> None:
    topic = kafka.create_topic()
    counts = load_until_caught_up(
        tmp_path / "w.duckdb",
        [topic],
        kafka=KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap}),
        registry=RegistrySettings(url=registry.url),
        timeout=30,
    )
    assert counts == {topic: 0}
