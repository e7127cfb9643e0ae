"""Rename a field (a missing source field is left alone)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from headwater import fields
from headwater.fields import Record
from streams.transforms.base import Step


class Rename(Step):
    op: Literal["rename"]
    field: str = Field(description="Dotted path of the field to rename.")
    to: str = Field(description="Dotted path of its new name.")

    def apply(self, record: Record) -> None:
        source = fields.split(self.field)
        if fields.has(record, source):
            fields.put(record, fields.split(self.to), fields.pop(record, source))
