"""Convert a field to another primitive type; a value that does not convert fails the record (dead letter)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from headwater import fields
from headwater.fields import Record, TransformError
from streams.transforms.base import Step

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    return int(str(value).strip())


_CASTS: dict[str, Callable[[Any], Any]] = {
    "int": _to_int,
    "long": _to_int,
    "float": lambda value: float(str(value).strip()) if isinstance(value, str) else float(value),
    "double": lambda value: float(str(value).strip()) if isinstance(value, str) else float(value),
    "string": str,
    "boolean": _to_bool,
}


class Cast(Step):
    op: Literal["cast"]
    field: str = Field(description="Dotted path of the field to convert; null stays null.")
    to: Literal["int", "long", "float", "double", "string", "boolean"] = Field(description="Target Avro type.")

    def apply(self, record: Record) -> None:
        path = fields.split(self.field)
        value = fields.get(record, path)
        if value is None:
            return
        try:
            fields.put(record, path, _CASTS[self.to](value))
        except (TypeError, ValueError) as exc:
            raise TransformError(self.field, f"cannot cast {type(value).__name__} to {self.to}: {exc}") from exc
