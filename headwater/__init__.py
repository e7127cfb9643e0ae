"""Headwater's kernel and public Python API.

The kernel is what every part (`schemas`, `quality`, `connectors`, `streams`) stands on and imports none of them:
settings, the one Kafka layer (`headwater.kafka`), the record envelope, logging, ports and the status server.

The public API (`headwater.Producer`, `headwater.consume`, ...) lives in `headwater.api`, which stands above the
kernel and `schemas`; it is imported on first use, so importing a kernel module never loads it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headwater.api import (
        ConsumedRecord,
        Consumption,
        Delivered,
        DeliveryFailed,
        NoSchemaError,
        Producer,
        RecordInvalid,
        TopicNotFound,
        consume,
    )

__all__ = [
    "ConsumedRecord",
    "Consumption",
    "Delivered",
    "DeliveryFailed",
    "NoSchemaError",
    "Producer",
    "RecordInvalid",
    "TopicNotFound",
    "consume",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("headwater.api"), name)
    raise AttributeError(f"module 'headwater' has no attribute {name!r}")
