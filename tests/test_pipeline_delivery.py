"""At-least-once, proven with real processes on both runtimes (Faust agents, direct confluent-kafka loop): a worker
SIGKILLed mid-stream and restarted loses no input, and a worker stopped with SIGTERM drains its batch and commits
exactly what it delivered.

The input arrives in three parts, each produced only once the previous worker is gone or assigned, so every wait is on
a condition that must become true whatever the timing (the second worker cannot finish input it was never given).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from streams.runtime.runner import RUNTIMES
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values
from tests.worker_support import Collector, committed, consumer_group, start_worker, stop_all

RECORDS = 8000
PARTS = (3000, 2500, 2500)


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
    parts = [records[:PARTS[0]], records[PARTS[0]:PARTS[0] + PARTS[1]], records[PARTS[0] + PARTS[1]:]]
    pipeline = pipeline_file(
        tmp_path, raw, quality=None, enrich=[{"provider": "sentiment", "options": {"text_field": "notes"}}],
        batch={"size": 50, "linger_ms": 20},
    )
    group = consumer_group(pipeline)
    collector = Collector(kafka.bootstrap, [f"{domain}.{entity}.enriched", f"{domain}.{entity}.dlq"])
    log = tmp_path / "worker.log"
    collector.log = log
    workers: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        workers.append(start_worker(pipeline, kafka.bootstrap, registry.url, log, runtime))
        return workers[-1]

    try:
        produce_values(kafka.bootstrap, raw, parts[0])
        first = start()
        collector.poll_until(lambda: collector.total >= 500, 120, first)
        first.send_signal(signal.SIGKILL)
        first.wait(10)

        assignments = log.read_text().count("event=partitions_assigned")
        second = start()
        collector.poll_until(lambda: log.read_text().count("event=partitions_assigned") > assignments, 120, second)
        produce_values(kafka.bootstrap, raw, parts[1])
        part_two = {key for key, _ in parts[1]}
        collector.poll_until(lambda: any(key in part_two for keys in collector.seen.values() for key in keys), 120,
                             second)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, log.read_text()[-3000:]
        drained = committed(kafka.bootstrap, group, raw, 2)
        collector.poll_until(lambda: all(
            f"{raw}/{partition}/{offset}" in collector.seen
            for partition, end in drained.items() for offset in range(max(end, 0))
        ), 30)

        produce_values(kafka.bootstrap, raw, parts[2])
        third = start()
        collector.poll_until(lambda: len(collector.seen) >= RECORDS, 180, third)
        third.send_signal(signal.SIGTERM)
        assert third.wait(60) == 0, log.read_text()[-3000:]
    finally:
        stop_all(*workers)
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
