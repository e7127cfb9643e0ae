"""Hide most characters of a field, keeping a few at the end (e.g. the last digits of a phone number)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from headwater import fields
from headwater.fields import Record
from streams.transforms.base import Step


class Mask(Step):
    op: Literal["mask"]
    fields_: list[str] = Field(alias="fields", min_length=1, description="Dotted paths of string fields to mask.")
    keep_last: int = Field(4, ge=0, description="How many trailing characters stay readable.")
    char: str = Field("*", min_length=1, max_length=1, description="The masking character.")

    def apply(self, record: Record) -> None:
        for name in self.fields_:
            path = fields.split(name)
            value = fields.get(record, path)
            if value is None:
                continue
            text = str(value)
            kept = text[-self.keep_last :] if self.keep_last and len(text) > self.keep_last else ""
            fields.put(record, path, self.char * (len(text) - len(kept)) + kept)
