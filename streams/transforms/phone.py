"""Phone numbers to E.164 with `phonenumbers`; a number that does not parse or is not valid becomes null."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import phonenumbers
from pydantic import Field

from headwater import fields
from headwater.fields import Record, TransformError
from streams.transforms.base import Step


@lru_cache(maxsize=65536)
def to_e164(raw: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class PhoneE164(Step):
    op: Literal["phone_e164"]
    field: str = Field(description="Dotted path of the phone number as entered.")
    to: str | None = Field(None, description="Where to write the E.164 form (default: in place).")
    default_region: str | None = Field(
        None, description="ISO 3166 alpha-2 region assumed for numbers without a +country prefix."
    )
    region_field: str | None = Field(
        None, description="Dotted path of an alpha-2 country code to use as the region when present."
    )
    invalid: Literal["null", "error"] = Field("null", description="Unusable number: null, or dead letter.")

    def apply(self, record: Record) -> None:
        value = fields.get(record, fields.split(self.field))
        target = fields.split(self.to or self.field)
        if value is None or not str(value).strip():
            fields.put(record, target, None)
            return
        region = self.default_region
        if self.region_field:
            found = fields.get(record, fields.split(self.region_field))
            if isinstance(found, str) and len(found) == 2:
                region = found.upper()
        formatted = to_e164(str(value).strip(), region)
        if formatted is None and self.invalid == "error":
            raise TransformError(self.field, "not a valid phone number")
        fields.put(record, target, formatted)
