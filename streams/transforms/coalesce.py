"""Write the first non-null (and non-blank) of several fields into one field."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from headwater import fields
from headwater.fields import Record
from streams.transforms.base import Step


class Coalesce(Step):
    op: Literal["coalesce"]
    fields_: list[str] = Field(alias="fields", min_length=1, description="Dotted paths tried in order.")
    to: str = Field(description="Dotted path receiving the first usable value (null when none).")

    def apply(self, record: Record) -> None:
        for path in self.fields_:
            value = fields.get(record, fields.split(path))
            if value is not None and not (isinstance(value, str) and not value.strip()):
                fields.put(record, fields.split(self.to), value)
                return
        fields.put(record, fields.split(self.to), None)
