"""Bounded memory: the RSS of one `headwater run` worker after 100,000 and after 1,000,000 records, as a ratio.

The input (messy CRM contacts from the demo sample, Avro) is produced first, then one worker runs the contacts
pipeline (decode, its transforms, encode, delivery, commits, stats and metrics; its enrichment and quality suite
are left out because they only slow the run: their models load once and keep nothing per record) until the group's
committed offsets reach each mark, where the worker's VmRSS is read from /proc. A worker keeping anything per record
would grow with the record count; the target is a ratio of at most 1.10.
Usage: python bench/memory.py [--runtime direct|faust] [--bootstrap-servers HOST:PORT --registry-url URL] [--smoke]
  --smoke  2,000 and 10,000 records (seconds, not minutes): run by tests/test_bench_memory.py so this cannot rot.
Without --bootstrap-servers it starts an embedded broker and a registry in a temporary directory.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import TopicPartition
from services import cluster, produce_contacts

from headwater.kafka import clients
from headwater.kafka.cluster import ensure_topics, wait_for_broker
from headwater.settings import HeadwaterSettings

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 2
TARGET = 1.10
MARK_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Marks:
    first: int
    final: int


def pipeline_file(tmp: Path, topic: str) -> tuple[Path, str]:
    name = topic.split(".")[1]
    definition: dict[str, Any] = yaml.safe_load((ROOT / "streams" / "pipelines" / "crm_contacts.yaml").read_text())
    group = f"bench-memory-{uuid.uuid4().hex[:6]}"
    definition.update({
        "name": name,
        "input": {"topics": [topic]},
        "output": {**definition["output"], "topic": f"bench.{name}.enriched"},
        "dead_letter_topic": f"bench.{name}.dlq",
        "consumer_group": group,
    })
    for slow in ("enrich", "quality"):
        definition.pop(slow)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return path, group


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} reports no VmRSS")


def committed_total(settings: HeadwaterSettings, group: str, topic: str) -> int:
    consumer = clients.consumer(settings.kafka, group)
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in found)
    finally:
        consumer.close()


def rss_at_marks(worker: subprocess.Popen[bytes], settings: HeadwaterSettings, group: str, topic: str,
                 marks: Marks, log: Path) -> tuple[float, float]:
    """The worker's RSS once its committed offsets reached each mark."""
    found: list[float] = []
    started = time.monotonic()
    for mark in (marks.first, marks.final):
        deadline = time.monotonic() + MARK_TIMEOUT_S
        while committed_total(settings, group, topic) < mark:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not commit {mark:,} records within {MARK_TIMEOUT_S:.0f}s")
            time.sleep(0.2)
        found.append(rss_mib(worker.pid))
        print(f"after {mark:,} records ({time.monotonic() - started:.1f}s): RSS {found[-1]:,.1f} MiB", flush=True)
    return found[0], found[1]


def measure(settings: HeadwaterSettings, tmp: Path, marks: Marks, runtime: str) -> float:
    topic = f"bench.memory{uuid.uuid4().hex[:6]}.raw"
    ensure_topics(wait_for_broker(settings.kafka), [topic], PARTITIONS)
    started = time.monotonic()
    produce_contacts(settings, topic, marks.final)
    print(f"produced {marks.final:,} contacts to {topic} in {time.monotonic() - started:.1f}s", flush=True)
    pipeline, group = pipeline_file(tmp, topic)
    config = tmp / "settings.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap.servers": settings.kafka.bootstrap_servers},
                                      "registry": {"url": settings.registry.url}}))
    log = tmp / "worker.log"
    with log.open("ab") as output:
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "headwater"), "run", str(pipeline), "--config", str(config),
             "--status-port", "0", "--runtime", runtime],
            stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        first, final = rss_at_marks(worker, settings, group, topic, marks, log)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(120)
    return final / first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", choices=["direct", "faust"], default="direct")
    parser.add_argument("--bootstrap-servers", help="an existing broker (with --registry-url)")
    parser.add_argument("--registry-url")
    parser.add_argument("--smoke", action="store_true", help="2,000 and 10,000 records instead of 100,000 and 1M")
    args = parser.parse_args()
    if bool(args.bootstrap_servers) != bool(args.registry_url):
        parser.error("--bootstrap-servers and --registry-url go together")
    marks = Marks(2_000, 10_000) if args.smoke else Marks(100_000, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="hw-bench-memory-") as directory:
        tmp = Path(directory)
        with cluster(args.bootstrap_servers, args.registry_url, tmp) as settings:
            ratio = measure(settings, tmp, marks, args.runtime)
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"RSS ratio {marks.final:,} / {marks.first:,} records: {ratio:.3f} (target <= {TARGET:.2f} {verdict})")


if __name__ == "__main__":
    main()
