"""Schema evolution under each compatibility level, decided by the registry (avro.compatibility) on registration."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.fixtures.registry import RegistryService


def rec(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "Evolving", "namespace": "io.test", "fields": list(fields)}


def f(name: str, kind: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Stage", "symbols": list(symbols), **extra}


ID = f("id", "string")
A = rec(ID)
A_WITH_DEFAULT = rec(ID, f("tier", "int", default=0))
A_WITHOUT_DEFAULT = rec(ID, f("tier", "int"))
BACKWARD_ONLY = ("BACKWARD", "BACKWARD_TRANSITIVE")
FORWARD_ONLY = ("FORWARD", "FORWARD_TRANSITIVE")
ALL = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")


def promotion(old: str, new: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return rec(ID, f("n", old)), rec(ID, f("n", new))


# (name, history (oldest first), new schema, levels under which the new schema is accepted)
EVOLUTIONS: list[tuple[str, list[dict[str, Any]], dict[str, Any], tuple[str, ...]]] = [
    ("add-field-with-default", [A], A_WITH_DEFAULT, ALL),
    ("add-field-without-default", [A], A_WITHOUT_DEFAULT, FORWARD_ONLY),
    ("remove-field-with-default", [A_WITH_DEFAULT], A, ALL),
    ("remove-field-without-default", [A_WITHOUT_DEFAULT], A, BACKWARD_ONLY),
    ("change-type-string-to-int", [rec(f("id", "string"))], rec(f("id", "int")), ()),
    ("promote-int-to-long", [promotion("int", "long")[0]], promotion("int", "long")[1], BACKWARD_ONLY),
    ("promote-long-to-float", [promotion("long", "float")[0]], promotion("long", "float")[1], BACKWARD_ONLY),
    ("promote-float-to-double", [promotion("float", "double")[0]], promotion("float", "double")[1], BACKWARD_ONLY),
    ("promote-int-to-double", [promotion("int", "double")[0]], promotion("int", "double")[1], BACKWARD_ONLY),
    ("narrow-double-to-int", [promotion("double", "int")[0]], promotion("double", "int")[1], FORWARD_ONLY),
    ("string-to-bytes", [promotion("string", "bytes")[0]], promotion("string", "bytes")[1], ALL),
    ("bytes-to-string", [promotion("bytes", "string")[0]], promotion("bytes", "string")[1], ALL),
    (
        "enum-add-symbol",
        [rec(f("stage", enum("LEAD", "WON")))],
        rec(f("stage", enum("LEAD", "WON", "LOST"))),
        BACKWARD_ONLY,
    ),
    (
        "enum-remove-symbol",
        [rec(f("stage", enum("LEAD", "WON", "LOST")))],
        rec(f("stage", enum("LEAD", "WON"))),
        FORWARD_ONLY,
    ),
    (
        "enum-remove-symbol-reader-default",
        [rec(f("stage", enum("LEAD", "WON", "LOST")))],
        rec(f("stage", enum("LEAD", "WON", default="LEAD"))),
        ALL,
    ),
    ("union-add-branch", [rec(f("v", ["null", "string"]))], rec(f("v", ["null", "string", "int"])), BACKWARD_ONLY),
    ("union-remove-branch", [rec(f("v", ["null", "string", "int"]))], rec(f("v", ["null", "string"])), FORWARD_ONLY),
    ("make-field-nullable", [rec(f("v", "string"))], rec(f("v", ["null", "string"])), BACKWARD_ONLY),
    (
        "rename-field-with-alias",
        [rec(f("fullname", "string"))],
        rec(f("name", "string", aliases=["fullname"])),
        BACKWARD_ONLY,
    ),
    ("rename-field-without-alias", [rec(f("fullname", "string"))], rec(f("name", "string")), ()),
    (
        "rename-record-with-alias",
        [rec(ID)],
        {**rec(ID), "name": "Renamed", "aliases": ["io.test.Evolving"]},
        BACKWARD_ONLY,
    ),
    # transitive levels also check versions older than the latest
    (
        "backward-breaks-an-older-version",
        [A, A_WITH_DEFAULT],
        A_WITHOUT_DEFAULT,
        ("BACKWARD", "FORWARD", "FORWARD_TRANSITIVE", "FULL"),
    ),
    (
        "forward-breaks-an-older-version",
        [A_WITHOUT_DEFAULT, A_WITH_DEFAULT],
        A,
        ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FULL"),
    ),
]

LEVELS = ("NONE", *ALL)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    ("history", "new", "accepted_under"),
    [case[1:] for case in EVOLUTIONS],
    ids=[case[0] for case in EVOLUTIONS],
)
def test_evolution(
    registry: RegistryService,
    level: str,
    history: list[dict[str, Any]],
    new: dict[str, Any],
    accepted_under: tuple[str, ...],
) -> None:
    client = registry.client()
    subject = f"evolve.{uuid.uuid4().hex[:10]}-value"
    client.set_compatibility(subject, "NONE")
    for old in history:
        client.register_schema(subject, Schema(json.dumps(old), "AVRO"))
    client.set_compatibility(subject, level)
    expected = level == "NONE" or level in accepted_under

    assert client.test_compatibility_all_versions(subject, Schema(json.dumps(new), "AVRO")) is expected
    before = registry.end_offset()
    if expected:
        client.register_schema(subject, Schema(json.dumps(new), "AVRO"))
        assert client.get_versions(subject) == list(range(1, len(history) + 2))
    else:
        with pytest.raises(SchemaRegistryError) as caught:
            client.register_schema(subject, Schema(json.dumps(new), "AVRO"))
        assert (caught.value.http_status_code, caught.value.error_code) == (409, 409)
        assert level in caught.value.error_message
        assert registry.end_offset() == before
