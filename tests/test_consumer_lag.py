"""Consumer lag per input partition (`headwater_pipeline_consumer_lag_records{pipeline,topic,partition}`) on both
runtimes of a real `headwater run`: 0 when caught up, the records waiting while the pipeline's provider is down, 0
again once it is back."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from streams.runtime.lag import lag
from streams.runtime.runner import RUNTIMES
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file
from tests.worker_support import start_worker, status_url, stop_all, wait_until

BATCH = 10
LAG = "headwater_pipeline_consumer_lag_records"


def lags(url: str, pipeline: str, topic: str) -> dict[int, float]:
    """Partition -> lag that the worker's /metrics shows for `pipeline` on `topic`; none while the Faust runtime's
    web server takes the status port over from the interim one."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.ConnectError:
        return {}
    return {
        int(sample.labels["partition"]): sample.value
        for family in text_string_to_metric_families(text) if family.name == LAG
        for sample in family.samples
        if sample.labels["pipeline"] == pipeline and sample.labels["topic"] == topic
    }


def produce_to(kafka: KafkaService, registry: RegistryService, topic: str, per_partition: dict[int, range]) -> None:
    serializer = encoder(registry.client(), topic)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "acks": "all"})
    for partition, numbers in per_partition.items():
        for n in numbers:
            producer.produce(topic, serializer.encode(contact(n)), f"C{n:06d}".encode(), partition=partition)
    assert producer.flush(30) == 0


def test_lag_ignores_what_the_consumer_does_not_know_yet() -> None:
    assert lag(120, 100) == 20
    assert lag(-1001, 5) is None and lag(7, -1001) is None and lag(None, 3) is None and lag(3, None) is None
    assert lag(5, 9) == 0  # a high watermark older than the position just read is no negative lag


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_lag_per_partition_grows_while_the_pipeline_waits_and_drains_to_zero(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime: str
) -> None:
    outage = tmp_path / "provider-down"
    raw = kafka.create_topic(partitions=2)
    pipeline = pipeline_file(
        tmp_path, raw, quality=None, enrich=[{"provider": "switchable", "options": {"down_while": str(outage)}}],
        batch={"size": BATCH, "linger_ms": 20},
    )
    label, log = f"{pipeline.stem}@3", tmp_path / "worker.log"
    produce_to(kafka, registry, raw, {0: range(5), 1: range(5, 10)})
    worker = start_worker(pipeline, kafka.bootstrap, registry.url, log, runtime)
    try:
        wait_until(lambda: status_url(log) is not None, 90, "the status server", worker, log)
        url = status_url(log)
        assert url is not None
        wait_until(lambda: lags(url, label, raw) == {0: 0, 1: 0}, 90, "lag 0 on both partitions", worker, log)

        outage.touch()
        produce_to(kafka, registry, raw, {0: range(10, 50), 1: range(50, 54)})
        # At most one batch is taken (and so not lag) while the provider is down; the rest waits in the partition.
        wait_until(lambda: lags(url, label, raw).get(0, 0) >= 40 - BATCH, 60, "lag of partition 0", worker, log)
        waiting = lags(url, label, raw)
        assert waiting[0] <= 40 and waiting[1] <= 4, waiting

        outage.unlink()
        wait_until(lambda: lags(url, label, raw) == {0: 0, 1: 0}, 60, "lag drained", worker, log)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, log.read_text()[-3000:]
    finally:
        stop_all(worker)
