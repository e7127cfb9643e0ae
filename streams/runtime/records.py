"""The messages a pipeline reads and writes, independent of the Kafka client that carries them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from headwater.envelope import HeaderList, source_of
from headwater.oversized import record_size

# Lineage headers plus a caller's own stay far below this; records closer to a limit are measured exactly.
HEADROOM = 8192


@dataclass(slots=True)
class InMessage:
    """One raw record as read: its bytes stay untouched for the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: HeaderList
    timestamp_ms: int

    @property
    def source(self) -> str:
        return source_of(self.topic, self.partition, self.offset)


@dataclass(slots=True)
class OutMessage:
    """A record to produce: an enriched output or a dead letter, with the input it came from."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: HeaderList
    origin: InMessage
    kind: Literal["output", "dead_letter"]
    stage: str = ""
    reason: str = ""

    def size(self) -> int:
        """Bytes this record takes in a record batch (Kafka's framing included, generously)."""
        return record_size(self.key, self.value, self.headers)

    def fits(self, limit: int) -> bool:
        """Whether the record is within `limit` bytes; the exact sum only when it could be close."""
        rough = len(self.value or b"") + len(self.key or b"")
        return rough + HEADROOM < limit or self.size() <= limit


@dataclass(slots=True)
class Item:
    """A record on its way through the stages."""

    message: InMessage
    record: dict[str, Any]
    schema_in: int
    trace_id: bytes
    enrich_header: bytes = b"[]"
    warnings: tuple[str, ...] = field(default=())
