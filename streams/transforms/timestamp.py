"""Timestamps (epoch numbers, ISO-8601 text, datetimes) to timezone-aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from headwater import fields
from headwater.fields import Record, TransformError
from streams.transforms.base import Step

_EPOCH_DIVISORS = {"s": 1.0, "ms": 1_000.0, "us": 1_000_000.0}


def to_utc(value: Any, assume: tzinfo, epoch_unit: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / _EPOCH_DIVISORS[epoch_unit], UTC)
    elif isinstance(value, str):
        text = value.strip()
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    else:
        raise ValueError(f"{type(value).__name__} is not a timestamp")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=assume)
    return moment.astimezone(UTC)


class ToUtc(Step):
    op: Literal["to_utc"]
    field: str = Field(description="Dotted path of the timestamp.")
    to: str | None = Field(None, description="Where to write the UTC datetime (default: in place).")
    assume_timezone: str = Field("UTC", description="IANA zone for timestamps written without an offset.")
    epoch_unit: Literal["s", "ms", "us"] = Field("ms", description="Unit of numeric epoch timestamps.")

    @field_validator("assume_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def apply(self, record: Record) -> None:
        value = fields.get(record, fields.split(self.field))
        target = fields.split(self.to or self.field)
        if value is None:
            fields.put(record, target, None)
            return
        try:
            fields.put(record, target, to_utc(value, ZoneInfo(self.assume_timezone), self.epoch_unit))
        except (ValueError, OverflowError, OSError) as exc:
            raise TransformError(self.field, f"not a timestamp: {exc}") from exc
