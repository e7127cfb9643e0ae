"""What `headwater lineage` and the OpenLineage events ask a warehouse sink, on real PostgreSQL and DuckDB: the row
of a key with the record it was last written from, its table's columns, and the dataset names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from connectors.base import SinkRecord
from connectors.sinks.duckdb import DuckDBConfig, DuckDBSink
from connectors.sinks.postgres import PostgresConfig, PostgresSink
from connectors.sinks.warehouse import RowPosition, WarehouseSink
from tests.fixtures.postgres import PostgresService

TOPIC = "crm.accounts.enriched"
SCHEMA = json.dumps({"type": "record", "name": "Account", "fields": [{"name": "name", "type": "string"}]})


def record(key: str, offset: int, value: dict[str, Any] | None) -> SinkRecord:
    return SinkRecord(TOPIC, 0, offset, key, value, 1, key.encode(), b"", [], 1_700_000_000_000)


def check(sink: WarehouseSink[Any]) -> None:
    assert sink.table_columns(TOPIC) is None and sink.row_of(TOPIC, "A1") is None  # no table yet
    batch = [record("A1", 4, {"name": "Acme"}), record("A2", 5, {"name": "Beta"}), record("A1", 7, {"name": "Acme"})]
    assert sink.write(batch, lambda _: SCHEMA) == []
    assert sink.row_of(TOPIC, "A1") == RowPosition("crm_accounts_enriched", f"{TOPIC}/0/7", 0, 7)
    assert sink.row_of(TOPIC, "nobody") is None
    columns = sink.table_columns(TOPIC)
    assert columns is not None and {"_key", "name", "_hw_source", "_hw_partition", "_hw_offset"} <= set(columns)


def test_postgres_reports_a_keys_row_and_names_its_dataset(postgres: PostgresService) -> None:
    dsn = postgres.create_database()
    sink = PostgresSink("wh", PostgresConfig.model_validate({"dsn": dsn, "topics": [TOPIC]}))
    try:
        check(sink)
        info = conninfo_to_dict(dsn)
        assert sink.dataset_namespace == f"postgres://{info['host']}:{info['port']}"
        assert sink.dataset_name("crm_accounts_enriched") == f"{info['dbname']}.public.crm_accounts_enriched"
        assert "password" not in sink.dataset_namespace
    finally:
        sink.close()


@pytest.mark.parametrize("schema", ["main", "staging"])
def test_duckdb_reports_a_keys_row_and_names_its_dataset(tmp_path: Path, schema: str) -> None:
    database = tmp_path / "w.duckdb"
    sink = DuckDBSink("wh", DuckDBConfig.model_validate({"database": database, "topics": [TOPIC], "schema": schema}))
    try:
        check(sink)
        assert sink.dataset_namespace == f"duckdb://{database}"
        assert sink.dataset_name("crm_accounts_enriched") == f"{schema}.crm_accounts_enriched"
    finally:
        sink.close()
