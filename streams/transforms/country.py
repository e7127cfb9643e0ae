"""Country names or codes to ISO 3166-1 (alpha-2 by default) with `pycountry`; unknown ones become null."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import pycountry
from pydantic import Field

from headwater import fields
from headwater.fields import Record, TransformError
from streams.transforms.base import Step

# Names people write that pycountry's official and common names do not cover.
_ALIASES = {
    "usa": "US", "u.s.a.": "US", "u.s.": "US", "united states of america": "US", "america": "US",
    "uk": "GB", "u.k.": "GB", "england": "GB", "great britain": "GB", "scotland": "GB", "wales": "GB",
    "deutschland": "DE", "österreich": "AT", "schweiz": "CH", "suisse": "CH", "españa": "ES",
    "italia": "IT", "nederland": "NL", "holland": "NL", "россия": "RU", "russia": "RU", "türkiye": "TR",
    "south korea": "KR", "korea": "KR", "czech republic": "CZ", "brasil": "BR", "méxico": "MX",
}


@lru_cache(maxsize=4096)
def alpha2(raw: str) -> str | None:
    text = " ".join(raw.split())
    if not text:
        return None
    alias = _ALIASES.get(text.lower())
    if alias:
        return alias
    try:
        found = pycountry.countries.lookup(text)
    except LookupError:
        return None
    code: str = found.alpha_2
    return code


class CountryIso(Step):
    op: Literal["country_iso"]
    field: str = Field(description="Dotted path of the country as written (name, alpha-2 or alpha-3 code).")
    to: str | None = Field(None, description="Where to write the ISO code (default: in place).")
    format: Literal["alpha2", "alpha3"] = Field("alpha2", description="ISO 3166-1 code form to write.")
    invalid: Literal["null", "error"] = Field("null", description="Unknown country: null, or dead letter.")

    def apply(self, record: Record) -> None:
        value = fields.get(record, fields.split(self.field))
        target = fields.split(self.to or self.field)
        code = alpha2(str(value)) if value is not None else None
        if code is None and value is not None and self.invalid == "error":
            raise TransformError(self.field, "unknown country")
        if code is not None and self.format == "alpha3":
            country = pycountry.countries.get(alpha_2=code)
            code = country.alpha_3 if country is not None else None
        fields.put(record, target, code)
