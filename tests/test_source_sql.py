"""SQL source against real PostgreSQL, broker and registry: incremental reads on (updated_at, key), ties inside
one timestamp, a SIGKILL mid-run without gaps, lineage headers."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psycopg

from connectors.sources.sql import SqlConfig, SqlSource
from headwater.envelope import SOURCE, TRACE_ID
from headwater.statuspage.samples import local_samples
from headwater.statuspage.snapshot import build_snapshot
from tests.connect_support import (
    decode_all,
    end_offset,
    header,
    read_topic,
    running_source,
    start_connect,
    wait_for,
    write_config,
)

ORDERS = """
CREATE TABLE orders (
    order_number text PRIMARY KEY,
    customer_id integer NOT NULL,
    amount numeric(12, 2),
    note text,
    updated_at timestamptz NOT NULL
)
"""


def fill(dsn: str, count: int, start: int = 0, same_time: bool = False) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO orders VALUES (%s, %s, %s, %s, %s)",
            [
                (
                    f"SO-{i:06d}",
                    i % 97,
                    f"{i}.50",
                    None,
                    "2024-01-01T00:00:00Z"
                    if same_time
                    else f"2024-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                )
                for i in range(start, start + count)
            ],
        )


def sql_config(dsn: str, topic: str, batch_size: int) -> dict[str, Any]:
    url = dsn.replace("postgresql://", "postgresql+psycopg://")
    return {"url": url, "tables": [{"table": "orders", "topic": topic}], "batch_size": batch_size, "poll_interval": 0.2}


def test_reads_incrementally_with_ties_and_lineage(kafka: Any, registry: Any, postgres: Any) -> None:
    dsn = postgres.create_database()
    with psycopg.connect(dsn) as conn:
        conn.execute(ORDERS)
    fill(dsn, 25, same_time=True)
    topic = kafka.create_topic()
    source = SqlSource("erp-orders", SqlConfig.model_validate(sql_config(dsn, topic, batch_size=7)))
    with running_source(source, kafka, registry):
        wait_for(lambda: end_offset(kafka.bootstrap, topic) >= 25, what="the first 25 rows")
        with psycopg.connect(dsn) as conn:
            conn.execute(
                "UPDATE orders SET note = 'changed', updated_at = '2024-02-01Z' WHERE order_number = 'SO-000003'"
            )
        wait_for(lambda: end_offset(kafka.bootstrap, topic) >= 26, what="the updated row")
        # the status page shows the source running with the cursor it committed last
        shown = wait_for(lambda: next((row for row in build_snapshot(local_samples())["connectors"]
                                       if row["name"] == "erp-orders" and "2024-02-01" in (row["cursor"] or "")), None),
                         what="the committed cursor on the status page")
        assert shown["state"] == "running" and shown["produced"] >= 26
    [stopped] = [row for row in build_snapshot(local_samples())["connectors"] if row["name"] == "erp-orders"]
    assert stopped["state"] == "stopped"
    messages = read_topic(kafka.bootstrap, topic, 26)
    records = decode_all(registry, messages)
    assert sorted(key for key, _ in records[:25]) == [f"SO-{i:06d}" for i in range(25)]
    assert records[25][0] == "SO-000003"
    assert records[25][1] is not None and records[25][1]["note"] == "changed"
    assert str(records[0][1]["amount"]) == "0.50"  # type: ignore[index]
    assert header(messages[25], SOURCE) == "erp-orders/orders@2024-02-01T00:00:00+00:00|SO-000003"
    assert header(messages[0], TRACE_ID)
    assert end_offset(kafka.bootstrap, topic) == 26


def test_source_killed_mid_run_resumes_without_gaps(kafka: Any, registry: Any, postgres: Any, tmp_path: Path) -> None:
    dsn = postgres.create_database()
    with psycopg.connect(dsn) as conn:
        conn.execute(ORDERS)
    total = 6_000
    fill(dsn, total)
    topic = kafka.create_topic()
    config = write_config(
        tmp_path / "source.yaml",
        kafka.bootstrap,
        registry.url,
        [{"name": f"erp-{topic}", "connector": "sql", "config": sql_config(dsn, topic, batch_size=200)}],
    )
    process = start_connect(config, tmp_path / "connect.log")
    try:
        wait_for(lambda: end_offset(kafka.bootstrap, topic) > 0, timeout=90, what="first records")
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    produced_before_restart = end_offset(kafka.bootstrap, topic)
    assert produced_before_restart < total, "killed after the end: not mid-run"

    process = start_connect(config, tmp_path / "connect.log")
    try:

        def every_key() -> set[bytes] | None:
            found = {m.key() or b"" for m in read_topic(kafka.bootstrap, topic, end_offset(kafka.bootstrap, topic))}
            return found if len(found) >= total else None

        keys = wait_for(every_key, timeout=120, what="every row on the topic")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert keys == {f"SO-{i:06d}".encode() for i in range(total)}
