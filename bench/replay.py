"""Benchmark `headwater replay` against the live pipeline over the same records.

Produces N contacts to a raw topic, then
  (a) baseline: `headwater run --runtime direct` (the live pipeline) until its output and dead letters account for
      every input;
  (b) `headwater replay --offsets` of the same range into a side topic, one transaction per micro-batch.
Both rates are measured the same way, from the broker's timestamps of the first and last record each one wrote
(outputs and dead letters), so interpreter and pipeline start-up are left out of both. Target: (b) >= 0.9 x (a).

    .venv/bin/python bench/replay.py [--records 40000] [--smoke] [--bootstrap-servers B --registry-url R]

Without --bootstrap-servers it starts an embedded broker and a registry in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from confluent_kafka import TopicPartition
from services import cluster, produce_contacts

from headwater.kafka import clients
from headwater.kafka.cluster import ensure_topics, wait_for_broker
from headwater.kafka.config import KafkaSettings

HEADWATER = Path(sys.executable).parent / "headwater"
SHIPPED = Path(__file__).resolve().parent.parent / "streams" / "pipelines" / "crm_contacts.yaml"
PARTITIONS = 2


def written_rate(kafka: KafkaSettings, topics: list[str], expected: int, limit_s: float) -> float:
    """Records/s between the first and last record written to `topics`, once they hold `expected` in all."""
    consumer = clients.consumer(kafka, f"bench-read-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"})
    deadline = time.monotonic() + limit_s
    stamps: list[int] = []
    try:
        consumer.subscribe(topics)
        while len(stamps) < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"{topics} hold {len(stamps)} of {expected} records after {limit_s:.0f}s")
            stamps.extend(m.timestamp()[1] for m in consumer.consume(5000, 0.5) if m.error() is None)
    finally:
        consumer.close()
    return expected / max((max(stamps) - min(stamps)) / 1000, 1e-3)


def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    consumer = clients.consumer(kafka, f"bench-marks-{uuid.uuid4().hex[:8]}")
    try:
        return {p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in range(PARTITIONS)}
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--smoke", action="store_true", help="a few hundred records: checks the benchmark runs")
    parser.add_argument("--bootstrap-servers", help="an existing broker (with --registry-url)")
    parser.add_argument("--registry-url")
    args = parser.parse_args()
    records = 600 if args.smoke else args.records
    name = f"replay{uuid.uuid4().hex[:6]}"
    raw, enriched, dlq = f"bench.{name}.raw", f"bench.{name}.enriched", f"bench.{name}.dlq"

    with tempfile.TemporaryDirectory(prefix="hw-bench-replay-") as folder:
        root = Path(folder)
        with cluster(args.bootstrap_servers, args.registry_url, root) as settings:
            ensure_topics(wait_for_broker(settings.kafka, 60), [raw], PARTITIONS)
            produce_contacts(settings, raw, records)
            definition = yaml.safe_load(SHIPPED.read_text())
            definition.update({
                "name": name, "input": {"topics": [raw]}, "output": {**definition["output"], "topic": enriched},
                "dead_letter_topic": dlq, "consumer_group": f"bench.{name}",
            })
            pipeline = root / "pipeline.yaml"
            pipeline.write_text(yaml.safe_dump(definition))
            config = root / "headwater.yaml"
            config.write_text(yaml.safe_dump({"kafka": {"bootstrap.servers": settings.kafka.bootstrap_servers},
                                              "registry": {"url": settings.registry.url}}))
            with (root / "live.log").open("wb") as log:
                worker = subprocess.Popen([str(HEADWATER), "run", str(pipeline), "--config", str(config),
                                           "--runtime", "direct", "--status-port", "0"], stdout=log, stderr=log)
            try:
                live = written_rate(settings.kafka, [enriched, dlq], records, 900)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)
            offsets = ",".join(f"{p}:0-{end}" for p, end in end_offsets(settings.kafka, raw).items())
            replay = subprocess.run([str(HEADWATER), "replay", str(pipeline), "--offsets", offsets, "--run-id", name,
                                     "--config", str(config)], capture_output=True, text=True, timeout=1800,
                                    check=False)
            if replay.returncode != 0:
                raise SystemExit(f"replay failed: {replay.stderr[-2000:]}")
            side = f"bench.{name}.backfill.{name}"
            replayed = written_rate(settings.kafka, [side, f"{side}.dlq"], records, 120)

    print(f"replay against the live pipeline: {records:,} contacts, {PARTITIONS} partitions, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'path':<36} {'records/s':>10} {'ratio to live':>14}")
    print(f"{'(a) live pipeline (direct runtime)':<36} {live:>10,.0f} {1.0:>14.2f}")
    print(f"{'(b) headwater replay (side topic)':<36} {replayed:>10,.0f} {replayed / live:>14.2f}   (target >= 0.90)")


if __name__ == "__main__":
    main()
