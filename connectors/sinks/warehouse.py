"""What the PostgreSQL and DuckDB sinks share: table per topic, upsert on the record key keeping the last record
per key in a batch, tombstones delete, tables created and evolved from the Avro schema (columns added, widened
losslessly, never dropped or narrowed), and a type conflict dead-letters the affected records instead of
stopping the sink.

Every row carries the partition and offset of the record it came from (`_hw_partition`, `_hw_offset`; tables
from before gain the columns, NULL in their old rows). An upsert or a tombstone never replaces a row written from
a later offset of the same partition, so a batch written late by a consumer that lost its partitions (a zombie
after a rebalance) cannot bring back older values. Offsets order records only within one partition: a row last
written from another partition is replaced by any record, because a key moves partition only when its topic is
repartitioned, and ordering records across a repartition is out of scope. A zombie's upsert can still re-insert a
key that a newer tombstone deleted, since a deleted row leaves nothing to compare with."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import Field

from connectors.base import ConnectorConfig, Rejected, RetryableError, SchemaLookup, Sink, SinkRecord
from connectors.columns import WIDER, Column, Kind, SchemaMappingError, columns_of, to_json

log = logging.getLogger(__name__)

SOURCE_COLUMN = "_hw_source"
PARTITION_COLUMN = "_hw_partition"
OFFSET_COLUMN = "_hw_offset"
POSITION_COLUMNS = (Column(PARTITION_COLUMN, "int", True), Column(OFFSET_COLUMN, "long", True))
_WIDENINGS: dict[tuple[Kind, Kind], Kind] = {("int", "long"): "long", ("float", "double"): "double"}


class WarehouseConfig(ConnectorConfig):
    topics: list[str] = Field(min_length=1, description="Topics to load, each into its own table.")
    tables: dict[str, str] = Field(
        default_factory=dict,
        description="Table name per topic; by default the topic name with dots and dashes turned into underscores.",
    )
    key_column: str = Field(default="_key", description="Column holding the record key; the primary key of each table.")
    batch_size: int = Field(default=10_000, gt=0, description="Most records consumed and written in one transaction.")
    flush_interval: float = Field(
        default=1.0, gt=0, description="Seconds to wait for a batch to fill before writing it."
    )

    def table_for(self, topic: str) -> str:
        return self.tables.get(topic) or topic.replace(".", "_").replace("-", "_")


WarehouseConfigT = TypeVar("WarehouseConfigT", bound=WarehouseConfig)


@dataclass(frozen=True)
class RowPosition:
    """A table row and the record it was last written from (`_hw_source`, `_hw_partition`, `_hw_offset`)."""

    table: str
    source: str | None
    partition: int | None
    offset: int | None


class ColumnTypeConflict(Exception):
    """A schema gives an existing column a type the column cannot hold."""


@dataclass
class TablePlan:
    """The DDL and rows one table needs for one batch."""

    table: str
    create: bool
    add: list[Column] = field(default_factory=list)
    widen: list[Column] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    row_records: list[SinkRecord] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    delete_records: list[SinkRecord] = field(default_factory=list)


def _row(key: str, record: SinkRecord, names: Sequence[str], json_columns: Sequence[int]) -> tuple[Any, ...]:
    cells = list(map((record.value or {}).get, names))
    for index in json_columns:
        cells[index] = to_json(cells[index])
    return (key, *cells, record.source, record.partition, record.offset)


def not_older(incoming: str) -> str:
    """SQL condition (PostgreSQL and DuckDB alike) that the record aliased `incoming` may replace row `t`: the
    row predates position columns, came from another partition, or from an offset not after the record's."""
    return (
        f'(t."{OFFSET_COLUMN}" IS NULL OR {incoming}."{PARTITION_COLUMN}" IS DISTINCT FROM t."{PARTITION_COLUMN}" '
        f'OR {incoming}."{OFFSET_COLUMN}" >= t."{OFFSET_COLUMN}")'
    )


class WarehouseSink(Sink[WarehouseConfigT]):
    """A SQL warehouse reached through `_existing_columns` and `_apply`, implemented per database."""

    def __init__(self, name: str, config: WarehouseConfigT) -> None:
        super().__init__(name, config)
        self._schemas: dict[int, list[Column]] = {}
        self._tables: dict[str, dict[str, Kind]] = {}

    def _staged_names(self, plan: TablePlan) -> list[str]:
        """The columns of `plan.rows`, in order."""
        return [self.config.key_column, *(c.name for c in plan.columns), SOURCE_COLUMN, PARTITION_COLUMN, OFFSET_COLUMN]

    @abstractmethod
    def _existing_columns(self, table: str) -> dict[str, Kind] | None:
        """Columns of the table by name (None when it does not exist)."""

    @abstractmethod
    def _apply(self, plan: TablePlan) -> None:
        """Create/evolve the table, upsert the rows and delete the keys in one durable transaction.
        Raise RetryableError when the database is unreachable."""

    @abstractmethod
    def _select_position(self, table: str, key: str) -> tuple[str | None, int | None, int | None] | None:
        """`_hw_source`, `_hw_partition`, `_hw_offset` of the row of `key` (None when there is none)."""

    @property
    @abstractmethod
    def dataset_namespace(self) -> str:
        """The OpenLineage namespace of this database (`postgres://host:port`, `duckdb://<file>`)."""

    @abstractmethod
    def dataset_name(self, table: str) -> str:
        """The OpenLineage dataset name of a table of this database."""

    def row_of(self, topic: str, key: str) -> RowPosition | None:
        """The row `key` of `topic` has in its table, and where it was written from; None when there is none."""
        table = self.config.table_for(topic)
        if self._existing_columns(table) is None:
            return None
        found = self._select_position(table, key)
        return None if found is None else RowPosition(table, *found)

    def table_columns(self, topic: str) -> dict[str, Kind] | None:
        """The columns of `topic`'s table as the database has them (None when the table does not exist yet)."""
        return self._existing_columns(self.config.table_for(topic))

    @abstractmethod
    def _is_row_error(self, exc: Exception) -> bool:
        """Whether the database refused the data itself (a value it cannot store), not the connection."""

    def write(self, records: Sequence[SinkRecord], schema_of: SchemaLookup) -> list[Rejected]:
        rejected: list[Rejected] = []
        by_topic: dict[str, list[SinkRecord]] = {}
        for record in records:
            by_topic.setdefault(record.topic, []).append(record)
        for topic, batch in by_topic.items():
            table = self.config.table_for(topic)
            plan, refused = self._plan(table, batch, schema_of)
            rejected.extend(refused)
            if plan.rows or plan.deletes or plan.create or plan.add or plan.widen:
                rejected.extend(self._apply_or_split(plan))
        return rejected

    def _columns_for(self, schema_id: int, schema_of: SchemaLookup) -> list[Column]:
        cached = self._schemas.get(schema_id)
        if cached is None:
            cached = columns_of(schema_of(schema_id))
            self._schemas[schema_id] = cached
        return cached

    def _known_columns(self, table: str) -> dict[str, Kind] | None:
        if table not in self._tables:
            existing = self._existing_columns(table)
            if existing is None:
                return None
            self._tables[table] = existing
        return self._tables[table]

    def _plan(
        self, table: str, batch: Sequence[SinkRecord], schema_of: SchemaLookup
    ) -> tuple[TablePlan, list[Rejected]]:
        key_column = self.config.key_column
        existing = self._known_columns(table)
        plan = TablePlan(table=table, create=existing is None)
        planned: dict[str, Kind] = dict(existing or {key_column: "string", SOURCE_COLUMN: "string"})
        for column in POSITION_COLUMNS:  # new tables, and tables from before rows carried their position
            if column.name not in planned:
                planned[column.name] = column.kind
                plan.add.append(column)
        usable: dict[int, list[Column]] = {}
        refused_ids: dict[int, str] = {}
        rejected: list[Rejected] = []
        for schema_id in dict.fromkeys(r.schema_id for r in batch if r.value is not None and r.schema_id is not None):
            try:
                columns = self._columns_for(schema_id, schema_of)
                self._check(table, schema_id, columns, planned, plan)
            except (ColumnTypeConflict, SchemaMappingError) as exc:
                refused_ids[schema_id] = str(exc)
                log.error(
                    "event=schema_refused sink=%s table=%s schema_id=%d reason=%s", self.name, table, schema_id, exc
                )
                continue
            usable[schema_id] = columns
        order: list[Column] = []
        seen: set[str] = set()
        for columns in usable.values():
            for column in columns:
                if column.name not in seen:
                    seen.add(column.name)
                    order.append(column)
        plan.columns = order
        last: dict[str, SinkRecord] = {}
        for record in batch:
            reason = self._refusal(record, refused_ids)
            if reason is not None:
                rejected.append(Rejected(record, reason[0], reason[1]))
                continue
            assert record.key is not None
            last.pop(record.key, None)
            last[record.key] = record
        names = [c.name for c in order]
        json_columns = [i for i, c in enumerate(order) if c.kind == "json"]
        for key, record in last.items():
            if record.value is None:
                plan.deletes.append(key)
                plan.delete_records.append(record)
            else:
                plan.rows.append(_row(key, record, names, json_columns))
                plan.row_records.append(record)
        return plan, rejected

    @staticmethod
    def _refusal(record: SinkRecord, refused_ids: dict[int, str]) -> tuple[str, str] | None:
        if record.key is None:
            return "MissingKey", "record has no key; the warehouse upserts on the record key"
        if record.value is not None and record.schema_id is None:
            return "MissingSchema", "record value carries no schema id"
        if record.schema_id is not None and record.schema_id in refused_ids:
            return "ColumnTypeConflict", refused_ids[record.schema_id]
        return None

    def _check(
        self, table: str, schema_id: int, columns: Sequence[Column], planned: dict[str, Kind], plan: TablePlan
    ) -> None:
        reserved = {self.config.key_column, SOURCE_COLUMN, PARTITION_COLUMN, OFFSET_COLUMN}
        for column in columns:
            if column.name in reserved:
                raise ColumnTypeConflict(f"field {column.name} of schema id {schema_id} uses a reserved column name")
            current = planned.get(column.name)
            if current is None or current == column.kind or column.kind in WIDER.get(current, frozenset()):
                continue
            widened = _WIDENINGS.get((current, column.kind))
            if widened is None:
                raise ColumnTypeConflict(
                    f"column {column.name} of table {table} is {current}, schema id {schema_id} makes it {column.kind}"
                )
            planned[column.name] = widened
            plan.widen.append(Column(column.name, widened, True, column.precision, column.scale))
        for column in columns:
            if column.name not in planned:
                planned[column.name] = column.kind
                plan.add.append(Column(column.name, column.kind, True, column.precision, column.scale))

    def _apply_or_split(self, plan: TablePlan) -> list[Rejected]:
        """Apply the plan; if the database refuses some value, apply record by record and reject only those."""
        try:
            self._apply(plan)
        except RetryableError:
            self._tables.pop(plan.table, None)
            raise
        except Exception as exc:
            self._tables.pop(plan.table, None)
            if not self._is_row_error(exc):
                raise
            log.warning(
                "event=batch_refused sink=%s table=%s reason=%s; writing record by record",
                self.name,
                plan.table,
                type(exc).__name__,
            )
            return self._apply_one_by_one(plan)
        self._remember(plan)
        return []

    def _apply_one_by_one(self, plan: TablePlan) -> list[Rejected]:
        rejected: list[Rejected] = []
        ddl_done = False
        singles: list[TablePlan] = [
            TablePlan(plan.table, plan.create, plan.add, plan.widen, plan.columns, [row], [record])
            for row, record in zip(plan.rows, plan.row_records, strict=True)
        ]
        singles += [
            TablePlan(plan.table, plan.create, plan.add, plan.widen, plan.columns, deletes=[key], delete_records=[rec])
            for key, rec in zip(plan.deletes, plan.delete_records, strict=True)
        ]
        for single in singles:
            if ddl_done:
                single.create, single.add, single.widen = False, [], []
            try:
                self._apply(single)
                ddl_done = True
            except RetryableError:
                raise
            except Exception as exc:
                if not self._is_row_error(exc):
                    raise
                record = (single.row_records or single.delete_records)[0]
                rejected.append(Rejected(record, type(exc).__name__, f"{plan.table}: {exc}"))
        if ddl_done:
            self._remember(plan)
        return rejected

    def _remember(self, plan: TablePlan) -> None:
        known = self._tables.setdefault(plan.table, {self.config.key_column: "string", SOURCE_COLUMN: "string"})
        for column in [*plan.add, *plan.widen]:
            known[column.name] = column.kind
