"""Rows read from a file for `headwater produce`: JSON Lines, CSV or Avro object container files.

Each row keeps its line number (CSV: the physical line its record starts on; Avro: the record's position, 1-based),
so a row that does not match the schema is reported where the user can find it. CSV cells are text: they are
converted to the Avro type of their column (an empty cell is null where the column allows null).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import fastavro

RowFormat = Literal["jsonl", "csv", "avro"]
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_FORMAT_BY_SUFFIX: dict[str, RowFormat] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".avro": "avro",
}


class RowError(ValueError):
    """A row that cannot be read or does not match the schema; `line` and `field` say where."""

    def __init__(self, line: int, reason: str, field: str | None = None) -> None:
        where = f"line {line}" + (f", field {field}" if field else "")
        super().__init__(f"{where}: {reason}")
        self.line = line
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    value: dict[str, Any] | None
    error: RowError | None = None


def format_of(path: Path | None, declared: RowFormat | None) -> RowFormat:
    """The declared format, else the file's suffix; standard input without a declaration is JSON Lines."""
    if declared is not None:
        return declared
    if path is None:
        return "jsonl"
    found = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if found is None:
        raise ValueError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; pass --format")
    return found


def json_lines(stream: IO[str]) -> Iterator[Row]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Row(number, None, RowError(number, f"not JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(value, dict):
            yield Row(number, None, RowError(number, f"a JSON object was expected, found {type(value).__name__}"))
            continue
        yield Row(number, value)


def _branches(avro_type: Any) -> list[Any]:
    return list(avro_type) if isinstance(avro_type, list) else [avro_type]


def _type_name(avro_type: Any) -> str:
    if isinstance(avro_type, dict):
        return str(avro_type.get("logicalType") or avro_type.get("type"))
    return str(avro_type)


def _one(text: str, branch: Any) -> Any:
    base = branch.get("type") if isinstance(branch, dict) else branch
    logical = branch.get("logicalType") if isinstance(branch, dict) else None
    if base in ("int", "long"):
        if logical and logical.startswith(("timestamp", "local-timestamp")) and not text.lstrip("-").isdigit():
            return datetime.fromisoformat(text)
        return int(text)
    if base in ("float", "double"):
        return float(text)
    if base == "boolean":
        lowered = text.strip().lower()
        if lowered not in _BOOLEANS:
            raise ValueError(text)
        return _BOOLEANS[lowered]
    if base in ("record", "array", "map"):
        return json.loads(text)
    return text


def _from_text(text: str, avro_type: Any) -> Any:
    """One CSV cell as the Avro type of its column (the first union branch it reads as)."""
    branches = _branches(avro_type)
    if text == "" and "null" in branches:
        return None
    for branch in branches:
        if branch == "null":
            continue
        try:
            return _one(text, branch)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not of type {' or '.join(_type_name(b) for b in branches)}")


def csv_rows(stream: IO[str], schema: Mapping[str, Any]) -> Iterator[Row]:
    types = {field["name"]: field["type"] for field in schema.get("fields", [])}
    reader = csv.DictReader(stream)
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in types]
    line = reader.line_num
    for cells in reader:
        start, line = line + 1, reader.line_num
        if unknown:
            yield Row(start, None, RowError(start, "column is not in the schema", unknown[0]))
            continue
        value: dict[str, Any] = {}
        error: RowError | None = None
        for name, text in cells.items():
            if name is None or text is None:
                error = RowError(start, f"the row has {len(header)} columns in its header but not in this row")
                break
            try:
                value[name] = _from_text(text, types[name])
            except ValueError as exc:
                error = RowError(start, str(exc), name)
                break
        yield Row(start, None if error else value, error)


def avro_rows(stream: IO[bytes]) -> Iterator[Row]:
    for number, record in enumerate(fastavro.reader(stream), start=1):
        yield Row(number, record if isinstance(record, dict) else None,
                  None if isinstance(record, dict) else RowError(number, "the container holds no records"))


def read_rows(path: Path | None, row_format: RowFormat, schema: Mapping[str, Any], stdin: IO[str]) -> Iterator[Row]:
    """Every row of the file (or standard input), in order."""
    if row_format == "avro":
        if path is None:
            raise ValueError("Avro container files are read from a file, not standard input")
        with path.open("rb") as binary:
            yield from avro_rows(binary)
        return
    if path is None:
        yield from (json_lines(stdin) if row_format == "jsonl" else csv_rows(stdin, schema))
        return
    with path.open(encoding="utf-8", newline="") as text:
        yield from (json_lines(text) if row_format == "jsonl" else csv_rows(text, schema))
