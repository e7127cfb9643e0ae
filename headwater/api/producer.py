"""`headwater.Producer`: records (dicts) to Kafka topics, encoded through the schema registry in the Confluent wire
format, with Headwater's lineage headers.

The value schema of a topic is its subject's latest version (TopicNameStrategy, `<topic>-value`) unless one is
given, which is then registered under that subject (the registry checks its compatibility). `send` buffers and
returns at once; `flush` waits for the broker's acknowledgements and raises if any record was refused. From asyncio,
`await producer.send_and_wait(...)` resolves when that record is acknowledged, without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import Message
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro.validation import ValidationError, validate

from headwater import envelope
from headwater.envelope import HeaderList
from headwater.kafka import clients
from headwater.kafka.errors import ProduceFailure
from headwater.settings import HeadwaterSettings, load_settings
from schemas.client import registry_client
from schemas.serde import AvroSerializer, EncodeError

_NOT_FOUND_CODES = {40401, 40402, 40403}


class NoSchemaError(LookupError):
    """The topic has no value subject in the registry and no schema was given."""


class RecordInvalid(ValueError):
    """A record does not match its topic's schema; `field` names the first field that does not."""

    def __init__(self, topic: str, reason: str, field: str | None) -> None:
        super().__init__(f"field {field}: {reason}" if field else reason)
        self.topic = topic
        self.field = field
        self.reason = reason


class DeliveryFailed(RuntimeError):
    """The broker did not acknowledge some records."""


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int


def _why(topic: str, serializer: AvroSerializer, value: Mapping[str, Any], error: Exception) -> RecordInvalid:
    """The first field that fails validation, with its reason (fastavro's writer only says that one did)."""
    try:
        validate(value, serializer._parsed, raise_errors=True, strict=True)
    except ValidationError as invalid:
        first = invalid.errors[0]
        record_name = f"{serializer._parsed.get('name', '')}."
        path = str(first.field)
        field = path[len(record_name):] if path.startswith(record_name) else path
        expected = first.schema if isinstance(first.schema, str) else json.dumps(first.schema)
        return RecordInvalid(topic, f"{first.datum!r} is not of type {expected}", field)
    except ValueError as strict:
        return RecordInvalid(topic, str(strict), None)
    return RecordInvalid(topic, str(error.__cause__ or error), None)


class Producer:
    """Produce records to Kafka topics, encoded with their registry schema.

    `schemas` maps a topic to its value schema (a dict, JSON text or a `.avsc` path) where the subject's latest
    version should not be used. Usable as a context manager; `close` flushes.
    """

    def __init__(
        self,
        settings: HeadwaterSettings | None = None,
        *,
        schemas: Mapping[str, Mapping[str, Any] | str | Path] | None = None,
        source: str = "python",
        **producer_properties: Any,
    ) -> None:
        self.settings = settings or load_settings()
        self.source = source
        self._registry = registry_client(self.settings.registry)
        self._given = dict(schemas or {})
        self._serializers: dict[str, AvroSerializer] = {}
        self._producer = clients.producer(self.settings.kafka, **producer_properties)
        self._lock = threading.Lock()
        self._failures: list[ProduceFailure] = []
        self._sent = 0
        # A random prefix per producer and a counter: unique trace ids without a urandom call per record.
        self._trace_prefix = uuid.uuid4().hex[:16]
        self._trace_numbers = itertools.count()

    def schema(self, topic: str) -> dict[str, Any]:
        """The value schema records for `topic` are checked and encoded with."""
        parsed: dict[str, Any] = json.loads(self.serializer(topic)._schema.schema_str or "{}")
        return parsed

    def serializer(self, topic: str) -> AvroSerializer:
        found = self._serializers.get(topic)
        if found is not None:
            return found
        subject = f"{topic}-value"
        given = self._given.get(topic)
        if given is not None:
            text = given.read_text(encoding="utf-8") if isinstance(given, Path) else given
            serializer = AvroSerializer(self._registry, subject, text)
        else:
            try:
                latest = self._registry.get_latest_version(subject)
            except SchemaRegistryError as exc:
                if exc.error_code in _NOT_FOUND_CODES or exc.http_status_code == 404:
                    raise NoSchemaError(
                        f"topic {topic} has no subject {subject} in the registry; give its schema (--schema FILE.avsc)"
                    ) from None
                raise
            schema = latest.schema
            serializer = AvroSerializer(
                self._registry, subject, schema.schema_str or "", auto_register=False,
                references=list(schema.references or []),
            )
        serializer.schema_id  # noqa: B018 - resolves the id now, so a registry refusal surfaces here
        self._serializers[topic] = serializer
        return serializer

    def encode(self, topic: str, value: Mapping[str, Any]) -> bytes:
        """The wire-format bytes of `value`; raises `RecordInvalid` naming the field that does not match."""
        serializer = self.serializer(topic)
        try:
            return serializer.encode(value)
        except EncodeError as exc:
            raise _why(topic, serializer, value, exc) from None

    def _headers(self, trace_id: str | None, source: str | None, extra: Mapping[str, str] | None) -> HeaderList:
        headers: HeaderList = [
            (envelope.TRACE_ID, (trace_id or f"{self._trace_prefix}{next(self._trace_numbers):016x}").encode()),
            (envelope.SOURCE, (source or self.source).encode()),
        ]
        headers.extend((name, value.encode("utf-8")) for name, value in (extra or {}).items())
        return headers

    def _record_failure(self, failure: ProduceFailure | None, _message: Message | None) -> None:
        if failure is not None:
            with self._lock:
                self._failures.append(failure)

    def send_encoded(
        self, topic: str, value: bytes, key: str | bytes | None = None, *, trace_id: str | None = None,
        source: str | None = None, headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send bytes already encoded by `encode` (the CLI validates a whole file before sending any)."""
        raw_key = key.encode("utf-8") if isinstance(key, str) else key
        clients.send(self._producer, topic, value, raw_key, self._headers(trace_id, source, headers),
                     self._record_failure)
        self._sent += 1
        if self._sent % 1000 == 0:
            self._producer.poll(0)

    def send(
        self, topic: str, value: Mapping[str, Any], key: str | bytes | None = None, *, trace_id: str | None = None,
        source: str | None = None, headers: Mapping[str, str] | None = None,
    ) -> None:
        """Encode and buffer one record; raises `RecordInvalid` at once if it does not match the schema."""
        self.send_encoded(topic, self.encode(topic, value), key, trace_id=trace_id, source=source, headers=headers)

    async def send_and_wait(
        self, topic: str, value: Mapping[str, Any], key: str | bytes | None = None, *, trace_id: str | None = None,
        source: str | None = None, headers: Mapping[str, str] | None = None,
    ) -> Delivered:
        """Encode, send and wait for this record's acknowledgement without blocking the event loop."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Delivered] = loop.create_future()

        def settle(failure: ProduceFailure | None, message: Message | None) -> None:
            if failure is not None:
                outcome: Delivered | BaseException = DeliveryFailed(failure.error)
            else:
                assert message is not None
                outcome = Delivered(message.topic() or topic, message.partition() or 0, message.offset() or 0)
            loop.call_soon_threadsafe(_settle_future, done, outcome)

        raw_key = key.encode("utf-8") if isinstance(key, str) else key
        encoded = self.encode(topic, value)
        clients.send(self._producer, topic, encoded, raw_key, self._headers(trace_id, source, headers), settle)
        while not done.done():
            await loop.run_in_executor(None, self._producer.poll, 0.05)
        return await done

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every record sent so far is acknowledged; raises `DeliveryFailed` otherwise."""
        remaining = self._producer.flush(timeout)
        with self._lock:
            failures, self._failures = self._failures, []
        if remaining:
            raise DeliveryFailed(f"{remaining} records were not acknowledged within {timeout:.0f}s")
        if failures:
            raise DeliveryFailed(f"{len(failures)} records were not acknowledged: {failures[0].error}")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _settle_future(future: asyncio.Future[Delivered], outcome: Delivered | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
