"""Runs sources: encode what they read as Avro (Confluent wire format, registry subject `<topic>-value`), send it
with lineage headers, dead-letter what cannot be encoded, and commit the source cursor only after the broker
acknowledged everything the cursor covers."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from connectors import metrics
from connectors.base import Cursor, PollingSource, RetryableError, SourceBatch, SourceFailure, SourceRecord
from connectors.offsets import OffsetStore
from headwater import envelope
from headwater.envelope import HeaderList
from headwater.kafka import clients
from headwater.kafka.producer import AckedProducer, ProduceError, dlq_topic
from headwater.settings import KafkaSettings, RegistrySettings
from schemas.client import registry_client
from schemas.serde import AvroSerializer, SerdeError

log = logging.getLogger(__name__)

_BACKOFF = wait_exponential(multiplier=0.5, min=0.5, max=30)
Outgoing = tuple[str, bytes | None, bytes | None, HeaderList]


class RecordEncoder:
    """Turns source records and failures into (topic, key, value, headers) ready to send."""

    def __init__(self, connector: str, registry: RegistrySettings) -> None:
        self.connector = connector
        self._client = registry_client(registry)
        self._serializers: dict[tuple[str, str], AvroSerializer] = {}
        self._by_identity: dict[tuple[str, int], tuple[Any, AvroSerializer]] = {}

    def _serializer(self, topic: str, schema: Any) -> AvroSerializer:
        # Sources hand the same schema object with every record: look it up by identity before comparing text.
        found = self._by_identity.get((topic, id(schema)))
        if found is not None and found[0] is schema:
            return found[1]
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        serializer = self._serializers.get((topic, text))
        if serializer is None:
            serializer = AvroSerializer(self._client, f"{topic}-value", schema)
            self._serializers[(topic, text)] = serializer
        self._by_identity[(topic, id(schema))] = (schema, serializer)
        return serializer

    def encode(self, records: Sequence[SourceRecord], failures: Sequence[SourceFailure]) -> list[Outgoing]:
        out: list[Outgoing] = []
        for record in records:
            lineage = f"{self.connector}/{record.position}"
            headers: HeaderList = [
                (envelope.SOURCE, lineage.encode()),
                (envelope.TRACE_ID, uuid.uuid4().hex.encode()),
            ]
            if record.value is None:
                out.append((record.topic, record.key.encode(), None, headers))
                continue
            serializer = self._serializer(record.topic, record.schema)
            try:
                value = serializer.encode(record.value)
            except SerdeError as exc:
                failure = SourceFailure(record.topic, record.raw_bytes(), type(exc).__name__, str(exc), record.position)
                out.append(self.dead_letter(failure, record.key.encode()))
                continue
            headers.append((envelope.SCHEMA_OUT, str(serializer.schema_id).encode()))
            out.append((record.topic, record.key.encode(), value, headers))
        out.extend(self.dead_letter(failure, failure.key) for failure in failures)
        return out

    def dead_letter(self, failure: SourceFailure, key: bytes | None) -> Outgoing:
        headers = envelope.dead_letter_headers(
            [(envelope.TRACE_ID, uuid.uuid4().hex.encode())],
            stage="source",
            error_class=failure.error_class,
            message=failure.message,
            source=f"{self.connector}/{failure.position}",
        )
        return dlq_topic(failure.topic), key, failure.raw, headers


class SourceLoop:
    """Polls one source until stopped: fetch, send, wait for acknowledgements, commit the cursor."""

    def __init__(
        self, source: PollingSource[Any], *, kafka: KafkaSettings, registry: RegistrySettings, offsets: OffsetStore
    ) -> None:
        self.source = source
        self.offsets = offsets
        self._producer = AckedProducer(kafka)
        self._encoder = RecordEncoder(source.name, registry)
        self._stop = threading.Event()
        self.produced = 0
        self.dead_lettered = 0

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "event=source_retry source=%s attempt=%d wait_s=%.1f reason=%s",
            self.source.name,
            state.attempt_number,
            wait,
            exc,
        )

    def _stopped(self, _state: RetryCallState) -> bool:
        return self._stop.is_set()

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _retrying(self, *errors: type[BaseException]) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(errors),
            wait=_BACKOFF,
            sleep=self._sleep,
            stop=self._stopped,
            before_sleep=self._log_retry,
            reraise=True,
        )

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        cursor: Cursor | None = self._retrying(ProduceError, RetryableError, OSError)(
            self.offsets.load, self.source.name
        )
        log.info("event=source_started source=%s resumed=%s", self.source.name, cursor is not None)
        with metrics.running(self.source.name):
            while not stop.is_set():
                batch = self._retrying(RetryableError)(self.source.fetch, cursor)
                if stop.is_set():
                    return
                self.deliver(batch)
                cursor = batch.cursor
                if not batch.more:
                    stop.wait(self.source.poll_interval)

    def deliver(self, batch: SourceBatch) -> None:
        """Send the batch, wait for every acknowledgement, then commit its cursor (all retried while Kafka is down)."""

        def send() -> None:
            outgoing = self._encoder.encode(batch.records, batch.failures)
            for topic, key, value, headers in outgoing:
                if envelope.header_value(headers, envelope.ERROR_STAGE) is None:
                    self._producer.send(topic, value, key, headers)
                else:  # a dead letter: truncated if its topic refuses it as too large
                    self._producer.send_dead_letter(topic, value, key, headers)
            self._producer.flush_acked()

        self._retrying(ProduceError, RetryableError)(send)
        self._retrying(ProduceError)(self.offsets.commit, self.source.name, batch.cursor)
        metrics.committed(self.source.name, batch.cursor)
        self.produced += len(batch.records)
        self.dead_lettered += len(batch.failures)
        metrics.RECORDS.labels(self.source.name, "produced").inc(len(batch.records))
        metrics.RECORDS.labels(self.source.name, "dead_letter").inc(len(batch.failures))
        if batch.records or batch.failures:
            log.info(
                "event=batch_delivered source=%s records=%d dead_letters=%d",
                self.source.name,
                len(batch.records),
                len(batch.failures),
            )

    def close(self) -> None:
        self._producer.close()
        self.source.close()


class AsyncEmitter:
    """For push sources: `emit` returns once the broker acknowledged every record, raises ProduceError if it
    did not within `ack_timeout_ms` (the HTTP caller then answers 503)."""

    def __init__(
        self, connector: str, *, kafka: KafkaSettings, registry: RegistrySettings, ack_timeout_ms: int = 10_000
    ) -> None:
        self.connector = connector
        self._encoder = RecordEncoder(connector, registry)
        self._producer = clients.producer(kafka, **{"message.timeout.ms": ack_timeout_ms})
        self._running = True
        self._poller = threading.Thread(target=self._poll, name=f"emit-{connector}", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while self._running:
            self._producer.poll(0.1)

    async def emit(self, records: Sequence[SourceRecord], failures: Sequence[SourceFailure]) -> None:
        loop = asyncio.get_running_loop()
        outgoing = await asyncio.to_thread(self._encoder.encode, records, failures)
        futures: list[asyncio.Future[None]] = []
        for topic, key, value, headers in outgoing:
            future: asyncio.Future[None] = loop.create_future()
            futures.append(future)

            def done(error: KafkaError | None, _msg: Any, future: asyncio.Future[None] = future) -> None:
                loop.call_soon_threadsafe(_settle, future, error)

            self._producer.produce(topic, value=value, key=key, headers=[(n, v) for n, v in headers], on_delivery=done)
        results = await asyncio.gather(*futures, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise ProduceError(f"{len(errors)} of {len(futures)} records not acknowledged: {errors[0]}")
        metrics.RECORDS.labels(self.connector, "produced").inc(len(records))
        metrics.RECORDS.labels(self.connector, "dead_letter").inc(len(failures))

    def close(self) -> None:
        self._running = False
        self._poller.join(timeout=5)
        self._producer.flush(5)
        self._producer.close()


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(ProduceError(str(error)))
