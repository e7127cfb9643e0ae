"""Chaos against real processes (`headwater run`, a real Kafka broker), on both runtimes: whatever is killed mid-run,
every input's `hw-source` ends up in the enriched or the dead-letter topic and the committed offsets reach the end.

(a) a pipeline worker is SIGKILLed mid-run and restarted;
(c) the broker is SIGKILLed mid-run and restarted on the same data dir and port (a broker of this test's own, not
    the session's), the worker riding it out or restarted by the test when it exits, as a supervisor would.

The second half of the input is produced only after the fault, so the worker always has work left to do after it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from headwater.ports import free_port
from streams.broker import EmbeddedBroker
from streams.runtime.runner import RUNTIMES
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values
from tests.worker_support import Collector, committed, consumer_group, end_offsets, start_worker, stop_all

HALF = 600
PARTITIONS = 2
LIMIT_S = 90.0


class Run:
    """One pipeline on `bootstrap`: its inputs, a collector of what it wrote, its worker processes (restarted as a
    supervisor would when one exits)."""

    def __init__(self, bootstrap: str, kafka: KafkaService, registry: RegistryService, tmp: Path, runtime: str) -> None:
        self.bootstrap, self.registry, self.runtime = bootstrap, registry, runtime
        self.raw = kafka.create_topic(partitions=PARTITIONS)
        domain, entity = self.raw.split(".")[:2]
        serializer = encoder(registry.client(), self.raw)
        self.records = [
            (f"C{n:06d}".encode(), serializer.encode(contact(n, notes=f"note {n} was great"))) for n in range(2 * HALF)
        ]
        self.records[7] = (b"broken", b"not avro")
        self.pipeline = pipeline_file(
            tmp, self.raw, quality=None, enrich=[{"provider": "sentiment", "options": {"text_field": "notes"}}],
            batch={"size": 50, "linger_ms": 20},
        )
        self.group = consumer_group(self.pipeline)
        self.log = tmp / "worker.log"
        self.collector = Collector(bootstrap, [f"{domain}.{entity}.enriched", f"{domain}.{entity}.dlq"])
        self.collector.log = self.log
        self.workers: list[subprocess.Popen[bytes]] = []
        self.restarts = 0

    @property
    def worker(self) -> subprocess.Popen[bytes]:
        return self.workers[-1]

    def start(self) -> subprocess.Popen[bytes]:
        self.workers.append(start_worker(self.pipeline, self.bootstrap, self.registry.url, self.log, self.runtime))
        return self.worker

    def produce(self, part: int) -> None:
        produce_values(self.bootstrap, self.raw, self.records[part * HALF:(part + 1) * HALF])

    def supervise_until(self, condition: Callable[[], bool], what: str) -> None:
        """Collect until `condition()`, starting the worker again whenever it exited (a supervisor's job)."""
        deadline = time.monotonic() + LIMIT_S
        while not condition():
            assert time.monotonic() < deadline, f"{what} not reached; seen {len(self.collector.seen)} sources: " \
                                                f"{self.collector.log_tail()}"
            if self.worker.poll() is not None:
                self.restarts += 1
                self.start()
            self.collector.collect()

    def all_delivered(self) -> bool:
        return len(self.collector.seen) >= len(self.records)

    def all_committed(self) -> bool:
        return committed(self.bootstrap, self.group, self.raw, PARTITIONS) == \
            end_offsets(self.bootstrap, self.raw, PARTITIONS)

    def finish(self) -> None:
        """Everything delivered and committed, then a clean stop; then the invariants."""
        self.supervise_until(self.all_delivered, "every input delivered")
        self.supervise_until(self.all_committed, "committed offsets at the end")
        self.worker.send_signal(signal.SIGTERM)
        assert self.worker.wait(60) == 0, self.log.read_text()[-3000:]
        ends = end_offsets(self.bootstrap, self.raw, PARTITIONS)
        assert sum(ends.values()) == len(self.records)
        inputs = {f"{self.raw}/{partition}/{offset}" for partition, end in ends.items() for offset in range(end)}
        assert set(self.collector.seen) == inputs, "every input is in the enriched or the dead-letter topic"
        assert all(len(set(keys)) == 1 for keys in self.collector.seen.values()), "a replay is the same record"
        assert committed(self.bootstrap, self.group, self.raw, PARTITIONS) == ends

    def close(self) -> None:
        stop_all(*self.workers)
        self.collector.close()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path / "broker", port=free_port(), heap="512m")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_worker_sigkilled_mid_run_and_restarted_loses_nothing(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime: str
) -> None:
    run = Run(kafka.bootstrap, kafka, registry, tmp_path, runtime)
    try:
        run.produce(0)
        run.start()
        run.collector.poll_until(lambda: run.collector.total >= 100, LIMIT_S, run.worker)
        run.worker.send_signal(signal.SIGKILL)
        run.worker.wait(10)
        run.produce(1)
        run.start()
        run.finish()
    finally:
        run.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_broker_sigkilled_mid_run_and_restarted_on_its_data_loses_nothing(
    own_broker: EmbeddedBroker, kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime: str
) -> None:
    status = own_broker.status()
    assert status.bootstrap is not None
    chaos = KafkaService(own_broker, status.bootstrap)
    run = Run(chaos.bootstrap, chaos, registry, tmp_path, runtime)
    try:
        run.produce(0)
        run.start()
        run.collector.poll_until(lambda: run.collector.total >= 100, LIMIT_S, run.worker)
        own_broker.kill()
        restarted = own_broker.start()
        assert restarted.bootstrap == chaos.bootstrap, "the broker comes back on the same port"
        run.produce(1)
        run.finish()
        assert "event=pipeline_bug" not in run.log.read_text(), "a broker outage is not a bug"
    finally:
        run.close()
