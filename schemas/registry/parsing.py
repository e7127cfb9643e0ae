"""Parse and validate submitted Avro schemas (with references to other subjects) with the `avro` package.

Two schemas are "the same" when their JSON is equal after parsing (whitespace and key order do not matter,
docs and defaults do, because they change what readers get) and their references are equal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import avro.schema
from avro.name import Names

from schemas.registry import errors

SUPPORTED_TYPES = ("AVRO",)
KNOWN_TYPES = ("AVRO", "JSON", "PROTOBUF")


@dataclass(frozen=True)
class Reference:
    """A named type taken from another subject's version, as Confluent models it."""

    name: str
    subject: str
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "version": self.version}


@dataclass(frozen=True)
class ParsedSchema:
    text: str
    canonical: str
    avro: avro.schema.Schema
    references: tuple[Reference, ...]


ReferenceResolver = Callable[[str, int], tuple[str, tuple[Reference, ...]] | None]


def canonical_text(text: str, references: Sequence[Reference] = ()) -> str:
    """The identity of a schema for de-duplication: sorted-key compact JSON plus its references."""
    body = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    if not references:
        return body
    refs = json.dumps([ref.to_json() for ref in references], sort_keys=True, separators=(",", ":"))
    return f"{body}|{refs}"


def check_schema_type(schema_type: object) -> str:
    kind = "AVRO" if schema_type is None else schema_type
    if not isinstance(kind, str) or kind.upper() not in KNOWN_TYPES:
        raise errors.invalid_schema(f"unknown schemaType {schema_type!r}; this registry stores AVRO")
    if kind.upper() not in SUPPORTED_TYPES:
        raise errors.invalid_schema(f"schemaType {kind.upper()} is not supported yet; this registry stores AVRO only")
    return kind.upper()


def parse_references(raw: object) -> tuple[Reference, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise errors.invalid_schema("references must be a list of {name, subject, version}")
    parsed = []
    for item in raw:
        if not isinstance(item, dict):
            raise errors.invalid_schema("each reference must be an object with name, subject and version")
        name, subject, version = item.get("name"), item.get("subject"), item.get("version")
        if not isinstance(name, str) or not isinstance(subject, str) or type(version) is not int or version < 1:
            raise errors.invalid_schema(f"reference {item!r} needs a string name and subject and a version >= 1")
        parsed.append(Reference(name, subject, version))
    return tuple(parsed)


def parse(text: object, references: tuple[Reference, ...], resolve: ReferenceResolver) -> ParsedSchema:
    """Validate `text` as Avro, resolving referenced named types through `resolve(subject, version)`."""
    if not isinstance(text, str) or not text.strip():
        raise errors.invalid_schema("the request needs a non-empty string field 'schema'")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise errors.invalid_schema(f"schema is not JSON: {exc}") from exc
    names = Names()
    _load_references(references, resolve, names, set())
    try:
        parsed = avro.schema.make_avsc_object(document, names)
    except Exception as exc:  # the avro package raises SchemaParseException, AvroException, TypeError, ...
        raise errors.invalid_schema(f"not a valid Avro schema: {exc}") from exc
    compact = json.dumps(document, separators=(",", ":"))
    return ParsedSchema(compact, canonical_text(compact, references), parsed, references)


def _load_references(
    references: tuple[Reference, ...],
    resolve: ReferenceResolver,
    names: Names,
    seen: set[tuple[str, int]],
) -> None:
    for ref in references:
        if (ref.subject, ref.version) in seen:
            continue
        seen.add((ref.subject, ref.version))
        found = resolve(ref.subject, ref.version)
        if found is None:
            raise errors.invalid_schema(
                f"reference {ref.name!r} names subject {ref.subject!r} version {ref.version}, which does not exist"
            )
        text, nested = found
        _load_references(nested, resolve, names, seen)
        try:
            avro.schema.make_avsc_object(json.loads(text), names)
        except Exception as exc:  # same exception zoo as above
            raise errors.invalid_schema(f"referenced schema {ref.subject} v{ref.version} is invalid: {exc}") from exc
