"""Give a missing or null field a value."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from headwater import fields
from headwater.fields import Record
from streams.transforms.base import Step


class Default(Step):
    op: Literal["default"]
    field: str = Field(description="Dotted path of the field.")
    value: Any = Field(description="Value set when the field is missing or null.")
    when_empty: bool = Field(False, description="Also replace an empty or blank string.")

    def apply(self, record: Record) -> None:
        path = fields.split(self.field)
        current = fields.get(record, path)
        if current is None or (self.when_empty and isinstance(current, str) and not current.strip()):
            fields.put(record, path, self.value)
