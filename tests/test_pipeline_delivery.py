"""At-least-once, proven with real processes on both runtimes (Faust agents, direct confluent-kafka loop): a worker
SIGKILLed mid-stream and restarted loses no input, and a worker stopped with SIGTERM drains its batch and commits
exactly what it delivered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.runtime.runner import RUNTIMES
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values

HEADWATER = str(Path(sys.executable).parent / "headwater")
REPO = Path(__file__).parent.parent
RECORDS = 8000


class Collector:
    """Reads output and dead-letter topics as they grow: hw-source -> keys seen."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"collect-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        self.consumer.subscribe(topics)
        self.seen: dict[str, list[bytes | None]] = defaultdict(list)
        self.total = 0
        self.log: Path | None = None

    def poll_until(self, condition: object, limit_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + limit_s
        while not condition():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"condition not reached; seen {len(self.seen)} sources"
            if process is not None:
                assert process.poll() is None, f"worker exited early with {process.returncode}: {self.log_tail()}"
            for message in self.consumer.consume(500, 0.2):
                if message.error() is None:
                    headers = dict(message.headers() or [])
                    self.seen[headers["hw-source"].decode()].append(message.key())
                    self.total += 1

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log is not None and self.log.exists() else ""

    def close(self) -> None:
        self.consumer.close()


def start_worker(
    pipeline: Path, kafka: KafkaService, registry: RegistryService, log: Path, runtime: str
) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [HEADWATER, "run", str(pipeline), "--bootstrap-servers", kafka.bootstrap, "--registry-url", registry.url,
             "--status-port", "0", "--session-timeout-ms", "6000", "--runtime", runtime],
            stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)},
        )


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigkill_mid_stream_then_sigterm_loses_nothing(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime: str
) -> None:
    raw = kafka.create_topic(partitions=2)
    domain, entity = raw.split(".")[:2]
    serializer = encoder(registry.client(), raw)
    records = [
        (f"C{n:06d}".encode(), serializer.encode(contact(n, notes=f"note {n} was great"))) for n in range(RECORDS)
    ]
    records[10] = (b"broken", b"not avro")
    produce_values(kafka.bootstrap, raw, records)
    pipeline = pipeline_file(
        tmp_path, raw, quality=None, enrich=[{"provider": "sentiment", "options": {"text_field": "notes"}}],
        batch={"size": 50, "linger_ms": 20},
    )
    group = next(line.split(": ", 1)[1] for line in pipeline.read_text().splitlines()
                 if line.startswith("consumer_group"))
    collector = Collector(kafka.bootstrap, [f"{domain}.{entity}.enriched", f"{domain}.{entity}.dlq"])
    log = tmp_path / "worker.log"
    collector.log = log
    first = start_worker(pipeline, kafka, registry, log, runtime)
    try:
        collector.poll_until(lambda: collector.total >= 500, 120, first)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert len(collector.seen) < RECORDS, "the worker finished before it could be killed mid-stream"

        assignments = log.read_text().count("event=partitions_assigned")
        second = start_worker(pipeline, kafka, registry, log, runtime)
        collector.poll_until(lambda: log.read_text().count("event=partitions_assigned") > assignments, 120, second)
        resumed_at = len(collector.seen)
        collector.poll_until(lambda: len(collector.seen) >= resumed_at + 300, 120, second)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, log.read_text()[-3000:]
        drained = committed(kafka.bootstrap, group, raw, 2)
        collector.poll_until(lambda: all(
            f"{raw}/{partition}/{offset}" in collector.seen
            for partition, end in drained.items() for offset in range(max(end, 0))
        ), 30)

        assert len(collector.seen) < RECORDS, "the second worker finished before it could be stopped mid-stream"
        third = start_worker(pipeline, kafka, registry, log, runtime)
        collector.poll_until(lambda: len(collector.seen) >= RECORDS, 120, third)
        third.send_signal(signal.SIGTERM)
        assert third.wait(60) == 0, log.read_text()[-3000:]
    finally:
        for process in (first, locals().get("second"), locals().get("third")):
            if isinstance(process, subprocess.Popen) and process.poll() is None:
                process.kill()
                process.wait(10)
        collector.poll_until(lambda: True, 1)
        collector.close()

    inputs = {f"{raw}/{partition}/{offset}" for partition in (0, 1) for offset in range(RECORDS)}
    produced_per_partition = {partition: sum(1 for source in collector.seen if source.startswith(f"{raw}/{partition}/"))
                              for partition in (0, 1)}
    expected = {f"{raw}/{p}/{o}" for p, count in produced_per_partition.items() for o in range(count)}
    assert set(collector.seen) == expected and sum(produced_per_partition.values()) == RECORDS
    assert set(collector.seen) <= inputs
    duplicates = {source: keys for source, keys in collector.seen.items() if len(keys) > 1}
    assert all(len(set(keys)) == 1 for keys in duplicates.values()), "a repeated hw-source must be the same record"
    assert collector.total == RECORDS + sum(len(keys) - 1 for keys in duplicates.values())
    assert committed(kafka.bootstrap, group, raw, 2) == produced_per_partition
    assert "event=worker_stopped" in log.read_text()
    assert f"event=runtime_starting runtime={runtime}" in log.read_text()
