"""Remove fields from the record."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from headwater import fields
from headwater.fields import Record
from streams.transforms.base import Step


class Drop(Step):
    op: Literal["drop"]
    fields_: list[str] = Field(alias="fields", min_length=1, description="Dotted paths of the fields to remove.")

    def apply(self, record: Record) -> None:
        for path in self.fields_:
            fields.pop(record, fields.split(path))
