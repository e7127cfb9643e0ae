"""The `_schemas` topic's record format, as Confluent Schema Registry (and Karapace) write it.

Keys and values are compact JSON. Keys: `{"keytype":"SCHEMA","subject":s,"version":v,"magic":1}`,
`{"keytype":"CONFIG","subject":s|null,"magic":0}`, `{"keytype":"MODE","subject":s|null,"magic":0}`,
`{"keytype":"DELETE_SUBJECT","subject":s,"magic":0}`, `{"keytype":"NOOP","magic":0}`. A null value is a tombstone
(permanent delete of a version, removal of a config or mode). Key order matters to compaction: the same logical
key must always serialise to the same bytes, so keys are written in Confluent's field order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from schemas.registry.parsing import Reference

SCHEMA = "SCHEMA"
CONFIG = "CONFIG"
MODE = "MODE"
DELETE_SUBJECT = "DELETE_SUBJECT"
NOOP = "NOOP"


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def schema_key(subject: str, version: int) -> bytes:
    return _dump({"keytype": SCHEMA, "subject": subject, "version": version, "magic": 1})


def config_key(subject: str | None) -> bytes:
    return _dump({"keytype": CONFIG, "subject": subject, "magic": 0})


def mode_key(subject: str | None) -> bytes:
    return _dump({"keytype": MODE, "subject": subject, "magic": 0})


def delete_subject_key(subject: str) -> bytes:
    return _dump({"keytype": DELETE_SUBJECT, "subject": subject, "magic": 0})


@dataclass(frozen=True)
class SchemaValue:
    subject: str
    version: int
    id: int
    schema: str
    deleted: bool = False
    schema_type: str = "AVRO"
    references: tuple[Reference, ...] = ()

    def encode(self) -> bytes:
        value: dict[str, Any] = {"subject": self.subject, "version": self.version, "id": self.id}
        if self.schema_type != "AVRO":
            value["schemaType"] = self.schema_type
        if self.references:
            value["references"] = [ref.to_json() for ref in self.references]
        value["schema"] = self.schema
        value["deleted"] = self.deleted
        return _dump(value)


def config_value(level: str) -> bytes:
    return _dump({"compatibilityLevel": level})


def mode_value(mode: str) -> bytes:
    return _dump({"mode": mode})


def delete_subject_value(subject: str, version: int) -> bytes:
    return _dump({"subject": subject, "version": version})


class MalformedRecord(ValueError):
    """A `_schemas` record this registry cannot interpret (skipped and logged, never fatal)."""


def decode_json(data: bytes | None) -> dict[str, Any] | None:
    """None for a tombstone (null or empty value, Karapace writes the latter); the object otherwise."""
    if not data:
        return None
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise MalformedRecord(f"not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise MalformedRecord("not a JSON object")
    return parsed


def decode_schema_value(value: dict[str, Any]) -> SchemaValue:
    try:
        references = tuple(
            Reference(str(ref["name"]), str(ref["subject"]), int(ref["version"]))
            for ref in value.get("references") or ()
        )
        return SchemaValue(
            subject=str(value["subject"]),
            version=int(value["version"]),
            id=int(value["id"]),
            schema=str(value["schema"]),
            deleted=bool(value.get("deleted", False)),
            schema_type=str(value.get("schemaType") or "AVRO"),
            references=references,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedRecord(f"schema value without {exc}") from exc
