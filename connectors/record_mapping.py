"""Mapping an API record onto a catalog schema by a field table, shared by the CRM sources and the webhook.

A table maps a schema field (dotted for a field of a nested record) to the API's field; `=text` is a constant.
A record missing a required field is not lost: it becomes a MissingField failure (a dead letter) with its raw bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from connectors.base import SourceFailure, SourceRecord


def map_fields(
    table: Mapping[str, str],
    schema: Mapping[str, Any],
    read: Callable[[str], Any],
    coerce: Callable[[Any, Any], Any],
    nested: Callable[[Any], Any],
) -> dict[str, Any]:
    """The schema's value: `read(api_field)` converted by `coerce(raw, avro_type)`, or by `nested(raw)` inside a
    nested record (left out as a whole when all its fields are None). ValueError names missing required fields."""
    types = {f["name"]: f["type"] for f in schema["fields"]}
    children: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {}
    for target, source in table.items():
        raw = source[1:] if source.startswith("=") else read(source)
        if "." in target:
            parent, child = target.split(".", 1)
            children.setdefault(parent, {})[child] = nested(raw)
        else:
            out[target] = coerce(raw, types.get(target, "string"))
    for parent, values in children.items():
        out[parent] = values if any(v is not None for v in values.values()) else None
    missing = [f["name"] for f in schema["fields"] if "default" not in f and out.get(f["name"]) is None]
    if missing:
        raise ValueError(f"missing required fields {', '.join(missing)}")
    return out


def take_mapped(
    records: list[SourceRecord],
    failures: list[SourceFailure],
    topic: str,
    key: str,
    schema: dict[str, Any],
    where: str,
    raw: bytes,
    build: Callable[[], dict[str, Any]],
) -> None:
    """Append the record `build()` maps, or, when it cannot (ValueError/TypeError), its MissingField failure."""
    try:
        value = build()
    except (ValueError, TypeError) as exc:
        failures.append(SourceFailure(topic, raw, "MissingField", str(exc), where, key.encode()))
        return
    records.append(SourceRecord(topic, key, value, schema, where, raw))
