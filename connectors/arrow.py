"""Arrow types for warehouse columns, shared by the sinks that stage or write Arrow data (DuckDB, Parquet)."""

from __future__ import annotations

import pyarrow as pa

from connectors.columns import Column


def arrow_type(column: Column) -> pa.DataType:
    if column.kind == "decimal":
        return pa.decimal128(min(column.precision, 38), column.scale)
    return {
        "boolean": pa.bool_(),
        "int": pa.int32(),
        "long": pa.int64(),
        "float": pa.float32(),
        "double": pa.float64(),
        "string": pa.string(),
        "bytes": pa.binary(),
        "date": pa.date32(),
        "time": pa.time64("us"),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "json": pa.string(),
    }[column.kind]
