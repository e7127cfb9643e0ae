"""What every connector implements: a Source turns an external system into Kafka records, a Sink writes Kafka
records into an external system. The runner owns Kafka, offsets, retries and dead letters; connectors own only
their system."""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from headwater.envelope import HeaderList, source_of
from headwater.settings import RegistrySettings

Cursor = dict[str, Any]


class ConnectorConfig(BaseModel):
    """Base of every connector's config model; unknown fields are rejected so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


ConfigT = TypeVar("ConfigT", bound=ConnectorConfig)


class ConnectorError(Exception):
    """A connector cannot go on (bad credentials, refused query, ...); the message says why in one line."""


class RetryableError(ConnectorError):
    """The external system is unavailable for now; the runner retries with backoff and commits nothing meanwhile."""


@dataclass(frozen=True)
class SourceRecord:
    """One record read from the external system, before Avro encoding.

    `raw` is the payload as the system returned it (bytes, or the parsed object, serialised as JSON only when
    needed): the value of the dead letter if the record cannot be encoded. `value=None` is a deletion (a
    tombstone on the topic).
    """

    topic: str
    key: str
    value: Mapping[str, Any] | None
    schema: Mapping[str, Any]
    position: str
    raw: bytes | Mapping[str, Any]

    def raw_bytes(self) -> bytes:
        if isinstance(self.raw, bytes):
            return self.raw
        return json.dumps(self.raw, default=str, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SourceFailure:
    """A payload the source could not turn into a record (malformed JSON, missing required fields)."""

    topic: str
    raw: bytes
    error_class: str
    message: str
    position: str
    key: bytes | None = None


@dataclass
class SourceBatch:
    """Records and failures read in one fetch, and the cursor that resumes after all of them."""

    cursor: Cursor
    records: list[SourceRecord] = field(default_factory=list)
    failures: list[SourceFailure] = field(default_factory=list)
    more: bool = False


class Connector(ABC, Generic[ConfigT]):
    """A named connector with its pydantic config model (whose field descriptions are its documentation)."""

    kind: ClassVar[str]
    Config: ClassVar[type[ConnectorConfig]]

    def __init__(self, name: str, config: ConfigT) -> None:
        self.name = name
        self.config = config

    def close(self) -> None:
        """Release connections; called once when the runner stops."""


class PollingSource(Connector[ConfigT]):
    """A source the runner polls: each fetch returns what changed after the cursor (blocking I/O is fine here,
    the runner calls it from a worker thread)."""

    kind = "source"

    @property
    def poll_interval(self) -> float:
        interval: float = getattr(self.config, "poll_interval", 5.0)
        return interval

    @abstractmethod
    def fetch(self, cursor: Cursor | None) -> SourceBatch:
        """The next batch after `cursor` (None: from the beginning)."""


Emit = Callable[[Sequence[SourceRecord], Sequence[SourceFailure]], Awaitable[None]]


class PushSource(Connector[ConfigT]):
    """A source the external system pushes into (HTTP ingest); it calls `emit`, which returns once the broker
    acknowledged every record and dead letter, and raises when it could not."""

    kind = "source"

    @abstractmethod
    async def serve(self, emit: Emit, stop: asyncio.Event, registry: RegistrySettings) -> None:
        """Serve until `stop` is set; `registry` is the run's schema registry (for validating what is pushed)."""


@dataclass(frozen=True)
class SinkRecord:
    """A consumed record with its decoded value (None for a tombstone) and the bytes it came as."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: dict[str, Any] | None
    schema_id: int | None
    raw_key: bytes | None
    raw_value: bytes | None
    headers: HeaderList
    timestamp_ms: int

    @property
    def source(self) -> str:
        return source_of(self.topic, self.partition, self.offset)


@dataclass(frozen=True)
class Rejected:
    """A record a sink refused for good (it goes to the dead-letter topic; the batch goes on)."""

    record: SinkRecord
    error_class: str
    message: str


SchemaLookup = Callable[[int], str]


class Sink(Connector[ConfigT]):
    """Writes batches durably: when `write` returns, the records it did not reject survive a crash."""

    kind = "sink"

    @property
    def batch_size(self) -> int:
        size: int = getattr(self.config, "batch_size", 10_000)
        return size

    @property
    def flush_interval(self) -> float:
        interval: float = getattr(self.config, "flush_interval", 1.0)
        return interval

    @abstractmethod
    def write(self, records: Sequence[SinkRecord], schema_of: SchemaLookup) -> list[Rejected]:
        """Write the batch (offset order) durably; raise RetryableError when the target is unavailable."""

    def pending_offsets(self) -> dict[tuple[str, int], int] | None:
        """For sinks that buffer across batches: per partition, the first offset not yet durable (None: all
        written records are durable once `write` returns)."""
        return None

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        """The consumer no longer owns these (topic, partition)s: forget whatever is buffered for them and never
        write it, since their next owner re-reads from the last committed offset. Sinks that keep nothing
        between batches have nothing to forget."""
