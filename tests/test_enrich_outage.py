"""A provider outage mid-stream, on a `headwater run` process with two pipelines: the pipeline whose provider is down
stops taking input (nothing dead-lettered or committed for the outage, /readyz and the metrics say why) while the
other keeps flowing, and it resumes by itself when the provider is back, losing nothing."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from streams.runtime.runner import RUNTIMES
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values, read_topic
from tests.worker_support import committed, consumer_group, end_offsets, start_worker, status_url, stop_all, wait_until

BATCH = 20
# The issue asks for a 30 s outage; the default runtime gets it, the other a shorter one to keep the suite short.
OUTAGE_SECONDS = {"faust": 30.0, "direct": 8.0}


def _produce(kafka: KafkaService, registry: RegistryService, topic: str, numbers: range) -> None:
    serializer = encoder(registry.client(), topic)
    produce_values(kafka.bootstrap, topic, [
        (f"C{n:06d}".encode(), serializer.encode(contact(n, notes=f"note {n}"))) for n in numbers
    ])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_outage_mid_stream_pauses_its_pipeline_while_another_flows_then_it_resumes_losing_nothing(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime: str
) -> None:
    outage = tmp_path / "provider-down"
    raw, other_raw = kafka.create_topic(partitions=1), kafka.create_topic(partitions=1)
    enriched, dlq = (raw.rsplit(".", 1)[0] + suffix for suffix in (".enriched", ".dlq"))
    other_enriched = other_raw.rsplit(".", 1)[0] + ".enriched"
    down_pipeline = pipeline_file(
        tmp_path, raw, quality=None, enrich=[{"provider": "switchable", "options": {"down_while": str(outage)}}],
        batch={"size": BATCH, "linger_ms": 20},
    )
    flowing_pipeline = pipeline_file(tmp_path, other_raw, quality=None, batch={"size": BATCH, "linger_ms": 20})
    label = f"{down_pipeline.stem}@3"
    group, log = consumer_group(down_pipeline), tmp_path / "worker.log"
    _produce(kafka, registry, raw, range(40))
    worker = start_worker(down_pipeline, kafka.bootstrap, registry.url, log, runtime, str(flowing_pipeline))
    try:
        wait_until(lambda: committed(kafka.bootstrap, group, raw, 1) == {0: 40}, 90, "the first 40 done", worker, log)
        outage.touch()
        began = time.monotonic()
        _produce(kafka, registry, raw, range(40, 80))
        wait_until(lambda: log.read_text().count("event=batch_retry") >= 2, 60, "retries", worker, log)
        url = status_url(log)
        assert url is not None
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert any(reason.startswith(f"{label}: waiting for a dependency: ProviderUnavailable")
                   for reason in ready.json()["reasons"])
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert f'headwater_enrich_provider_down{{pipeline="{label}",provider="switchable"}} 1.0' in metrics

        _produce(kafka, registry, other_raw, range(30))
        assert len(read_topic(kafka.bootstrap, other_enriched, 30)) == 30, "the other pipeline flows meanwhile"
        wait_until(lambda: time.monotonic() - began >= OUTAGE_SECONDS[runtime], OUTAGE_SECONDS[runtime] + 5,
                   "the outage's length", worker, log)
        assert end_offsets(kafka.bootstrap, dlq, 1) == {0: 0}, "an outage is no record's fault"
        assert committed(kafka.bootstrap, group, raw, 1) == {0: 40}, "nothing committed while the batch waits"

        outage.unlink()
        outputs = read_topic(kafka.bootstrap, enriched, 80)
        assert sorted(read.key for read in outputs) == [f"C{n:06d}".encode() for n in range(80)]
        wait_until(lambda: committed(kafka.bootstrap, group, raw, 1) == {0: 80}, 60, "all committed", worker, log)
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 200, 30, "ready again", worker, log)
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert f'headwater_enrich_provider_down{{pipeline="{label}",provider="switchable"}} 0.0' in metrics
        assert end_offsets(kafka.bootstrap, dlq, 1) == {0: 0}
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, log.read_text()[-3000:]
    finally:
        stop_all(worker)
