"""`headwater run --workers 2`: two worker processes of one pipeline share its input as one consumer group (each is
assigned a partition and serves its own status port), every record comes out once, and one SIGTERM to the command
stops both, each committing what it delivered."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest

from headwater.ports import free_port
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values
from tests.worker_support import Collector, committed, consumer_group, start_worker, stop_all, wait_until

RECORDS = 400


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(json.load(answer)["ready"])
    except OSError:
        return False


@pytest.mark.timeout(600)
@pytest.mark.parametrize("runtime", ["direct", "faust"])
def test_two_workers_share_the_partitions_and_stop_together(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime: str
) -> None:
    topic = kafka.create_topic(partitions=2)
    pipeline = pipeline_file(tmp_path, topic, enrich=[], transform=[])
    log = tmp_path / "workers.log"
    base = free_port()
    ports = [base, base + 1]
    serializer = encoder(registry.client(), topic)
    collector = Collector(kafka.bootstrap, [topic.replace(".raw", ".enriched")])
    command = start_worker(pipeline, kafka.bootstrap, registry.url, log, runtime, "--workers", "2",
                           "--status-port", str(base))
    try:
        wait_until(lambda: all(ready(port) for port in ports), 300, "both workers ready", command, log)
        produce_values(kafka.bootstrap, topic, [(f"C{i:06d}".encode(), serializer.encode(contact(i)))
                                                for i in range(RECORDS)])
        collector.poll_until(lambda: len(collector.seen) >= RECORDS, 180, command)
        assert sorted(len(keys) for keys in collector.seen.values()) == [1] * RECORDS
        command.send_signal(signal.SIGTERM)
        assert command.wait(90) == 0, log.read_text()[-3000:]
        offsets = committed(kafka.bootstrap, consumer_group(pipeline), topic, 2)
        assert sum(offsets.values()) == RECORDS, offsets
        assert log.read_text().count("event=partitions_assigned") >= 2
    finally:
        collector.close()
        if command.poll() is None:  # a failed assertion: stop the workers through their parent first
            command.send_signal(signal.SIGTERM)
            command.wait(90)
        stop_all(command)
