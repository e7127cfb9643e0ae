"""Compatibility levels, decided by the `avro` package's reader/writer checker (`avro.compatibility`)."""

from __future__ import annotations

from collections.abc import Sequence

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas.registry import errors

DEFAULT_LEVEL = "BACKWARD"
LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)


def check_level(level: object) -> str:
    if not isinstance(level, str) or level.upper() not in LEVELS:
        raise errors.invalid_compatibility(level)
    return level.upper()


def is_transitive(level: str) -> bool:
    return level.endswith("_TRANSITIVE")


def _checks(
    new: avro.schema.Schema, old: avro.schema.Schema, version: int, level: str
) -> list[tuple[str, avro.schema.Schema, avro.schema.Schema]]:
    """(what failing means, reader, writer) for each direction the level asks for."""
    base = level.removesuffix("_TRANSITIVE")
    checks = []
    if base in ("BACKWARD", "FULL"):
        checks.append((f"the new schema cannot read data written with version {version}", new, old))
    if base in ("FORWARD", "FULL"):
        checks.append((f"version {version} cannot read data written with the new schema", old, new))
    return checks


def incompatibilities(
    new: avro.schema.Schema, previous: Sequence[tuple[int, avro.schema.Schema, str]], level: str
) -> list[str]:
    """Confluent's messages for why `new` breaks `level` against the `previous` (version, schema, text) triples;
    empty if it does not.

    The caller passes the versions the level asks for: the latest one, or all of them for _TRANSITIVE levels. As
    Confluent's `CompatibilityChecker` does, the newest failing version is reported, followed by
    `{oldSchemaVersion: n}`, `{oldSchema: '...'}` and `{validateFields: 'false', compatibility: '...'}`.
    """
    for version, old, text in sorted(previous, key=lambda item: item[0], reverse=True):
        reasons: list[str] = []
        for meaning, reader, writer in _checks(new, old, version, level):
            result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)  # type: ignore[no-untyped-call]
            if result.compatibility is SchemaCompatibilityType.compatible:
                continue
            kinds = ", ".join(sorted({kind.name.upper() for kind in result.incompatibilities}))
            reasons.append(
                f"{{errorType:'{kinds}', description:'{meaning}: {'; '.join(sorted(result.messages))}', "
                f"additionalInfo:'{', '.join(sorted(result.locations))}'}}"
            )
        if reasons:
            return [
                *reasons,
                f"{{oldSchemaVersion: {version}}}",
                f"{{oldSchema: '{text}'}}",
                f"{{validateFields: 'false', compatibility: '{level}'}}",
            ]
    return []
