"""The text Confluent stores for an Avro schema: Avro Java's `Schema.toString()` of the parsed schema.

The `avro` package parses the schema (resolving names, namespaces and references) and gives its JSON with
`to_json`; that JSON holds the same content Java writes, in another key order and with every namespace spelled out.
This module only lays it out as Java's `Schema.toJson` does: compact, keys in Java's order (`type`, `name`,
`namespace`, `doc`, then the type's own keys, then other properties, then `aliases`; fields `name`, `type`, `doc`,
`default`, `order`, `aliases`, properties), a namespace only where it differs from the enclosing one, and names
qualified only where they are outside the enclosing namespace.
"""

from __future__ import annotations

import json
from typing import Any

import avro.schema
from avro.name import Names

NAMED = {
    "record": ("fields",),
    "error": ("fields",),
    "enum": ("symbols", "default"),
    "fixed": ("size",),
}
CONTAINERS = {"array": ("items",), "map": ("values",)}
FIELD_KEYS = ("name", "type", "doc", "default", "order", "aliases")


def canonical_string(schema: avro.schema.Schema, known: Names) -> str:
    """Java's `schema.toString(references, false)`: types already in `known` (from references) are written by name."""
    return json.dumps(_schema(schema.to_json(known), None), separators=(",", ":"), ensure_ascii=False)


def _split(fullname: str) -> tuple[str, str | None]:
    space, _, name = fullname.rpartition(".")
    return name, space or None


def _schema(node: Any, space: str | None) -> Any:
    if isinstance(node, list):
        return [_schema(branch, space) for branch in node]
    if isinstance(node, str):
        return _name_ref(node, space)
    kind = node["type"]
    if kind in NAMED:
        return _named(node, kind, space)
    out: dict[str, Any] = {"type": kind if isinstance(kind, str) else _schema(kind, space)}
    for key in CONTAINERS.get(kind, ()):
        out[key] = _schema(node[key], space)
    out.update((key, value) for key, value in node.items() if key not in out)
    return out


def _name_ref(name: str, space: str | None) -> str:
    short, own_space = _split(name)
    return short if own_space is None or own_space == space else name


def _named(node: dict[str, Any], kind: str, space: str | None) -> dict[str, Any]:
    short, own_space = _split(node["name"])
    own_space = node.get("namespace") or own_space
    out: dict[str, Any] = {"type": kind, "name": short}
    if own_space is not None and own_space != space:
        out["namespace"] = own_space
    elif own_space is None and space is not None:
        out["namespace"] = ""
    if node.get("doc") is not None:
        out["doc"] = node["doc"]
    for key in NAMED[kind]:
        if key == "fields":
            out[key] = [_field(field, own_space) for field in node[key]]
        elif key in node:
            out[key] = node[key]
    rest = {key: value for key, value in node.items() if key not in out and key not in ("namespace", "aliases")}
    out.update(rest)
    if node.get("aliases"):
        out["aliases"] = node["aliases"]
    return out


def _field(node: dict[str, Any], space: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": node["name"], "type": _schema(node["type"], space)}
    for key in FIELD_KEYS[2:]:
        # Java leaves out the default order and empty alias lists.
        if key in node and not (key == "order" and node[key] == "ascending") and node[key] != []:
            out[key] = node[key]
    out.update((key, value) for key, value in node.items() if key not in out and key not in FIELD_KEYS)
    return out
