"""Helpers of the replay and dead-letter tests: settings files, reading committed records, a live pipeline run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values

HEADWATER = str(Path(sys.executable).parent / "headwater")
REPO = Path(__file__).parent.parent


def settings_file(tmp_path: Path, kafka: KafkaService, registry: RegistryService) -> str:
    path = tmp_path / "headwater.yaml"
    path.write_text(f"kafka:\n  bootstrap.servers: {kafka.bootstrap}\nregistry:\n  url: {registry.url}\n")
    return str(path)


def committed_records(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every committed record of `topic` (read_committed, to its end): position, key and headers."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        try:
            ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in metadata.partitions}
        except KafkaException:  # a topic created a moment ago may have no leader yet: nothing readable so far
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        open_partitions = {p for p, end in ends.items() if end > 0}
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while open_partitions:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    found.append({"key": message.key(), "partition": message.partition(),
                                  "headers": {k: (v or b"").decode() for k, v in message.headers() or []}})
            for tp in consumer.position([TopicPartition(topic, p) for p in list(open_partitions)]):
                if tp.offset >= ends[tp.partition]:
                    open_partitions.discard(tp.partition)
        return found
    finally:
        consumer.close()


def group_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return {tp.partition: tp.offset
                for tp in consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)}
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ends-{uuid.uuid4().hex}"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        consumer.close()


def contacts_pipeline(tmp_path: Path, kafka: KafkaService, registry: RegistryService, records: int,
                      batch: int = 100, refused: frozenset[int] = frozenset()) -> tuple[str, Path, str]:
    """A raw topic of `records` contacts (those in `refused` fail the pipeline's hook step), a pipeline file over it
    and a settings file; returns (raw topic, pipeline file, settings file)."""
    raw = kafka.create_topic(partitions=2)
    serializer = encoder(registry.client(), raw)
    produce_values(kafka.bootstrap, raw, [
        (f"C{n:06d}".encode(), serializer.encode(contact(
            n, notes=f"note {n} was great", **({"first_name": "EXPLODE"} if n in refused else {})
        ))) for n in range(records)
    ])
    pipeline = pipeline_file(tmp_path, raw, quality=None,
                             enrich=[{"provider": "sentiment", "options": {"text_field": "notes"}}],
                             batch={"size": batch, "linger_ms": 20})
    return raw, pipeline, settings_file(tmp_path, kafka, registry)


@contextmanager
def live_pipeline(pipeline: Path, config: str, enriched: str, bootstrap: str, expected: int,
                  log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The live pipeline (direct runtime), yielded once its enriched topic holds `expected` records and still
    running; SIGTERM afterwards (it must exit 0)."""
    with log.open("ab") as output:
        worker = subprocess.Popen([HEADWATER, "run", str(pipeline), "--config", config, "--runtime", "direct",
                                   "--status-port", "0"], stdout=output, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 120
        while len(committed_records(bootstrap, enriched)) < expected:
            assert worker.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the live pipeline did not catch up"
        yield worker
        assert worker.poll() is None, log.read_text()[-2000:]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, log.read_text()[-2000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def run_live(pipeline: Path, config: str, enriched: str, bootstrap: str, expected: int, log: Path) -> None:
    """The live pipeline until its enriched topic holds `expected` records, then stopped."""
    with live_pipeline(pipeline, config, enriched, bootstrap, expected, log):
        pass
