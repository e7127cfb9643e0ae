"""Warehouse columns derived from an Avro record schema, in a form each sink maps to its own SQL or Arrow types."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal

Kind = Literal[
    "boolean", "int", "long", "float", "double", "string", "bytes", "decimal", "date", "time", "timestamp", "json"
]

_PRIMITIVES: dict[str, Kind] = {
    "boolean": "boolean",
    "int": "int",
    "long": "long",
    "float": "float",
    "double": "double",
    "string": "string",
    "bytes": "bytes",
    "fixed": "bytes",
    "enum": "string",
}
_LOGICAL: dict[str, Kind] = {
    "date": "date",
    "time-millis": "time",
    "time-micros": "time",
    "timestamp-millis": "timestamp",
    "timestamp-micros": "timestamp",
    "local-timestamp-millis": "timestamp",
    "local-timestamp-micros": "timestamp",
    "uuid": "string",
    "decimal": "decimal",
}

# A column of the first kind can hold every value of the second without loss.
WIDER: dict[Kind, frozenset[Kind]] = {
    "long": frozenset({"int"}),
    "double": frozenset({"float", "int"}),
    "json": frozenset({"json"}),
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool
    precision: int = 38
    scale: int = 0


class SchemaMappingError(ValueError):
    """An Avro schema that is no record, or a field that cannot become a column."""


def _kind_of(avro_type: Any) -> tuple[Kind, bool, int, int]:
    """(kind, nullable, precision, scale) of one field type."""
    if isinstance(avro_type, list):
        branches = [branch for branch in avro_type if branch != "null"]
        nullable = len(branches) < len(avro_type)
        if len(branches) == 1:
            kind, _, precision, scale = _kind_of(branches[0])
            return kind, nullable, precision, scale
        return "json", nullable, 38, 0
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical in _LOGICAL:
            kind = _LOGICAL[logical]
            return kind, False, int(avro_type.get("precision", 38)), int(avro_type.get("scale", 0))
        base = avro_type.get("type")
        if isinstance(base, str) and base in _PRIMITIVES:
            return _PRIMITIVES[base], False, 38, 0
        return "json", False, 38, 0
    if isinstance(avro_type, str) and avro_type in _PRIMITIVES:
        return _PRIMITIVES[avro_type], False, 38, 0
    return "json", False, 38, 0


def columns_of(schema: Mapping[str, Any] | str) -> list[Column]:
    """The columns for the fields of an Avro record schema (JSON text or parsed), in field order."""
    parsed: Any = json.loads(schema) if isinstance(schema, str) else schema
    if not isinstance(parsed, Mapping) or parsed.get("type") != "record":
        raise SchemaMappingError("the value schema is not an Avro record; a warehouse table needs named fields")
    result = []
    for field in parsed["fields"]:
        kind, nullable, precision, scale = _kind_of(field["type"])
        result.append(Column(field["name"], kind, nullable, precision, scale))
    return result


def merge_columns(batches: Sequence[Sequence[Column]]) -> list[Column]:
    """Union of several schemas' columns; the first schema naming a column decides its type and position."""
    merged: dict[str, Column] = {}
    for columns in batches:
        for column in columns:
            merged.setdefault(column.name, column)
    return list(merged.values())


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any) -> str | None:
    """Nested records, arrays, maps and multi-type unions are stored as JSON text."""
    if value is None:
        return None
    return json.dumps(value, default=_json_default, separators=(",", ":"), sort_keys=True)
