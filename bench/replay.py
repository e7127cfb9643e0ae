"""Benchmark `headwater replay` against the live pipeline over the same records.

Starts its own broker and registry, produces N contacts to a raw topic, then
  (a) baseline: `headwater run --runtime direct` (the live pipeline) until its enriched topic holds N records;
  (b) `headwater replay --offsets` of the same range into a side topic, one transaction per micro-batch.
Both rates are measured the same way, from the broker's timestamps of the first and last record each one wrote, so
interpreter and pipeline start-up are left out of both. Target: (b) >= 0.9 x (a).

    .venv/bin/python bench/replay.py [--records 40000] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from headwater.kafka import clients
from headwater.kafka.config import KafkaSettings
from headwater.ports import free_port
from headwater.settings import RegistrySettings
from schemas import catalog
from schemas.client import registry_client
from schemas.registry.process import RegistryProcess
from schemas.serde import AvroSerializer
from streams.broker import EmbeddedBroker
from streams.sample import contact

HEADWATER = Path(sys.executable).parent / "headwater"
PARTITIONS = 2
SHIPPED = Path(__file__).parent.parent / "streams" / "pipelines" / "crm_contacts.yaml"


def produce_contacts(kafka: KafkaSettings, registry_url: str, topic: str, count: int) -> None:
    serializer = AvroSerializer(registry_client(RegistrySettings(url=registry_url)), f"{topic}-value",
                                catalog.load_schema("crm/contact"))
    producer = clients.producer(kafka, **{"linger.ms": 20})
    rng = random.Random(5)
    now_ms = int(time.time() * 1000)
    for index in range(count):
        record = contact(rng, index, now_ms)
        while True:
            try:
                producer.produce(topic, serializer.encode(record), str(record["contact_id"]).encode())
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise SystemExit("the contacts were not all delivered")
    producer.close()


def written_rate(kafka: KafkaSettings, topic: str, expected: int, limit_s: float) -> float:
    """Records/s between the first and last record of `topic`, once it holds `expected` committed records."""
    consumer = clients.consumer(kafka, f"bench-read-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"})
    deadline = time.monotonic() + limit_s
    first: int | None = None
    last = 0
    seen = 0
    try:
        while True:
            metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{topic} never appeared")
            time.sleep(0.2)
        consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
        while seen < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"{topic} holds {seen} of {expected} records after {limit_s:.0f}s")
            for message in consumer.consume(5000, 0.5):
                if message.error() is not None:
                    continue
                stamp = message.timestamp()[1]
                first = stamp if first is None else min(first, stamp)
                last = max(last, stamp)
                seen += 1
    finally:
        consumer.close()
    assert first is not None
    return expected / max((last - first) / 1000, 1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--smoke", action="store_true", help="a few hundred records: checks the benchmark runs")
    args = parser.parse_args()
    records = 600 if args.smoke else args.records

    with tempfile.TemporaryDirectory(prefix="hw-bench-replay-") as folder:
        root = Path(folder)
        broker = EmbeddedBroker(root / "kafka", port=free_port())
        status = broker.start()
        assert status.bootstrap is not None
        kafka = KafkaSettings.model_validate({"bootstrap.servers": status.bootstrap})
        registry = RegistryProcess(status.bootstrap, root / "registry.log", free_port(), "--topic", "_schemas")
        worker: subprocess.Popen[bytes] | None = None
        try:
            registry.start()
            raw = "bench.contacts.raw"
            admin = clients.admin(kafka)
            admin.create_topics([NewTopic(raw, PARTITIONS, 1)])[raw].result(30)
            produce_contacts(kafka, registry.url, raw, records)
            pipeline = root / "contacts.yaml"
            shipped = yaml.safe_load(SHIPPED.read_text())
            shipped.update({
                "input": {"topics": [raw]}, "output": {**shipped["output"], "topic": "bench.contacts.enriched"},
                "dead_letter_topic": "bench.contacts.dlq", "consumer_group": "bench.live",
            })
            pipeline.write_text(yaml.safe_dump(shipped))
            settings = root / "headwater.yaml"
            settings.write_text(f"kafka:\n  bootstrap.servers: {status.bootstrap}\nregistry:\n  url: {registry.url}\n")
            with (root / "live.log").open("wb") as log:
                worker = subprocess.Popen([str(HEADWATER), "run", str(pipeline), "--config", str(settings),
                                           "--runtime", "direct", "--status-port", "0"], stdout=log, stderr=log)
            enriched_and_dead = written_rate(kafka, "bench.contacts.enriched", _expected_outputs(kafka, raw, records),
                                             600)
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
            worker = None
            offsets = ",".join(f"{p}:0-{_end(kafka, raw, p)}" for p in range(PARTITIONS))
            replay = subprocess.run([str(HEADWATER), "replay", str(pipeline), "--offsets", offsets, "--run-id",
                                     "bench", "--config", str(settings)], capture_output=True, text=True, timeout=900,
                                    check=False)
            if replay.returncode != 0:
                raise SystemExit(f"replay failed: {replay.stderr[-2000:]}")
            replayed = written_rate(kafka, "bench.contacts.backfill.bench", _expected_outputs(kafka, raw, records),
                                    60)
        finally:
            if worker is not None and worker.poll() is None:
                worker.kill()
            registry.terminate()
            broker.stop()

    print(f"replay against the live pipeline: {records:,} contacts, {PARTITIONS} partitions, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'path':<36} {'records/s':>10} {'ratio to live':>14}")
    print(f"{'(a) live pipeline (direct runtime)':<36} {enriched_and_dead:>10,.0f} {1.0:>14.2f}")
    print(f"{'(b) headwater replay (side topic)':<36} {replayed:>10,.0f} {replayed / enriched_and_dead:>14.2f}   "
          "(target >= 0.90)")


def _end(kafka: KafkaSettings, topic: str, partition: int) -> int:
    consumer = clients.consumer(kafka, f"bench-marks-{uuid.uuid4().hex[:8]}")
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    finally:
        consumer.close()


def _expected_outputs(kafka: KafkaSettings, raw: str, records: int) -> int:
    """The enriched records of the run: the inputs less the dead letters, read from the live DLQ once it exists."""
    return records - _dead_letters(kafka)


def _dead_letters(kafka: KafkaSettings) -> int:
    consumer = clients.consumer(kafka, f"bench-dlq-{uuid.uuid4().hex[:8]}")
    try:
        metadata = consumer.list_topics("bench.contacts.dlq", timeout=10).topics.get("bench.contacts.dlq")
        if metadata is None or metadata.error is not None:
            return 0
        return sum(int(consumer.get_watermark_offsets(TopicPartition("bench.contacts.dlq", p), timeout=10)[1])
                   for p in metadata.partitions)
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
