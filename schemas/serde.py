"""Avro serde in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary body.

Built on fastavro's schemaless reader/writer with parsed schemas cached per id (an id names one schema
forever, so that cache never expires) and subject look-ups cached with a TTL (a subject's versions can be
deleted). Everything that cannot be encoded or decoded raises a `SerdeError`, so a pipeline can route the
record to its dead-letter topic with one `except`.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

MAGIC_BYTE = 0
HEADER_SIZE = 5
SUBJECT_TTL_SECONDS = 300.0
_NOT_FOUND_CODES = {40401, 40402, 40403}


class SerdeError(ValueError):
    """A record could not be encoded, or bytes could not be decoded."""


class WireFormatError(SerdeError):
    """The bytes are not in the Confluent wire format (too short, wrong magic byte)."""


class UnknownSchemaError(SerdeError):
    """The schema id (or subject) is not known to the registry."""


class EncodeError(SerdeError):
    """The record does not match the writer schema."""


class DecodeError(SerdeError):
    """The Avro body does not decode with the writer schema (or resolve to the reader schema)."""


def header(schema_id: int) -> bytes:
    return bytes((MAGIC_BYTE,)) + schema_id.to_bytes(4, "big")


def split_header(data: bytes) -> int:
    """The schema id of a wire-format message, after checking its framing."""
    if len(data) < HEADER_SIZE:
        raise WireFormatError(f"message is {len(data)} bytes, shorter than the 5-byte wire-format header")
    if data[0] != MAGIC_BYTE:
        raise WireFormatError(f"unknown magic byte {data[0]}, expected {MAGIC_BYTE}")
    return int.from_bytes(data[1:HEADER_SIZE], "big")


def _schema_text(schema: str | Mapping[str, Any] | list[Any]) -> str:
    return schema if isinstance(schema, str) else json.dumps(schema, separators=(",", ":"))


def _parse_text(text: str, named: dict[str, Any]) -> Any:
    try:
        return parse_schema(json.loads(text), named_schemas=named)
    except Exception as exc:  # fastavro raises several unrelated types for a bad schema
        raise SerdeError(f"schema is not valid Avro: {exc}") from exc


class SchemaCache:
    """Parsed fastavro schemas by registry id, with references to other subjects resolved."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self.client = client
        self._by_id: dict[int, Any] = {}
        self._lock = threading.Lock()

    def parsed(self, schema_id: int) -> Any:
        parsed = self._by_id.get(schema_id)
        if parsed is not None:
            return parsed
        try:
            schema = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.error_code in _NOT_FOUND_CODES or exc.http_status_code == 404:
                raise UnknownSchemaError(f"schema id {schema_id} is not in the registry") from exc
            raise
        parsed = self.parse(schema)
        with self._lock:
            self._by_id[schema_id] = parsed
        return parsed

    def parse(self, schema: Schema) -> Any:
        if schema.schema_type not in (None, "AVRO"):
            raise SerdeError(f"schema type {schema.schema_type} is not Avro")
        named: dict[str, Any] = {}
        self._load_references(schema, named, set())
        return _parse_text(schema.schema_str or "", named)

    def _load_references(self, schema: Schema, named: dict[str, Any], seen: set[tuple[str, int]]) -> None:
        for ref in schema.references or []:
            if ref.subject is None or ref.version is None:
                raise SerdeError(f"schema reference {ref.name} names no subject or version")
            key = (ref.subject, ref.version)
            if key in seen:
                continue
            seen.add(key)
            try:
                referenced = self.client.get_version(ref.subject, ref.version).schema
            except SchemaRegistryError as exc:
                raise UnknownSchemaError(
                    f"referenced schema {ref.subject} version {ref.version} is not in the registry"
                ) from exc
            self._load_references(referenced, named, seen)
            text = referenced.schema_str or ""
            raw = json.loads(text)
            fullname = raw.get("name", "") if isinstance(raw, dict) else ""
            if isinstance(raw, dict) and raw.get("namespace") and "." not in fullname:
                fullname = f"{raw['namespace']}.{fullname}"
            if fullname not in named:
                _parse_text(text, named)


class AvroSerializer:
    """Encode records of one schema under one subject (registered on first use when `auto_register`)."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        subject: str,
        schema: str | Mapping[str, Any],
        auto_register: bool = True,
        references: list[Any] | None = None,
    ) -> None:
        self.client = client
        self.subject = subject
        self.auto_register = auto_register
        self._schema = Schema(_schema_text(schema), "AVRO", references or [])
        self._parsed = SchemaCache(client).parse(self._schema)
        self._schema_id: int | None = None
        self._prefix = b""
        self._id_expires = 0.0

    @property
    def schema_id(self) -> int:
        """The registry id of this schema under the subject; looked up again after the subject TTL."""
        if self._schema_id is None or time.monotonic() >= self._id_expires:
            self._schema_id = self._resolve_id()
            self._prefix = header(self._schema_id)
            self._id_expires = time.monotonic() + SUBJECT_TTL_SECONDS
        return self._schema_id

    def _resolve_id(self) -> int:
        try:
            if self.auto_register:
                return int(self.client.register_schema(self.subject, self._schema))
            found = self.client.lookup_schema(self.subject, self._schema).schema_id
            if found is None:
                raise UnknownSchemaError(f"registry returned no id for the schema under {self.subject}")
            return int(found)
        except SchemaRegistryError as exc:
            if exc.error_code in _NOT_FOUND_CODES:
                raise UnknownSchemaError(f"schema is not registered under subject {self.subject}") from exc
            if exc.http_status_code in (409, 422):
                raise EncodeError(f"registry refused the schema for {self.subject}: {exc.error_message}") from exc
            raise

    def _current_prefix(self) -> bytes:
        if time.monotonic() >= self._id_expires:
            self.schema_id  # noqa: B018 - refreshes the id and prefix
        return self._prefix

    def encode(self, record: Mapping[str, Any]) -> bytes:
        buffer = io.BytesIO(self._current_prefix())
        buffer.seek(HEADER_SIZE)
        return self._encode_into(buffer, record)

    def encode_many(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """Encode a batch with one id check and one reused buffer."""
        prefix = self._current_prefix()
        buffer = io.BytesIO()
        encoded = []
        for record in records:
            buffer.seek(0)
            buffer.truncate()
            buffer.write(prefix)
            encoded.append(self._encode_into(buffer, record))
        return encoded

    def mismatch(self, record: Mapping[str, Any]) -> tuple[str | None, str]:
        """Why `record` does not match the schema: the first field that fails and the reason (fastavro's writer only
        says that one did). The field is a dotted path inside the record; None when the record as a whole is wrong
        (a field missing or one the schema lacks)."""
        try:
            validate(record, self._parsed, raise_errors=True, strict=True)
        except ValidationError as invalid:
            first = invalid.errors[0]
            record_name = f"{self._parsed.get('name', '')}."
            path = str(first.field)
            field = path[len(record_name):] if path.startswith(record_name) else path
            expected = first.schema if isinstance(first.schema, str) else json.dumps(first.schema)
            return field, f"{first.datum!r} is not of type {expected}"
        except ValueError as strict:
            return None, str(strict)
        try:  # valid field by field, so the writer's own check (extra or missing fields) has the reason
            schemaless_writer(io.BytesIO(), self._parsed, record, strict_allow_default=True)
        except Exception as exc:  # fastavro signals a mismatch with TypeError/ValueError/KeyError/...
            return None, str(exc)
        return None, "the record does not encode with this schema"

    def _encode_into(self, buffer: io.BytesIO, record: Mapping[str, Any]) -> bytes:
        try:
            schemaless_writer(buffer, self._parsed, record, strict_allow_default=True)
        except Exception as exc:  # fastavro signals a mismatch with TypeError/ValueError/KeyError/...
            raise EncodeError(f"record does not match schema of {self.subject}: {exc}") from exc
        return buffer.getvalue()


class AvroDeserializer:
    """Decode wire-format bytes with the writer schema they name, optionally resolved to a reader schema."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        reader_schema: str | Mapping[str, Any] | None = None,
        cache: SchemaCache | None = None,
    ) -> None:
        self.client = client
        self._cache = cache or SchemaCache(client)
        self._reader = None if reader_schema is None else _parse_text(_schema_text(reader_schema), {})

    def decode(self, data: bytes) -> dict[str, Any]:
        return self.decode_with_id(data)[0]

    def decode_with_id(self, data: bytes) -> tuple[dict[str, Any], int]:
        schema_id = split_header(data)
        writer = self._cache.parsed(schema_id)
        stream = io.BytesIO(data)
        stream.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(stream, writer, self._reader)
        except Exception as exc:  # a corrupt body can surface as EOFError, IndexError, UnicodeDecodeError, ...
            raise DecodeError(f"body does not decode with schema id {schema_id}: {exc}") from exc
        if not isinstance(record, dict):
            raise DecodeError(f"schema id {schema_id} does not describe a record")
        return record, schema_id

    def decode_many(self, messages: Iterable[bytes]) -> list[dict[str, Any]]:
        return [self.decode_with_id(data)[0] for data in messages]
