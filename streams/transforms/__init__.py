"""Declarative transform steps, one module each, joined into one union discriminated by `op`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from headwater.fields import TransformError
from streams.transforms.case import Case
from streams.transforms.cast import Cast
from streams.transforms.coalesce import Coalesce
from streams.transforms.country import CountryIso
from streams.transforms.default import Default
from streams.transforms.drop import Drop
from streams.transforms.email import NormaliseEmail
from streams.transforms.hashing import Hash
from streams.transforms.hook import Hook
from streams.transforms.mask import Mask
from streams.transforms.money import MinorUnits
from streams.transforms.phone import PhoneE164
from streams.transforms.rename import Rename
from streams.transforms.timestamp import ToUtc
from streams.transforms.trim import Trim

TransformStep = Annotated[
    Rename | Drop | Cast | Default | Coalesce | Trim | Case | NormaliseEmail | PhoneE164 | CountryIso
    | MinorUnits | ToUtc | Hash | Mask | Hook,
    Field(discriminator="op"),
]

__all__ = ["TransformError", "TransformStep"]
