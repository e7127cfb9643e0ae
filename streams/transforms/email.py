"""Normalise an e-mail address: trimmed, lower-cased, syntax checked; an invalid address becomes null."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from headwater import fields
from headwater.fields import Record, TransformError
from streams.transforms.base import Step

_ADDRESS = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


class NormaliseEmail(Step):
    op: Literal["normalise_email"]
    field: str = Field(description="Dotted path of the raw e-mail address.")
    to: str | None = Field(None, description="Where to write the result (default: in place).")
    invalid: Literal["null", "error"] = Field(
        "null", description="What an unusable address does: become null, or send the record to the dead letters."
    )

    def apply(self, record: Record) -> None:
        value = fields.get(record, fields.split(self.field))
        target = fields.split(self.to or self.field)
        if value is None:
            fields.put(record, target, None)
            return
        candidate = str(value).strip().lower()
        if _ADDRESS.match(candidate):
            fields.put(record, target, candidate)
        elif self.invalid == "error":
            raise TransformError(self.field, "not an e-mail address")
        else:
            fields.put(record, target, None)
