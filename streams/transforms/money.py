"""An amount in a currency to integer minor units (cents), exactly, using the ISO 4217 exponent of the currency."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Literal

import pycountry
from pydantic import Field

from headwater import fields
from headwater.fields import Record, TransformError
from streams.transforms.base import Step

# ISO 4217 minor-unit exponents that differ from 2 (pycountry carries names and codes, not exponents).
_EXPONENTS = {
    **dict.fromkeys(
        ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
         "XAF", "XOF", "XPF"],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}


@lru_cache(maxsize=512)
def exponent(currency: str) -> int | None:
    """The ISO 4217 exponent of a currency code, or None when the code is not a currency."""
    code = currency.strip().upper()
    if pycountry.currencies.get(alpha_3=code) is None:
        return None
    return _EXPONENTS.get(code, 2)


def minor_units(amount: object, currency: str) -> int:
    places = exponent(currency)
    if places is None:
        raise ValueError(f"{currency!r} is not an ISO 4217 currency")
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise ValueError(f"{amount!r} is not a number") from exc
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a finite number")
    return int((value.scaleb(places)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


class MinorUnits(Step):
    op: Literal["minor_units"]
    amount: str = Field(description="Dotted path of the amount in major units (number or numeric string).")
    currency: str = Field(description="Dotted path of the ISO 4217 currency code.")
    to: str = Field(description="Dotted path receiving the amount in minor units (an integer).")

    def apply(self, record: Record) -> None:
        amount = fields.get(record, fields.split(self.amount))
        currency = fields.get(record, fields.split(self.currency))
        if amount is None:
            fields.put(record, fields.split(self.to), None)
            return
        if not isinstance(currency, str):
            raise TransformError(self.currency, "currency code is missing")
        try:
            fields.put(record, fields.split(self.to), minor_units(amount, currency))
        except ValueError as exc:
            raise TransformError(self.amount, str(exc)) from exc
