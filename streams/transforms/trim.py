"""Strip surrounding whitespace and collapse inner runs; an emptied string can become null."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from headwater import fields
from headwater.fields import Record
from streams.transforms.base import Step


class Trim(Step):
    op: Literal["trim"]
    fields_: list[str] = Field(alias="fields", min_length=1, description="Dotted paths of string fields.")
    collapse: bool = Field(True, description="Also collapse runs of inner whitespace into one space.")
    empty_to_null: bool = Field(True, description="Turn a string that is empty after trimming into null.")

    def apply(self, record: Record) -> None:
        for name in self.fields_:
            path = fields.split(name)
            value = fields.get(record, path)
            if not isinstance(value, str):
                continue
            cleaned = " ".join(value.split()) if self.collapse else value.strip()
            fields.put(record, path, None if self.empty_to_null and not cleaned else cleaned)
