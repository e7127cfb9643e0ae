"""Parse and validate submitted Avro schemas (with references to other subjects) with the `avro` package.

As in Confluent, a schema is stored as Avro's canonical string (`canonical.canonical_string`, Java's
`Schema.toString`), and two schemas are "the same" when those strings and their references are equal: whitespace,
key order and spellings such as `{"type": "int"}` for `"int"` do not matter; docs and defaults do. Field defaults of
new schemas are validated (fastavro's parser checks them, with Avro Java's rule that a union default may match any
branch); schemas already stored are read without that check, as Confluent does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import avro.schema
import fastavro
from avro.name import Names
from fastavro.schema import SchemaParseException

from schemas.registry import errors
from schemas.registry.canonical import canonical_string

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
    text: str  # what is stored and answered: Confluent's canonical string
    identity: str  # the text plus the references: equal for every spelling of one schema
    avro: avro.schema.Schema
    references: tuple[Reference, ...]


ReferenceResolver = Callable[[str, int], tuple[str, tuple[Reference, ...]] | None]


def identity_of(text: str, references: Sequence[Reference] = ()) -> str:
    if not references:
        return text
    refs = json.dumps([ref.to_json() for ref in references], sort_keys=True, separators=(",", ":"))
    return f"{text}|{refs}"


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


def parse(
    text: object, references: tuple[Reference, ...], resolve: ReferenceResolver, validate_defaults: bool = True
) -> ParsedSchema:
    """Validate `text` as Avro, resolving referenced named types through `resolve(subject, version)`."""
    if not isinstance(text, str) or not text.strip():
        raise errors.invalid_schema("the request needs a non-empty string field 'schema'")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise errors.invalid_schema(f"schema is not JSON: {exc}") from exc
    referenced: list[tuple[Any, Reference]] = []
    _load_references(references, resolve, referenced, set())
    names = Names()
    for ref_document, ref in referenced:
        try:
            avro.schema.make_avsc_object(ref_document, names)
        except Exception as exc:  # the avro package raises SchemaParseException, AvroException, TypeError, ...
            raise errors.invalid_schema(f"referenced schema {ref.subject} v{ref.version} is invalid: {exc}") from exc
    known = Names()
    known.names = dict(names.names)
    try:
        parsed = avro.schema.make_avsc_object(document, names)
    except Exception as exc:  # same exception zoo as above
        raise errors.invalid_schema(f"not a valid Avro schema: {exc}") from exc
    if validate_defaults:
        _check_defaults(document, [ref_document for ref_document, _ in referenced])
    canonical = canonical_string(parsed, known)
    return ParsedSchema(canonical, identity_of(canonical, references), parsed, references)


def _check_defaults(document: Any, referenced: list[Any]) -> None:
    named: dict[str, Any] = {}
    try:
        for ref_document in referenced:
            fastavro.parse_schema(ref_document, named_schemas=named, _write_hint=False)
        fastavro.parse_schema(document, named_schemas=named, _write_hint=False)
    except SchemaParseException as exc:
        raise errors.invalid_schema(f"not a valid Avro schema: {exc}") from exc


def _load_references(
    references: tuple[Reference, ...],
    resolve: ReferenceResolver,
    loaded: list[tuple[Any, Reference]],
    seen: set[tuple[str, int]],
) -> None:
    """Append each referenced schema's document after the ones it references itself, once each."""
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
        _load_references(nested, resolve, loaded, seen)
        try:
            loaded.append((json.loads(text), ref))
        except ValueError as exc:
            raise errors.invalid_schema(f"referenced schema {ref.subject} v{ref.version} is not JSON: {exc}") from exc
