"""Reading and writing possibly nested fields of a decoded record by dotted path (`mailing_address.country`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Record = dict[str, Any]
_MISSING = object()


class TransformError(ValueError):
    """A step could not be applied to a record; `field` names the field it failed on."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"field {field}: {message}")
        self.field = field


def split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def get(record: Mapping[str, Any], path: tuple[str, ...], default: Any = None) -> Any:
    current: Any = record
    for part in path:
        if not isinstance(current, dict):
            return default
        current = current.get(part, _MISSING)
        if current is _MISSING:
            return default
    return current


def has(record: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    return get(record, path, _MISSING) is not _MISSING


def put(record: Record, path: tuple[str, ...], value: Any) -> None:
    """Set a field, creating intermediate records; a null intermediate record stays null (nothing to set)."""
    current: Any = record
    for part in path[:-1]:
        child = current.get(part)
        if child is None:
            if part in current:
                return
            child = current[part] = {}
        if not isinstance(child, dict):
            raise TransformError(".".join(path), f"{part} is not a record")
        current = child
    current[path[-1]] = value


def pop(record: Record, path: tuple[str, ...]) -> Any:
    parent = get(record, path[:-1]) if len(path) > 1 else record
    if isinstance(parent, dict):
        return parent.pop(path[-1], None)
    return None
