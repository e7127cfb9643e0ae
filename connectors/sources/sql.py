"""ERP tables over SQL (any SQLAlchemy URL): each table is read incrementally in `(updated_at, primary key)`
order from the cursor on, so rows changed together in one timestamp are neither skipped nor re-read.

Rows whose `updated_at` is NULL are never read, and a row committed later with an `updated_at` older than the
cursor is missed: the column must be set at commit time (a trigger or `now()` on update), as for any
timestamp-incremental source.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy.exc import NoSuchTableError, OperationalError

from connectors.base import ConnectorConfig, ConnectorError, Cursor, PollingSource, RetryableError, SourceBatch
from connectors.base import SourceRecord as Record
from connectors.columns import to_json
from connectors.connector_index import register

log = logging.getLogger(__name__)


class TableConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    table: str = Field(description="Table (or view) to read.")
    topic: str = Field(description="Topic its rows go to, e.g. erp.orders.raw.")
    db_schema: str | None = Field(default=None, alias="schema", description="Database schema of the table.")
    key_column: str | None = Field(
        default=None, description="Unique column used as record key and cursor tie-breaker; default: the primary key."
    )
    updated_at_column: str = Field(default="updated_at", description="Column that grows on every change of a row.")
    columns: list[str] | None = Field(default=None, description="Columns to send; default: all.")


class SqlConfig(ConnectorConfig):
    url: SecretStr = Field(
        description="SQLAlchemy database URL, e.g. postgresql+psycopg://erp@db:5432/erp (password via ${ENV})."
    )
    tables: list[TableConfig] = Field(min_length=1, description="Tables to read, each to its own topic.")
    batch_size: int = Field(default=5_000, gt=0, description="Most rows read per table and query.")
    poll_interval: float = Field(default=5.0, gt=0, description="Seconds between polls once a table is caught up.")
    query_timeout: float = Field(default=60.0, gt=0, description="Seconds a connection attempt may take.")


def _avro_type(column: sa.Column[Any]) -> tuple[Any, Callable[[Any], Any] | None]:
    """Avro type of a column and the conversion its values need (None: as they come)."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return "boolean", None
    if isinstance(kind, sa.BigInteger):
        return "long", None
    if isinstance(kind, sa.Integer):
        return "int", None
    if isinstance(kind, sa.Float):
        return "double", float
    if isinstance(kind, sa.Numeric):
        if kind.precision is None:
            return "string", str
        scale = kind.scale or 0
        exponent = Decimal(1).scaleb(-scale)
        logical = {"type": "bytes", "logicalType": "decimal", "precision": kind.precision, "scale": scale}
        return logical, lambda v: Decimal(v).quantize(exponent)
    if isinstance(kind, sa.DateTime):
        return {"type": "long", "logicalType": "timestamp-micros"}, _aware
    if isinstance(kind, sa.Date):
        return {"type": "int", "logicalType": "date"}, None
    if isinstance(kind, sa.Time):
        return {"type": "long", "logicalType": "time-micros"}, None
    if isinstance(kind, sa.LargeBinary):
        return "bytes", bytes
    if isinstance(kind, sa.JSON):
        return "string", to_json
    if isinstance(kind, sa.String):
        return "string", None
    return "string", str


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _cursor_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return {"t": "datetime" if isinstance(value, datetime) else "date", "v": value.isoformat()}
    if isinstance(value, Decimal):
        return {"t": "decimal", "v": str(value)}
    return value


def _from_cursor(value: Any) -> Any:
    if isinstance(value, dict):
        kind, text = value.get("t"), str(value.get("v"))
        if kind == "datetime":
            return datetime.fromisoformat(text)
        if kind == "date":
            return date.fromisoformat(text)
        return Decimal(text)
    return value


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


@dataclass
class _Table:
    spec: TableConfig
    table: sa.Table
    key: sa.Column[Any]
    updated_at: sa.Column[Any]
    selected: list[sa.Column[Any]]
    converters: list[Callable[[Any], Any] | None]
    schema: dict[str, Any]

    @property
    def cursor_name(self) -> str:
        return f"{self.spec.db_schema}.{self.spec.table}" if self.spec.db_schema else self.spec.table


@register("sql")
class SqlSource(PollingSource[SqlConfig]):
    """Reads ERP tables incrementally from any SQL database SQLAlchemy can reach."""

    Config = SqlConfig

    def __init__(self, name: str, config: SqlConfig) -> None:
        super().__init__(name, config)
        self._engine: sa.Engine | None = None
        self._tables: list[_Table] | None = None

    def _connect(self) -> sa.Engine:
        if self._engine is None:
            url = self.config.url.get_secret_value()
            args: dict[str, Any] = {}
            if url.startswith("postgresql"):
                args["connect_timeout"] = int(self.config.query_timeout)
            self._engine = sa.create_engine(url, pool_pre_ping=True, connect_args=args)
        return self._engine

    def _reflect(self, engine: sa.Engine) -> list[_Table]:
        if self._tables is not None:
            return self._tables
        tables = []
        for spec in self.config.tables:
            try:
                table = sa.Table(spec.table, sa.MetaData(), schema=spec.db_schema, autoload_with=engine)
            except NoSuchTableError as exc:
                raise ConnectorError(f"source {self.name}: table {spec.table} does not exist") from exc
            tables.append(self._describe(spec, table))
        self._tables = tables
        return tables

    def _describe(self, spec: TableConfig, table: sa.Table) -> _Table:
        def column(name: str, role: str) -> sa.Column[Any]:
            if name not in table.c:
                raise ConnectorError(f"source {self.name}: table {spec.table} has no {role} column {name!r}")
            found: sa.Column[Any] = table.c[name]
            return found

        primary = list(table.primary_key.columns)
        if spec.key_column is None and len(primary) != 1:
            raise ConnectorError(
                f"source {self.name}: table {spec.table} needs key_column (it has no single-column primary key)"
            )
        key = column(spec.key_column, "key") if spec.key_column else primary[0]
        updated_at = column(spec.updated_at_column, "updated_at")
        selected = [column(name, "selected") for name in spec.columns] if spec.columns else list(table.c)
        fields, converters = [], []
        for col in selected:
            avro, convert = _avro_type(col)
            nullable = col.nullable and col is not key
            fields.append(
                {"name": col.name, "type": ["null", avro], "default": None}
                if nullable
                else {"name": col.name, "type": avro}
            )
            converters.append(convert)
        record_name = re.sub(r"\W", "_", spec.table.title().replace("_", ""))
        schema = {"type": "record", "name": record_name, "namespace": "io.headwater.sql", "fields": fields}
        return _Table(spec, table, key, updated_at, selected, converters, schema)

    def fetch(self, cursor: Cursor | None) -> SourceBatch:
        try:
            engine = self._connect()
            tables = self._reflect(engine)
            state: Cursor = dict(cursor or {})
            batch = SourceBatch(cursor=state)
            with engine.connect() as conn:
                for table in tables:
                    got = self._read(conn, table, state, batch)
                    batch.more = batch.more or got >= self.config.batch_size
            return batch
        except OperationalError as exc:
            self._tables = None
            raise RetryableError(f"source {self.name}: database unreachable ({type(exc.orig).__name__})") from exc

    def _read(self, conn: sa.Connection, table: _Table, state: Cursor, batch: SourceBatch) -> int:
        position = state.get(table.cursor_name)
        query = sa.select(*table.selected, table.updated_at.label("_hw_upd"), table.key.label("_hw_key"))
        if position is not None:
            since, last_key = _from_cursor(position["updated_at"]), _from_cursor(position["key"])
            query = query.where(
                sa.or_(table.updated_at > since, sa.and_(table.updated_at == since, table.key > last_key))
            )
        else:
            query = query.where(table.updated_at.is_not(None))
        query = query.order_by(table.updated_at, table.key).limit(self.config.batch_size)
        rows = conn.execute(query).all()
        names = [c.name for c in table.selected]
        pairs = list(zip(names, table.converters, strict=True))
        topic, schema, cursor_name = table.spec.topic, table.schema, table.cursor_name
        for row in rows:
            values = row[: len(names)]
            value = {
                name: (raw if convert is None or raw is None else convert(raw))
                for (name, convert), raw in zip(pairs, values, strict=True)
            }
            updated, key = row[-2], row[-1]
            where = f"{cursor_name}@{_text(updated)}|{key}"
            batch.records.append(Record(topic, str(key), value, schema, where, dict(zip(names, values, strict=True))))
        if rows:
            last = rows[-1]
            state[cursor_name] = {"updated_at": _cursor_value(last[-2]), "key": _cursor_value(last[-1])}
        return len(rows)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
