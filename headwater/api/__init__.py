"""Headwater's public Python API: produce records through the registry, consume them decoded with their lineage.

It stands above the kernel and `schemas` (it encodes and decodes through the registry), so the kernel modules never
import it; `headwater.Producer` and `headwater.consume` reach it lazily.
"""

from headwater.api.consumption import ConsumedRecord, Consumption, TopicNotFound, consume
from headwater.api.producer import Delivered, DeliveryFailed, NoSchemaError, Producer, RecordInvalid

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
