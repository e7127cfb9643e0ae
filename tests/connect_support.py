"""Helpers for the connector tests: produce Avro records, read topics back, poll conditions with a deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from connectors.offsets import OffsetStore
from connectors.source_loop import SourceLoop
from headwater.settings import KafkaSettings, RegistrySettings
from schemas.serde import AvroDeserializer, AvroSerializer

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll until `condition()` is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


class Runnable(Protocol):
    def run(self, stop: threading.Event) -> None: ...

    def close(self) -> None: ...


@contextmanager
def running(loop: Runnable, join_timeout: float = 30) -> Iterator[threading.Event]:
    """A source or sink loop's `run` in a thread; yields the event that stops it, then joins and closes it."""
    stop = threading.Event()
    worker = threading.Thread(target=loop.run, args=(stop,))
    worker.start()
    try:
        yield stop
    finally:
        stop.set()
        worker.join(join_timeout)
        loop.close()
    assert not worker.is_alive()


@contextmanager
def running_source(source: Any, kafka: Any, registry: Any) -> Iterator[threading.Event]:
    """The source's loop (with the real offsets store) in a thread; yields the event that stops it."""
    settings = KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap})
    registry_settings = RegistrySettings.model_validate({"url": registry.url})
    with running(SourceLoop(source, kafka=settings, registry=registry_settings, offsets=OffsetStore(settings))) as stop:
        yield stop


def produce(
    bootstrap: str,
    registry: Any,
    topic: str,
    schema: Mapping[str, Any],
    records: Iterable[tuple[str, Mapping[str, Any] | None]],
) -> None:
    """Produce (key, value) pairs, value Avro-encoded with the schema (None -> tombstone), and wait for acks."""
    serializer = AvroSerializer(registry.client(), f"{topic}-value", schema)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for key, value in records:
        payload = None if value is None else serializer.encode(value)
        producer.produce(topic, key=key.encode(), value=payload)
        producer.poll(0)
    assert producer.flush(30) == 0


def produce_raw(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list[Message]:
    """Read a topic from the beginning until `count` messages arrived."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    found: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(found)} of {count} messages on {topic} after {timeout:.0f}s")
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    found.append(message)
    finally:
        consumer.close()
    return found


def end_offset(bootstrap: str, topic: str, partition: int = 0) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)[1])
    finally:
        consumer.close()


def committed_offset(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return int(consumer.committed([TopicPartition(topic, partition)], timeout=30)[0].offset)
    finally:
        consumer.close()


def decode_all(registry: Any, messages: Iterable[Message]) -> list[tuple[str, dict[str, Any] | None]]:
    deserializer = AvroDeserializer(registry.client())
    out: list[tuple[str, dict[str, Any] | None]] = []
    for message in messages:
        value = message.value()
        key = (message.key() or b"").decode()
        out.append((key, None if value is None else deserializer.decode(value)))
    return out


def header(message: Message, name: str) -> str | None:
    for key, value in message.headers() or []:
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def write_config(path: Path, bootstrap: str, registry_url: str, connectors: list[dict[str, Any]]) -> Path:
    data = {"kafka": {"bootstrap.servers": bootstrap}, "registry": {"url": registry_url}, "connectors": connectors}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def start_connect(config: Path, log: Path, *options: str) -> subprocess.Popen[bytes]:
    """`headwater connect run CONFIG [OPTIONS]` as a real subprocess (the caller stops it).

    Any free status port unless OPTIONS name one: a busy port is an error, and other runs share this host."""
    handle = log.open("ab")
    status = () if "--status-port" in options else ("--status-port", "0")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "connect", "run", str(config), *status, *options],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
