"""PostgreSQL warehouse sink (psycopg 3): each batch is COPied into a temporary staging table, then merged with
`INSERT ... ON CONFLICT (key) DO UPDATE` (rows whose values did not change are left alone, so a replay changes
nothing, and rows written from a later offset of the same partition are never replaced) and tombstones delete
their key unless its row is newer, all in one transaction.

The COPY is binary (a third of the client and server time of text COPY: no number or timestamp formatting and
parsing). Binary COPY applies no casts, so a table created elsewhere with other column types (smallint, uuid,
timestamp without time zone) or a value its type cannot dump (a naive datetime) makes it fail: the batch is
then copied again as text, which casts like an INSERT, and that table is copied as text from then on."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from pydantic import Field, SecretStr

from connectors.base import RetryableError
from connectors.columns import Column, Kind
from connectors.connector_index import register
from connectors.sinks.warehouse import (
    OFFSET_COLUMN,
    PARTITION_COLUMN,
    SOURCE_COLUMN,
    TablePlan,
    WarehouseConfig,
    WarehouseSink,
    not_older,
)

log = logging.getLogger(__name__)

_TYPES: dict[Kind, str] = {
    "boolean": "boolean",
    "int": "integer",
    "long": "bigint",
    "float": "real",
    "double": "double precision",
    "string": "text",
    "bytes": "bytea",
    "date": "date",
    "time": "time",
    "timestamp": "timestamptz",
    "json": "jsonb",
}
# The type names binary COPY dumps each kind as (it needs the exact column type; text COPY lets the server cast).
_BINARY_TYPES: dict[Kind, str] = {
    "boolean": "bool",
    "int": "int4",
    "long": "int8",
    "float": "float4",
    "double": "float8",
    "string": "text",
    "bytes": "bytea",
    "decimal": "numeric",
    "date": "date",
    "time": "time",
    "timestamp": "timestamptz",
    "json": "jsonb",
}
# What a binary COPY raises for a value or a column type it cannot carry: dumping fails in the client (TypeError,
# ValueError, OverflowError) or the server refuses the binary representation (a DataError).
_BINARY_REFUSALS = (psycopg.DataError, TypeError, ValueError, OverflowError)
_KINDS: dict[str, Kind] = {
    "boolean": "boolean",
    "integer": "int",
    "smallint": "int",
    "bigint": "long",
    "real": "float",
    "double precision": "double",
    "text": "string",
    "character varying": "string",
    "uuid": "string",
    "bytea": "bytes",
    "numeric": "decimal",
    "date": "date",
    "time without time zone": "time",
    "timestamp with time zone": "timestamp",
    "timestamp without time zone": "timestamp",
    "jsonb": "json",
    "json": "json",
}


class PostgresConfig(WarehouseConfig):
    dsn: SecretStr = Field(
        description="libpq connection string or URL, e.g. postgresql://user@host:5432/db. Put the password in "
        "the environment (${PGPASSWORD} in the YAML is expanded) rather than in the file."
    )
    db_schema: str = Field(default="public", alias="schema", description="Database schema holding the tables.")
    connect_timeout: int = Field(default=10, gt=0, description="Seconds to wait for a connection before retrying.")
    statement_timeout_ms: int = Field(default=300_000, gt=0, description="Longest a single statement may run.")


def _sql_type(column: Column) -> str:
    if column.kind == "decimal":
        return f"numeric({column.precision},{column.scale})"
    return _TYPES[column.kind]


@register("postgres")
class PostgresSink(WarehouseSink[PostgresConfig]):
    """Upserts topics into PostgreSQL tables, one table per topic, keyed on the record key."""

    Config = PostgresConfig

    def __init__(self, name: str, config: PostgresConfig) -> None:
        super().__init__(name, config)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._text_copy: set[str] = set()

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(
                    self.config.dsn.get_secret_value(),
                    connect_timeout=self.config.connect_timeout,
                    options=f"-c statement_timeout={self.config.statement_timeout_ms}",
                )
            except psycopg.OperationalError as exc:
                raise RetryableError(f"PostgreSQL unreachable: {type(exc).__name__}") from exc
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _name(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.config.db_schema), sql.Identifier(table))

    def _existing_columns(self, table: str) -> dict[str, Kind] | None:
        query = (
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        )
        try:
            with self._connection().cursor() as cur:
                rows = cur.execute(query, (self.config.db_schema, table)).fetchall()
            self._connection().commit()
        except psycopg.OperationalError as exc:
            self._drop_connection()
            raise RetryableError(f"PostgreSQL unreachable: {type(exc).__name__}") from exc
        if not rows:
            return None
        return {str(name): _KINDS.get(str(data_type), "json") for name, data_type in rows}

    def _select_position(self, table: str, key: str) -> tuple[str | None, int | None, int | None] | None:
        query = sql.SQL("SELECT {}, {}, {} FROM {} WHERE {} = %s").format(
            sql.Identifier(SOURCE_COLUMN), sql.Identifier(PARTITION_COLUMN), sql.Identifier(OFFSET_COLUMN),
            self._name(table), sql.Identifier(self.config.key_column),
        )
        try:
            with self._connection().cursor() as cur:
                row = cur.execute(query, (key,)).fetchone()
            self._connection().commit()
        except psycopg.OperationalError as exc:
            self._drop_connection()
            raise RetryableError(f"PostgreSQL unreachable: {type(exc).__name__}") from exc
        if row is None:
            return None
        source, partition, offset = row
        return (None if source is None else str(source), None if partition is None else int(str(partition)),
                None if offset is None else int(str(offset)))

    @property
    def dataset_namespace(self) -> str:
        info = conninfo_to_dict(self.config.dsn.get_secret_value())
        return f"postgres://{info.get('host') or 'localhost'}:{info.get('port') or 5432}"

    def dataset_name(self, table: str) -> str:
        database = conninfo_to_dict(self.config.dsn.get_secret_value()).get("dbname") or "postgres"
        return f"{database}.{self.config.db_schema}.{table}"

    def _is_row_error(self, exc: Exception) -> bool:
        return isinstance(exc, psycopg.DataError | psycopg.IntegrityError | psycopg.ProgrammingError)

    def _apply(self, plan: TablePlan) -> None:
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                self._evolve(cur, plan)
                if plan.rows:
                    self._upsert(cur, plan)
                if plan.deletes:
                    self._delete(cur, plan)
        except psycopg.OperationalError as exc:
            self._drop_connection()
            raise RetryableError(f"PostgreSQL unreachable: {type(exc).__name__}") from exc
        except psycopg.InterfaceError as exc:
            self._drop_connection()
            raise RetryableError(f"PostgreSQL connection lost: {type(exc).__name__}") from exc
        log.debug(
            "event=batch_written sink=%s table=%s upserts=%d deletes=%d",
            self.name,
            plan.table,
            len(plan.rows),
            len(plan.deletes),
        )

    def _evolve(self, cur: psycopg.Cursor[tuple[object, ...]], plan: TablePlan) -> None:
        table = self._name(plan.table)
        if plan.create:
            cur.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} ({} text PRIMARY KEY, {} text)").format(
                    table, sql.Identifier(self.config.key_column), sql.Identifier(SOURCE_COLUMN)
                )
            )
            log.info("event=table_created sink=%s table=%s", self.name, plan.table)
        for column in plan.add:
            cur.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    table, sql.Identifier(column.name), sql.SQL(_sql_type(column))
                )
            )
        for column in plan.widen:
            cur.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
                    table, sql.Identifier(column.name), sql.SQL(_sql_type(column))
                )
            )
        if plan.add or plan.widen:
            log.info(
                "event=table_evolved sink=%s table=%s added=%d widened=%d",
                self.name,
                plan.table,
                len(plan.add),
                len(plan.widen),
            )

    def _delete(self, cur: psycopg.Cursor[tuple[object, ...]], plan: TablePlan) -> None:
        cur.execute(
            sql.SQL(
                "DELETE FROM {} AS t USING unnest(%s::text[], %s::integer[], %s::bigint[]) AS d(k, {}, {}) "
                "WHERE t.{} = d.k AND {}"
            ).format(
                self._name(plan.table),
                sql.Identifier(PARTITION_COLUMN),
                sql.Identifier(OFFSET_COLUMN),
                sql.Identifier(self.config.key_column),
                sql.SQL(not_older("d")),
            ),
            (
                plan.deletes,
                [r.partition for r in plan.delete_records],
                [r.offset for r in plan.delete_records],
            ),
        )

    def _upsert(self, cur: psycopg.Cursor[tuple[object, ...]], plan: TablePlan) -> None:
        names = self._staged_names(plan)
        idents = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        cur.execute(
            sql.SQL("CREATE TEMP TABLE hw_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                self._name(plan.table)
            )
        )
        self._copy(cur, plan, idents)
        updated = names[1:]
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n)) for n in updated
        )
        current = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in updated)
        incoming = sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)) for n in updated)
        cur.execute(
            sql.SQL(
                "INSERT INTO {} AS t ({}) SELECT {} FROM hw_stage ON CONFLICT ({}) DO UPDATE SET {} "
                "WHERE ROW({}) IS DISTINCT FROM ROW({}) AND {}"
            ).format(
                self._name(plan.table),
                idents,
                idents,
                sql.Identifier(self.config.key_column),
                assignments,
                current,
                incoming,
                sql.SQL(not_older("EXCLUDED")),
            )
        )

    def _copy(self, cur: psycopg.Cursor[tuple[object, ...]], plan: TablePlan, idents: sql.Composable) -> None:
        text_copy = sql.SQL("COPY hw_stage ({}) FROM STDIN").format(idents)
        if plan.table not in self._text_copy:
            try:
                with cur.connection.transaction():  # a savepoint: a refused binary COPY leaves the stage usable
                    self._copy_binary(cur, plan, idents)
                return
            except _BINARY_REFUSALS as exc:
                refusal = f"{type(exc).__name__}: {exc}".splitlines()[0]
        else:
            refusal = None
        with cur.copy(text_copy) as copy:
            for row in plan.rows:
                copy.write_row(row)
        if refusal is not None:
            # Only now is binary known to be the problem (a value the table refuses fails as text too).
            self._text_copy.add(plan.table)
            log.warning("event=binary_copy_refused sink=%s table=%s reason=%s", self.name, plan.table, refusal)

    def _copy_binary(self, cur: psycopg.Cursor[tuple[object, ...]], plan: TablePlan, idents: sql.Composable) -> None:
        kinds = self._column_kinds(plan)
        types = ["text", *(_BINARY_TYPES[kind] for kind in kinds), "text", "int4", "int8"]
        # The rows carry JSON columns as text already: binary jsonb takes that text as it is.
        json_cells = [index + 1 for index, kind in enumerate(kinds) if kind == "json"]
        with cur.copy(sql.SQL("COPY hw_stage ({}) FROM STDIN (FORMAT BINARY)").format(idents)) as copy:
            copy.set_types(types)
            if json_cells:
                for row in plan.rows:
                    copy.write_row(_with_jsonb(row, json_cells))
            else:
                for row in plan.rows:
                    copy.write_row(row)

    def _column_kinds(self, plan: TablePlan) -> list[Kind]:
        """The kinds of the table's columns for the staged columns: a column may be wider than the schema says."""
        kinds = dict(self._tables.get(plan.table, {}))
        for column in [*plan.add, *plan.widen]:
            kinds[column.name] = column.kind
        return [kinds.get(column.name, column.kind) for column in plan.columns]

    def close(self) -> None:
        self._drop_connection()


def _as_is(text: str) -> str:
    return text


def _with_jsonb(row: tuple[Any, ...], cells: Sequence[int]) -> list[Any]:
    values = list(row)
    for index in cells:
        if values[index] is not None:
            values[index] = Jsonb(values[index], dumps=_as_is)
    return values
