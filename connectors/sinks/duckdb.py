"""DuckDB warehouse sink, the embedded default of `headwater up`: same semantics as the PostgreSQL sink (upsert on
the record key, last record per key in a batch wins, tombstones delete, tables evolve by adding nullable
columns, a row written from a later offset of the same partition is never replaced), with each batch staged as an
Arrow table.

`load_until_caught_up(...)` loads given topics into a DuckDB file until the end offsets seen at its start are
written, for callers that want a one-shot load rather than a long-running connector.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from pydantic import Field

from connectors.arrow import arrow_type
from connectors.base import RetryableError
from connectors.columns import Column, Kind
from connectors.connector_index import register
from connectors.sink_loop import SinkLoop
from connectors.sinks.warehouse import (
    OFFSET_COLUMN,
    PARTITION_COLUMN,
    SOURCE_COLUMN,
    TablePlan,
    WarehouseConfig,
    WarehouseSink,
    not_older,
)
from headwater.settings import KafkaSettings, RegistrySettings

log = logging.getLogger(__name__)

_TYPES: dict[Kind, str] = {
    "boolean": "BOOLEAN",
    "int": "INTEGER",
    "long": "BIGINT",
    "float": "REAL",
    "double": "DOUBLE",
    "string": "VARCHAR",
    "bytes": "BLOB",
    "date": "DATE",
    "time": "TIME",
    "timestamp": "TIMESTAMPTZ",
    "json": "JSON",
}
_KINDS: dict[str, Kind] = {
    "BOOLEAN": "boolean",
    "INTEGER": "int",
    "SMALLINT": "int",
    "BIGINT": "long",
    "REAL": "float",
    "FLOAT": "float",
    "DOUBLE": "double",
    "VARCHAR": "string",
    "UUID": "string",
    "BLOB": "bytes",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP WITH TIME ZONE": "timestamp",
    "TIMESTAMP": "timestamp",
    "JSON": "json",
}


def _sql_type(column: Column) -> str:
    if column.kind == "decimal":
        return f"DECIMAL({min(column.precision, 38)},{column.scale})"
    return _TYPES[column.kind]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBConfig(WarehouseConfig):
    database: Path = Field(description="DuckDB database file (created when missing).")
    db_schema: str = Field(default="main", alias="schema", description="Database schema holding the tables.")


@register("duckdb")
class DuckDBSink(WarehouseSink[DuckDBConfig]):
    """Upserts topics into DuckDB tables, one table per topic, keyed on the record key."""

    Config = DuckDBConfig

    def __init__(self, name: str, config: DuckDBConfig) -> None:
        super().__init__(name, config)
        self._conn: duckdb.DuckDBPyConnection | None = None

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            try:
                self.config.database.parent.mkdir(parents=True, exist_ok=True)
                self._conn = duckdb.connect(str(self.config.database))
                self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(self.config.db_schema)}")
            except (duckdb.IOException, OSError) as exc:
                self._conn = None
                raise RetryableError(f"DuckDB database {self.config.database} unavailable: {exc}") from exc
        return self._conn

    def _name(self, table: str) -> str:
        return f"{_quote(self.config.db_schema)}.{_quote(table)}"

    def _existing_columns(self, table: str) -> dict[str, Kind] | None:
        query = (
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?"
        )
        rows = self._connection().execute(query, [self.config.db_schema, table]).fetchall()
        if not rows:
            return None
        return {
            str(name): _KINDS.get(str(t), "decimal" if str(t).startswith("DECIMAL") else "json") for name, t in rows
        }

    def _select_position(self, table: str, key: str) -> tuple[str | None, int | None, int | None] | None:
        row = self._connection().execute(
            f"SELECT {_quote(SOURCE_COLUMN)}, {_quote(PARTITION_COLUMN)}, {_quote(OFFSET_COLUMN)} FROM "
            f"{self._name(table)} WHERE {_quote(self.config.key_column)} = ?",
            [key],
        ).fetchone()
        if row is None:
            return None
        source, partition, offset = row
        return (None if source is None else str(source), None if partition is None else int(partition),
                None if offset is None else int(offset))

    @property
    def dataset_namespace(self) -> str:
        return f"duckdb://{self.config.database.resolve()}"

    def dataset_name(self, table: str) -> str:
        return f"{self.config.db_schema}.{table}"

    def _is_row_error(self, exc: Exception) -> bool:
        return isinstance(exc, duckdb.ConversionException | duckdb.ConstraintException | pa.ArrowException)

    def _apply(self, plan: TablePlan) -> None:
        conn = self._connection()
        staged = self._stage(plan) if plan.rows else None
        conn.execute("BEGIN TRANSACTION")
        try:
            self._evolve(conn, plan)
            if staged is not None:
                self._upsert(conn, plan, staged)
            if plan.deletes:
                self._delete(conn, plan)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            if staged is not None:
                conn.unregister("hw_stage")

    def _stage(self, plan: TablePlan) -> pa.Table:
        names = self._staged_names(plan)
        types = [pa.string(), *(arrow_type(c) for c in plan.columns), pa.string(), pa.int32(), pa.int64()]
        columns: list[list[Any]] = [list(values) for values in zip(*plan.rows, strict=True)]
        arrays = [pa.array(values, type=t) for values, t in zip(columns, types, strict=True)]
        return pa.Table.from_arrays(arrays, names=names)

    def _evolve(self, conn: duckdb.DuckDBPyConnection, plan: TablePlan) -> None:
        table = self._name(plan.table)
        if plan.create:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ({_quote(self.config.key_column)} VARCHAR PRIMARY KEY, "
                f"{_quote(SOURCE_COLUMN)} VARCHAR)"
            )
            log.info("event=table_created sink=%s table=%s", self.name, plan.table)
        for column in plan.add:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {_quote(column.name)} {_sql_type(column)}")
        for column in plan.widen:
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN {_quote(column.name)} TYPE {_sql_type(column)}")

    def _delete(self, conn: duckdb.DuckDBPyConnection, plan: TablePlan) -> None:
        conn.execute(
            f"DELETE FROM {self._name(plan.table)} AS t USING (SELECT unnest(?) AS k, "
            f"unnest(?) AS {_quote(PARTITION_COLUMN)}, unnest(?) AS {_quote(OFFSET_COLUMN)}) AS d "
            f"WHERE t.{_quote(self.config.key_column)} = d.k AND {not_older('d')}",
            [plan.deletes, [r.partition for r in plan.delete_records], [r.offset for r in plan.delete_records]],
        )

    def _upsert(self, conn: duckdb.DuckDBPyConnection, plan: TablePlan, staged: pa.Table) -> None:
        conn.register("hw_stage", staged)
        names = self._staged_names(plan)
        updated = names[1:]
        idents = ", ".join(_quote(n) for n in names)
        assignments = ", ".join(f"{_quote(n)} = EXCLUDED.{_quote(n)}" for n in updated)
        current = ", ".join(f"t.{_quote(n)}" for n in updated)
        incoming = ", ".join(f"EXCLUDED.{_quote(n)}" for n in updated)
        conn.execute(
            f"INSERT INTO {self._name(plan.table)} AS t ({idents}) SELECT {idents} FROM hw_stage "
            f"ON CONFLICT ({_quote(self.config.key_column)}) DO UPDATE SET {assignments} "
            f"WHERE ({current}) IS DISTINCT FROM ({incoming}) AND {not_older('EXCLUDED')}"
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def load_until_caught_up(
    database: Path,
    topics: Sequence[str],
    *,
    kafka: KafkaSettings,
    registry: RegistrySettings,
    group_id: str = "headwater-warehouse",
    timeout: float = 300.0,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Load `topics` into the DuckDB file until every partition's end offset (as of the call) is written and
    committed; returns the row count of each topic's table. Raises TimeoutError after `timeout` seconds."""
    config = DuckDBConfig.model_validate({"database": database, "topics": list(topics)})
    sink = DuckDBSink("duckdb-warehouse", config)
    loop = SinkLoop(sink, kafka=kafka, registry=registry, group_id=group_id)
    try:
        loop.run_until_caught_up(timeout=timeout, stop=stop)
        conn = sink._connection()
        counts: dict[str, int] = {}
        for topic in topics:
            table = config.table_for(topic)
            exists = sink._existing_columns(table) is not None
            row = conn.execute(f"SELECT count(*) FROM {sink._name(table)}").fetchone() if exists else None
            counts[topic] = int(row[0]) if row else 0
        return counts
    finally:
        loop.close()
