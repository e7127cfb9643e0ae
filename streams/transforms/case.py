"""Change the letter case of string fields."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from headwater import fields
from headwater.fields import Record
from streams.transforms.base import Step


class Case(Step):
    op: Literal["case"]
    fields_: list[str] = Field(alias="fields", min_length=1, description="Dotted paths of string fields.")
    to: Literal["lower", "upper", "title"] = Field(description="Target case (Unicode-aware).")

    def apply(self, record: Record) -> None:
        for name in self.fields_:
            path = fields.split(name)
            value = fields.get(record, path)
            if isinstance(value, str):
                fields.put(record, path, getattr(value, self.to)())
